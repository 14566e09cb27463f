"""What the robots say: one notice, a burst or a quiet night merged, a daily summary per town.

::

    body = notice_body(RobotKind.WECOM, notice, base_url="https://onedoor.example.cn")
    body = digest_body(RobotKind.DINGTALK, notices, heading="夜间暂缓的通知 22:00–07:30", ...)
    body = summary_body(RobotKind.WECOM, summary, base_url=...)

Pure functions over :class:`central.notify.Notice` and :class:`TownSummary`,
returning the bytes to POST (:mod:`central.robots` has the two formats). Chinese
only: the groups are Chinese offices. Times are business time (UTC+8).
WeCom lines are separated by one newline; DingTalk's markdown needs an empty
line between paragraphs.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Final

from central.robots import RobotKind, dingtalk_markdown, fit, plain, wecom_markdown
from central.stats import BUSINESS_TZ

if TYPE_CHECKING:
    from central.notify import Notice

SEVERITY_WORDS: Final = {"info": "提示", "warning": "一般", "major": "严重", "critical": "紧急"}
ACTION_WORDS: Final = {
    "raised": "告警",
    "cleared": "已恢复",
    "acknowledged": "已确认",
    "severity_changed": "级别变化",
}
_WECOM_COLOURS: Final = {"critical": "warning", "major": "warning", "warning": "comment",
                         "info": "comment"}  # fmt: skip


def local(moment: datetime) -> str:
    return moment.astimezone(BUSINESS_TZ).strftime("%m-%d %H:%M")


def _duration(seconds: float) -> str:
    minutes = max(0, round(seconds / 60))
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days} 天 {hours} 小时"
    return f"{hours} 小时 {minutes} 分钟" if hours else f"{minutes} 分钟"


def _link(base_url: str, path: str) -> str:
    return f"{base_url.rstrip('/')}{path}" if base_url and path else ""


def _severity(kind: RobotKind, notice: Notice) -> str:
    word = SEVERITY_WORDS.get(notice.severity, notice.severity)
    if kind is RobotKind.WECOM:
        colour = "info" if notice.action == "cleared" else _WECOM_COLOURS.get(notice.severity,
                                                                             "comment")
        return f'<font color="{colour}">{word}</font>'
    return f"**{word}**"


def _body(kind: RobotKind, title: str, lines: list[str]) -> bytes:
    if kind is RobotKind.WECOM:
        return wecom_markdown("\n".join(lines))
    return dingtalk_markdown(title, "\n\n".join(lines))


def notice_title(notice: Notice) -> str:
    """The first line: 【告警】站点离线 · 三乡雍陌村党群服务中心."""
    action = ACTION_WORDS.get(notice.action, notice.action)
    return f"【{action}】{plain(notice.title)} · {plain(notice.site_name)}"


def notice_body(kind: RobotKind, notice: Notice, *, base_url: str) -> bytes:
    """One notice: site (Chinese name and id), town, severity, since when, what, a link."""
    heading = "##" if kind is RobotKind.WECOM else "####"
    quote = "> "
    lines = [
        f"{heading} {notice_title(notice)}",
        f"{quote}站点：{plain(notice.site_name)}（{notice.site_id}）",
        f"{quote}镇街：{plain(notice.town)}",
        f"{quote}级别：{_severity(kind, notice)}",
        f"{quote}开始：{local(notice.since)}",
    ]
    if notice.action == "cleared":
        lapsed = (notice.at - notice.since).total_seconds()
        lines.append(f"{quote}恢复：{local(notice.at)}（持续 {_duration(lapsed)}）")
    elif notice.action == "acknowledged" and notice.actor:
        lines.append(f"{quote}确认：{plain(notice.actor)} {local(notice.at)}")
    if notice.message and notice.message != notice.title:
        lines.append(f"{quote}说明：{plain(notice.message)[:300]}")
    if link := _link(base_url, notice.link):
        lines.append(f"[查看站点]({link})")
    return _body(kind, notice_title(notice), lines)


def _item(notice: Notice, base_url: str, state: str = "") -> str:
    action = ACTION_WORDS.get(notice.action, notice.action)
    severity = SEVERITY_WORDS.get(notice.severity, notice.severity)
    text = (f"- 【{action}】{severity} {plain(notice.site_name)}（{plain(notice.town)}）"
            f"{plain(notice.title)} · {local(notice.at)}{state}")  # fmt: skip
    link = _link(base_url, notice.link)
    return f"{text} [查看]({link})" if link else text


def digest_body(
    kind: RobotKind,
    notices: Sequence[Notice],
    *,
    heading: str,
    base_url: str,
    still_active: frozenset[int] = frozenset(),
    checked: bool = False,
) -> bytes:
    """Several notices in one message (a burst, or what quiet hours held), in order.

    ``checked``: alarms were looked up now; each alarm notice says whether its alarm is
    still active (``still_active`` holds the ids of those that are)."""
    items = []
    for notice in notices:
        state = ""
        if checked and notice.alarm_id is not None and notice.action != "cleared":
            state = "（仍未恢复）" if notice.alarm_id in still_active else "（已恢复）"
        items.append(_item(notice, base_url, state))
    title = f"{heading}（{len(notices)} 条）"
    head = f"{'##' if kind is RobotKind.WECOM else '####'} {title}"
    tail = f"[打开告警页]({link})" if (link := _link(base_url, "/alarms")) else ""
    text = fit(kind, head, items, tail, "…另有 {count} 条，见告警页")
    return _body(kind, title, text.split("\n"))


@dataclass(frozen=True, slots=True)
class OpenAlarm:
    site_name: str
    title: str
    severity: str
    since: datetime


@dataclass(frozen=True, slots=True)
class TownFigures:
    """One town over the last day: its sites, what was raised and cleared, what is open."""

    town: str
    sites: int
    offline: int
    raised: dict[str, int]
    """Severity -> alarms raised in the period."""
    cleared: int
    active: int
    oldest: list[OpenAlarm]
    """The longest-open active alarms (a few)."""

    @property
    def raised_total(self) -> int:
        return sum(self.raised.values())

    @property
    def quiet(self) -> bool:
        return not (self.offline or self.raised_total or self.active)


@dataclass(frozen=True, slots=True)
class TownSummary:
    """The daily summary one route gets: one town, or (a city-wide route) every town."""

    day: str
    """The business date it is sent on, ``YYYY-MM-DD``."""
    start: datetime
    end: datetime
    towns: list[TownFigures]
    city: bool
    """A city-wide route: a line per town instead of one town's detail."""


