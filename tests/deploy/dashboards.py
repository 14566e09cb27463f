"""The central's HTML dashboards read as a person reads them, for the rehearsal.

A person logs in with an account (``onedoor-central user create``, then the login form),
as the pages require; :class:`Dashboards` then fetches the fleet page, a site's page and
the versions page with that session and parses them (:class:`HtmlPage`: the elements
and their text, looked up by id or class). :func:`chromium_page` opens the same pages in
Debian's headless Chromium, logged in through the form, for the steps where the page's
own script must act (a takeover from the site page).
"""

from __future__ import annotations

import http.cookiejar
import json
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

from playwright.sync_api import Page, sync_playwright

from tests.central.browser.test_dashboards import CHROMIUM, LAUNCH_ARGS
from tests.deploy.fleet import CentralServer, Deployment, central_cli

# Elements that have no end tag: never left open.
_VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
                   "source", "track", "wbr"})  # fmt: skip


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    parts: list[str] = field(default_factory=list)
    children: list[Element] = field(default_factory=list)

    def descendants(self) -> Iterator[Element]:
        for child in self.children:
            yield child
            yield from child.descendants()

    @property
    def text(self) -> str:
        """Its text and its descendants', whitespace runs made one space."""
        return " ".join("".join(self.parts).split())

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())


class HtmlPage(HTMLParser):
    """A page's elements, in document order, with their text."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[Element] = []
        self._open: list[Element] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {name: value or "" for name, value in attrs})
        self.elements.append(element)
        if self._open:
            self._open[-1].children.append(element)
        if tag not in _VOID:
            self._open.append(element)

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self._open) - 1, -1, -1):
            if self._open[depth].tag == tag:
                del self._open[depth:]
                return

    def handle_data(self, data: str) -> None:
        for element in self._open:
            element.parts.append(data)

    def by_id(self, element_id: str) -> Element:
        for element in self.elements:
            if element.attrs.get("id") == element_id:
                return element
        raise KeyError(f"no element #{element_id}")

    def has_id(self, element_id: str) -> bool:
        return any(e.attrs.get("id") == element_id for e in self.elements)

    def by_class(self, name: str, tag: str | None = None) -> list[Element]:
        return [e for e in self.elements if name in e.classes and tag in (None, e.tag)]


@dataclass(frozen=True)
class SiteTile:
    """A site's tile on the fleet page."""

    health: str  # ok, warn, alarm, offline, unknown
    drift: bool  # the marker of a software or config version that differs
    alarms: str  # the count shown on it ('' for none)


@dataclass(frozen=True)
class DayCounts:
    """The day's counts a site page charts (charts-data): tickets issued, served, rated."""

    issued: int
    served: int
    rated: int


class Dashboards:
    """A person's session on the central's pages (cookies kept as a browser keeps them)."""

    def __init__(self, central: CentralServer, username: str, password: str) -> None:
        self.url = central.url
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        form = urllib.parse.urlencode({"username": username, "password": password,
                                       "next": "/"}).encode()  # fmt: skip
        with self.opener.open(f"{self.url}/login", data=form, timeout=30) as response:
            landed = urllib.parse.urlsplit(response.geturl()).path
        assert landed == "/", f"login as {username} ended on {landed}"

    def page(self, path: str) -> HtmlPage:
        with self.opener.open(f"{self.url}{path}", timeout=30) as response:
            landed = urllib.parse.urlsplit(response.geturl()).path
            body: bytes = response.read()
        assert landed != "/login", f"{path}: sent to the login page"
        return HtmlPage(body.decode("utf-8"))

    def tiles(self, town: str) -> dict[str, SiteTile]:
        """The fleet page's tiles of ``town``'s sites, by site id."""
        page = self.page("/?" + urllib.parse.urlencode({"town": town}))
        tiles = {}
        for tile in page.by_class("t", "a"):
            if tile.attrs.get("id", "").startswith("t-"):
                inner = list(tile.descendants())
                [health] = tile.classes - {"t"}
                tiles[tile.attrs["id"].removeprefix("t-")] = SiteTile(
                    health=health,
                    drift=any(e.tag == "i" and "drift" in e.classes for e in inner),
                    alarms=" ".join(e.text for e in inner if e.tag == "b"))
        return tiles

    def site(self, site_id: str) -> HtmlPage:
        return self.page(f"/sites/{site_id}")

    def day_counts(self, site_id: str) -> DayCounts:
        charts: dict[str, Any] = json.loads(self.site(site_id).by_id("charts-data").text)
        return DayCounts(int(sum(charts["arrivals"])), int(sum(charts["served"])),
                         int(sum(charts["ratings"])))


def create_account(deployment: Deployment, username: str, name: str, role: str,
                   password: str) -> None:  # fmt: skip
    """`sudo onedoor-central user create ... --password-stdin`, as the README has ops run it."""
    central_cli(deployment, "user", "create", "--username", username, "--name", name,
                "--role", role, "--password-stdin", stdin=f"{password}\n")


@contextmanager
def chromium_page(central: CentralServer, username: str, password: str) -> Iterator[Page]:
    """A page of Debian's headless Chromium, logged in to the central with an account."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 900},
                                          locale="zh-CN")  # fmt: skip
            page = context.new_page()
            page.set_default_timeout(30_000)
            page.goto(f"{central.url}/login")
            page.fill("input[name=username]", username)
            page.fill("input[name=password]", password)
            page.click("#login-form > button[type=submit]")
            page.wait_for_url(f"{central.url}/")
            yield page
        finally:
            browser.close()
