"""The 预约 pages in Debian's headless Chromium against uvicorn: a town's manager sees the
day's bookings of their sites only, each slot's booked / quota, checked in and no-shows,
reached from the navigation and from the site page; another town's site is refused."""

from __future__ import annotations

import datetime as dt
import urllib.error
import urllib.request

import pytest
from playwright.sync_api import Browser

from central.audit import Actor
from central.auth import Role
from central.bookings import Bookings, record_check_in
from central.config import CentralConfig
from central.stats import BUSINESS_TZ, business_date
from tests.central.browser.test_dashboards import (  # noqa: F401 - the module's fixtures
    LiveServer,
    browser,
    live,
    new_page,
    shot,
)
from tests.central.browser.test_ratings import open_as
from tests.central.test_bookings import SALT, id_number

SITE, ELSEWHERE = "zs-sanxiang", "zs-shiqi-01"  # 三乡镇, 石岐街道
PLATFORM = Actor("yss", "10.0.0.9", "token-yss", "operator")


def test_a_town_manager_reads_the_days_bookings_per_slot(
    browser: Browser, live: LiveServer,  # noqa: F811 - the fixtures imported above
) -> None:
    central = live.env.central
    today = business_date(central.now())
    yesterday = today - dt.timedelta(days=1)
    before = dt.datetime.combine(yesterday, dt.time(7, 0), tzinfo=BUSINESS_TZ)
    bookings = Bookings(central.sessions, CentralConfig(booking_person_salt=SALT))
    bookings.set_rules(SITE, {"default_quota": 2}, actor=PLATFORM, now=before)
    day = yesterday.isoformat()
    taken = [bookings.book(site, service, day, slot, id_number(700 + n), reference=None,
                           actor=PLATFORM, now=before)
             for n, (site, service, slot) in enumerate([
                 (SITE, "shebao", "09:00-09:30"), (SITE, "shebao", "09:00-09:30"),
                 (SITE, "huji", "10:00-10:30"), (ELSEWHERE, "shebao", "09:00-09:30")])]
    with central.sessions.begin() as session:
        record_check_in(session, SITE, taken[0].code, "B001",
                        dt.datetime.combine(yesterday, dt.time(9, 5), tzinfo=BUSINESS_TZ))
    _, secret = central.tokens.create(Role.VIEWER, "三乡镇 manager", towns=["三乡镇"])

    page = open_as(browser, live, secret)
    page.click("header nav a[href='/bookings']")
    page.wait_for_selector("h1")
    assert page.locator("h1").inner_text() == f"预约情况 {today.isoformat()}"
    page.click("#prev-day")
    page.wait_for_selector("#bookings")
    assert page.locator(f"#b-{ELSEWHERE}").count() == 0  # another town's site
    row = page.locator(f"#b-{SITE} td").all_inner_texts()
    assert row == ["中山市三乡镇行政服务中心", "3", "1", "2", "0", "0"]
    page.click(f"#b-{SITE} a")
    page.wait_for_selector("#slots")
    slots = {(r.get_attribute("data-slot"), r.get_attribute("data-service")):
             r.locator("td").all_inner_texts()[2:]
             for r in page.locator("#slots tbody tr[data-slot]").all()}
    assert slots == {("09:00-09:30", "shebao"): ["2 / 2 已约满", "1", "1", "0", "0"],
                     ("10:00-10:30", "huji"): ["1 / 2", "0", "1", "0", "0"]}
    assert page.locator("#slots-total").inner_text().split() == [
        "合计", "3", "/", "4", "1", "2", "0", "0"]
    shot(page, "site_bookings")
    page.click("a.lang")  # to English: the same day (the switch keeps the page's query)
    page.wait_for_selector(f"h1:has-text('Bookings of the day {day}')")
    assert page.locator("#slots-total").inner_text().split()[1:] == [
        "3", "/", "4", "1", "2", "0", "0"]
    page.click("a.lang")
    page.wait_for_selector(f"h1:has-text('预约情况 {day}')")
    # From the site page, to today's bookings of the site.
    page.click("#to-site")
    page.wait_for_selector("#site-bookings")
    page.click("#site-bookings")
    page.wait_for_selector("#site-bookings-form")
    assert page.locator("h1").inner_text().endswith(f"预约情况 {today.isoformat()}")
    assert page.locator(".empty").inner_text() == "当日没有预约"
    answer = page.goto(f"{live.url}/sites/{ELSEWHERE}/bookings?day={day}")
    assert answer is not None
    assert answer.status == 403
    page.context.close()
    # Each operation is on the audit page (an admin's), named in Chinese.
    admin = new_page(browser, live, Role.ADMIN)
    admin.goto(f"{live.url}/admin/audit")
    admin.select_option("select[name=action]", "booking.")
    admin.click("#audit-form button[type=submit]")
    admin.wait_for_url("**/admin/audit?*action=booking.*")
    actions = [row.get_attribute("data-action") for row in admin.locator("tr[data-action]").all()]
    assert actions == ["booking.check_in"] + ["booking.create"] * 4 + ["booking.rules"]
    assert "预约签到" in admin.locator("tr[data-action='booking.check_in']").inner_text()
    assert SITE in admin.locator("tr[data-action='booking.check_in']").inner_text()
    admin.context.close()
    request = urllib.request.Request(f"{live.url}/api/v1/sites/{SITE}/booking_slots?day={day}",
                                     headers={"Authorization": f"Bearer {secret}"})
    with urllib.request.urlopen(request, timeout=20) as response:
        assert response.status == 200
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(urllib.request.Request(
            f"{live.url}/api/v1/sites/{ELSEWHERE}/booking_slots?day={day}",
            headers={"Authorization": f"Bearer {secret}"}), timeout=20)
    assert refused.value.code == 403
    refused.value.close()