def _raised(figures: TownFigures) -> str:
    parts = [f"{SEVERITY_WORDS[s]} {n}" for s in ("critical", "major", "warning", "info")
             if (n := figures.raised.get(s))]  # fmt: skip
    detail = f"（{'，'.join(parts)}）" if parts else ""
    return f"新告警 {figures.raised_total} 条{detail}"


def summary_body(kind: RobotKind, summary: TownSummary, *, base_url: str) -> bytes:
    """The daily message: per town, or the city with a line per town."""
    heading = "##" if kind is RobotKind.WECOM else "####"
    period = f"{local(summary.start)} – {local(summary.end)}"
    if summary.city:
        title = f"全市每日告警汇总 {summary.day}"
        sites = sum(t.sites for t in summary.towns)
        offline = sum(t.offline for t in summary.towns)
        raised = sum(t.raised_total for t in summary.towns)
        active = sum(t.active for t in summary.towns)
        head = "\n".join([
            f"{heading} {title}",
            f"> 统计时段：{period}",
            f"> 站点 {sites} 个，当前离线 {offline} 个；新告警 {raised} 条，当前未恢复 {active} 条",
        ])  # fmt: skip
        busy = [t for t in summary.towns if not t.quiet]
        items = [f"- {plain(t.town)}：离线 {t.offline}，{_raised(t)}，未恢复 {t.active}"
                 for t in busy]  # fmt: skip
        quiet = len(summary.towns) - len(busy)
        tail_lines = [f"其余 {quiet} 个镇街无告警、无离线"] if quiet else []
        if link := _link(base_url, "/"):
            tail_lines.append(f"[打开站点总览]({link})")
        text = fit(kind, head, items, "\n".join(tail_lines), "…另有 {count} 个镇街，见站点总览")
    else:
        (figures,) = summary.towns
        title = f"{plain(figures.town)} 每日告警汇总 {summary.day}"
        head = "\n".join([
            f"{heading} {title}",
            f"> 统计时段：{period}",
            f"> 站点 {figures.sites} 个，当前离线 {figures.offline} 个",
            f"> {_raised(figures)}，已恢复 {figures.cleared} 条，当前未恢复 {figures.active} 条",
        ])  # fmt: skip
        items = [f"- {SEVERITY_WORDS.get(a.severity, a.severity)} {plain(a.site_name)} "
                 f"{plain(a.title)} · 自 {local(a.since)}" for a in figures.oldest]  # fmt: skip
        town_link = _link(base_url, f"/?town={_quote(figures.town)}")
        tail = f"[查看本镇街站点]({town_link})" if town_link else ""
        text = fit(kind, head, items, tail, "…另有 {count} 条未恢复")
    return _body(kind, title, text.split("\n"))


def _quote(text: str) -> str:
    return urllib.parse.quote(text, safe="")


__all__ = [
    "ACTION_WORDS",
    "SEVERITY_WORDS",
    "OpenAlarm",
    "TownFigures",
    "TownSummary",
    "digest_body",
    "local",
    "notice_body",
    "notice_title",
    "summary_body",
]
