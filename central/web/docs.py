"""Reference pages served to dashboard users: the statistics definitions.

::

    GET  /statistics/definitions     docs/STATISTICS.md as a page (统计口径)

The page is rendered from the one file the developers keep, ``docs/STATISTICS.md``
(packaged through the link ``central/web/docs/STATISTICS.md``), so what managers
read and what the code is tested against cannot drift apart.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Final

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from markdown_it import MarkdownIt
from markupsafe import Markup

from central.web.pages import page_principal
from central.web.render import page

DEFINITIONS: Final = Path(__file__).parent / "docs" / "STATISTICS.md"

router = APIRouter(include_in_schema=False)


@cache
def definitions_html() -> Markup:
    """The definitions as HTML (raw HTML in the Markdown is escaped, not passed through)."""
    renderer = MarkdownIt("commonmark", {"html": False}).enable("table")
    return Markup(renderer.render(DEFINITIONS.read_text(encoding="utf-8")))


@router.get("/statistics/definitions")
def definitions_page(request: Request) -> HTMLResponse:
    principal = page_principal(request)
    return page(request, "definitions.html", principal, body=definitions_html())


__all__ = ["DEFINITIONS", "definitions_html", "router"]
