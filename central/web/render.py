"""Templates: the Jinja environment, its filters, the language choice, a page response.

::

    html = render("site.html", t=translator(lang), lang=lang, site=detail, ...)
    return page(request, "alarms.html", principal, **board_fields)   # + lang cookie

Templates read the records of :mod:`central.views` by attribute; times come as
ISO strings in UTC and are shown in business time (``|when``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlencode

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse

from central import stats
from central.alarms import TITLES
from central.auth import Principal, Role
from central.web.text import translator

TEMPLATES: Final = Path(__file__).parent / "templates"
LANG_COOKIE: Final = "onedoor_lang"


def _fmt_seconds(value: float | None) -> str:
    if value is None:
        return "—"
    minutes, seconds = divmod(round(value), 60)
    return f"{minutes}:{seconds:02d}"


def _fmt_rate(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def _fmt_time(value: datetime | str | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.astimezone(stats.BUSINESS_TZ).strftime("%m-%d %H:%M:%S")


def _fmt_seq(value: int) -> str:
    """A seq as ops read it: ``epoch·n`` once a site's device was replaced (else just n)."""
    epoch, n = value >> 32, value & 0xFFFF_FFFF
    return f"{epoch}·{n}" if epoch else str(n)


def _fmt_ms(value: int) -> str:
    return datetime.fromtimestamp(value / 1000, stats.BUSINESS_TZ).strftime("%H:%M:%S")


ENV: Final = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    autoescape=jinja2.select_autoescape(("html",)),
    trim_blocks=True,
    lstrip_blocks=True,
    undefined=jinja2.StrictUndefined,
)
def _fmt_target(target: dict[str, Any]) -> str:
    """Where a command to many sites went: 全市, the towns, or how many sites."""
    if target.get("all"):
        within = target.get("within")
        return "、".join(within) if within else "全市 / whole city"
    if target.get("towns"):
        return "、".join(target["towns"])
    return f"{len(target.get('sites', []))} 个站点 / sites"


def _fmt_json(value: Any) -> str:
    """A record's detail as readable text (Chinese as is; the template escapes it)."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(", ", ": "))


ENV.filters.update(secs=_fmt_seconds, rate=_fmt_rate, when=_fmt_time, ms=_fmt_ms,
                   seq=_fmt_seq, target=_fmt_target, json_text=_fmt_json)
ENV.globals["alarm_titles"] = {k.value: v for k, v in TITLES.items()}


def render(template: str, **context: Any) -> str:
    return ENV.get_template(template).render(**context)


def language(request: Request) -> str:
    chosen = request.query_params.get("lang") or request.cookies.get(LANG_COOKIE, "zh")
    return "en" if chosen == "en" else "zh"


def chrome(lang: str, principal: Principal,
           query: Mapping[str, str] | None = None) -> dict[str, Any]:
    """What every signed-in template needs besides its own fields.

    ``query``: the page's own query (its day, filters), kept by the language switch.
    """
    other = {key: value for key, value in (query or {}).items() if key != "lang"}
    other["lang"] = "zh" if lang == "en" else "en"
    return {
        "t": translator(lang),
        "lang": lang,
        "switch_lang_href": "?" + urlencode(other),
        "principal": principal,
        "can_operate": principal.role.allows(Role.OPERATOR),
        "can_manage": principal.role.allows(Role.ADMIN) and principal.city_wide,
    }


def html_response(request: Request, html: str, lang: str) -> HTMLResponse:
    """The page; remembers the language in a cookie when the link chose it (``?lang=``)."""
    response = HTMLResponse(html)
    if "lang" in request.query_params:
        response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, samesite="strict")
    return response


def page(request: Request, template: str, principal: Principal, **context: Any) -> HTMLResponse:
    lang = language(request)
    html = render(template, **chrome(lang, principal, request.query_params),
                  path=request.url.path, **context)
    return html_response(request, html, lang)


__all__ = [
    "ENV",
    "LANG_COOKIE",
    "chrome",
    "html_response",
    "language",
    "page",
    "render",
]
