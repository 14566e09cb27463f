"""The site page's edge devices and remote diagnostics, for an operator, in headless Chromium.

A replaced Pi waits: the operator takes the site over to it from the page; then asks the
device for its diagnostics and reads them on the page once the answer is in. The site's
messages go through the real ingest (as an edge sends them).
"""

from __future__ import annotations

import uuid

from playwright.sync_api import Browser

from central.auth import Role
from firmware_protocols import mqtt_messages as mm
from tests.central.browser.test_dashboards import (  # noqa: F401 (fixtures)
    LiveServer,
    browser,
    live,
    new_page,
    shot,
)
from tests.central.sim import SimSite

SITE = "zs-shiqi-04"
OLD, NEW = "0123456789abcdef", "fedcba9876543210"


def _report(site: SimSite, command_id: uuid.UUID) -> mm.Diagnostics:
    status = mm.DiagStatus(
        config="cfg-1", day="2026-11-23", numbering="granted", epoch=1,
        last_seq=mm.epoch_base(1) + 12, acked_seq=mm.epoch_base(1) + 12, outbox_depth=0,
        journal_bytes=2_097_152, uplink_connects=2,
        tasks=[mm.DiagTask(name="uplink", restarts=0), mm.DiagTask(name="device:printer",
                                                                   restarts=3)],
        devices=[mm.DeviceStat(device="printer", kind="printer", status="fault",
                               detail="paper_out")],
        host=mm.HostStat(cpu_temp_c=55.0, load1=0.5, mem_used_pct=40.0, disk_used_pct=21.0,
                         uptime_s=3600))
    logs = [mm.LogLine(ts=site.clock_ms, level="error",
                       text="printer.failed ticket=A012 error=OSError('paper out')"),
            mm.LogLine(ts=site.clock_ms + 1, level="info", text="uplink.connected session=2")]
    return mm.Diagnostics(site=site.site_id, id=command_id, device=NEW, boot_id="b2",
                          software="onedoor-0.1.0", ts=site.clock_ms, status=status, logs=logs,
                          logs_dropped=0)


def test_an_operator_takes_a_site_over_and_reads_its_diagnostics(browser: Browser,  # noqa: F811
                                                                  live: LiveServer  # noqa: F811
                                                                  ) -> None:
    old = SimSite(SITE, device=OLD)
    live.env.feed(old.state())  # a new site: granted epoch 0 at once
    old.epoch = 0
    live.env.feed(old.state(), old.event(mm.DayReset(day="2026-11-23")),
                  old.event(mm.TicketIssued(ticket="A001", service="zonghe",
                                            ticket_class="normal", booked_ts=None,
                                            channel="kiosk", people_ahead=0, wait=None)),
                  old.state("offline", lwt=True))
    new = SimSite(SITE, device=NEW)
    live.env.feed(new.state())

    viewer = new_page(browser, live, Role.VIEWER)
    viewer.goto(f"{live.url}/sites/{SITE}")
    assert viewer.locator(f'#devices-edge tr[data-device="{NEW}"]').inner_text().count(
        "等待接管") == 1
    assert viewer.locator("form.takeover").count() == 0  # viewers cannot
    assert viewer.locator("#diagnostics").count() == 0
    viewer.context.close()

    page = new_page(browser, live, Role.OPERATOR)
    page.goto(f"{live.url}/sites/{SITE}")
    row = page.locator(f'#devices-edge tr[data-device="{NEW}"]')
    row.locator("input[name=skip]").fill("5")
    row.locator("button[type=submit]").click()
    page.wait_for_selector(f'#devices-edge tr.role-holder[data-device="{NEW}"]')
    assert "已被替换" in page.locator(f'#devices-edge tr[data-device="{OLD}"]').inner_text()
    assert "+5" in page.locator(f'#devices-edge tr[data-device="{NEW}"]').inner_text()

    page.fill("#diagnostics-form input[name=lines]", "50")
    page.click("#diagnostics-form button[type=submit]")
    page.wait_for_function("document.getElementById('diagnostics-form').dataset.lastCommand")
    command_id = uuid.UUID(page.eval_on_selector("#diagnostics-form",
                                                 "f => f.dataset.lastCommand"))
    new.epoch = 1
    live.env.feed(_report(new, command_id))  # the device's answer on diag
    page.wait_for_selector("#diag-logs tbody tr")
    assert "paper out" in page.locator("#diag-logs").inner_text()
    assert "device:printer (3×)" in page.locator("#diag-status").inner_text()
    shot(page, "site_devices")
    page.context.close()
    live.env.clear_retained(SITE)
