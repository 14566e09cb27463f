"""The audit log page: filters by business-time days, action (or a family), who and target;
older pages; the CSV export with the same filters; only a city-wide admin opens it."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from pathlib import Path

from central.audit import Actor, AuditAction
from central.auth import Role
from central.stats import BUSINESS_TZ
from central.web.people import AUDIT_PAGE_SIZE
from central.web.text import AUDIT_ACTION_TEXT
from tests.central.test_api_support import running_app
from tests.servers import MosquittoBroker

DAY = dt.date(2026, 11, 23)


def _at(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=BUSINESS_TZ)


def _ids(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'<tr data-id="(\d+)"', html)]


def test_every_audit_action_has_a_name_on_the_page() -> None:
    assert {a.value for a in AuditAction} <= set(AUDIT_ACTION_TEXT)


def test_the_audit_page_filters_pages_and_exports(
    tmp_path: Path, mqtt_broker: MosquittoBroker
) -> None:
    with running_app(tmp_path, mqtt_broker) as env:
        audit = env.central.audit
        ops = Actor(name="ops-li", source="10.0.0.7", actor_id="user:7", role="operator")
        # 00:30 local on DAY is still the 22nd in UTC: days are business-time days
        audit.write(ops, AuditAction.ALARM_ACK, "alarm:1", {"note": "已处理"},
                    now=_at(DAY, 0, 30))  # fmt: skip
        audit.write(ops, AuditAction.SITE_UPDATE, "zs-shiqi-01", {"fields": ["name"]},
                    now=_at(DAY, 9))  # fmt: skip
        audit.write(Actor.command_line(), AuditAction.SITE_CREATE, "zs-shiqi-09",
                    now=_at(DAY - dt.timedelta(days=1), 23, 59))  # fmt: skip
        next_day = DAY + dt.timedelta(days=1)
        for n in range(AUDIT_PAGE_SIZE + 5):  # more than a page, the day after
            audit.write(ops, AuditAction.COMMAND_SEND, f"zs-shiqi-0{n % 3 + 1}",
                        {"command": "announce"}, now=_at(next_day, 8, n % 60))  # fmt: skip

        password = env.add_user("city.admin", Role.ADMIN)
        env.login_user("city.admin", password)
        whole = env.client.get("/admin/audit")
        assert whole.status_code == 200
        assert 'href="/admin/audit"' in whole.text  # in the menu
        first_page = _ids(whole.text)
        assert len(first_page) == AUDIT_PAGE_SIZE
        assert first_page == sorted(first_page, reverse=True)  # newest first
        assert "auth.login" in whole.text  # this very login is the newest entry
        older = re.search(r'id="audit-older" href="([^"]+)"|href="([^"]+)" id="audit-older"',
                          whole.text)  # fmt: skip
        assert older is not None
        rest = env.client.get((older.group(1) or older.group(2)).replace("&amp;", "&"))
        second_page = _ids(rest.text)
        assert second_page
        assert max(second_page) < min(first_page)
        assert len(first_page) + len(second_page) == AUDIT_PAGE_SIZE + 5 + 3 + 1  # + the login

        one_day = env.client.get("/admin/audit", params={"start": DAY.isoformat(),
                                                          "end": DAY.isoformat()})  # fmt: skip
        assert len(_ids(one_day.text)) == 2
        assert "确认告警" in one_day.text
        assert "修改站点" in one_day.text
        assert "已处理" in one_day.text  # the detail in Chinese, not \\u escapes
        sites = env.client.get("/admin/audit", params={"action": "site."})
        assert len(_ids(sites.text)) == 2
        mine = env.client.get("/admin/audit", params={"actor": "ops-li", "target": "alarm:1"})
        assert len(_ids(mine.text)) == 1

        bad = env.client.get("/admin/audit", params={"start": "23.11.2026"})
        assert bad.status_code == 200
        assert "日期格式应为 YYYY-MM-DD" in bad.text
        backwards = env.client.get("/admin/audit", params={"start": "2026-11-24",
                                                            "end": "2026-11-23"})  # fmt: skip
        assert "结束日期早于开始日期" in backwards.text

        # the export link carries the page's filters, and all of the entries they match
        link = re.search(r'id="audit-csv" href="([^"]+)"', one_day.text)
        assert link is not None
        exported = env.client.get(link.group(1).replace("&amp;", "&"))
        assert exported.status_code == 200, exported.text
        assert exported.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(exported.text.lstrip("\ufeff"))))
        assert [r["action"] for r in rows] == ["site.update", "alarm.ack"]
        assert rows[1]["source"] == "10.0.0.7"
        assert "已处理" in rows[1]["detail"]
        everything = env.client.get(re.sub(r"\?.*", "?limit=100000", link.group(1)))
        assert len(list(csv.DictReader(io.StringIO(everything.text.lstrip("\ufeff"))))) == (
            AUDIT_PAGE_SIZE + 5 + 3 + 1)


def test_only_a_city_wide_admin_opens_the_audit_log(
    tmp_path: Path, mqtt_broker: MosquittoBroker
) -> None:
    with running_app(tmp_path, mqtt_broker) as env:
        town_admin = env.add_user("sanxiang.admin", Role.ADMIN, ["三乡镇"])
        env.login_user("sanxiang.admin", town_admin)
        assert env.client.get("/admin/audit").status_code == 403
        assert 'href="/admin/audit"' not in env.client.get("/").text
        operator = env.add_user("ops.chen", Role.OPERATOR)
        env.login_user("ops.chen", operator)
        assert env.client.get("/admin/audit").status_code == 403
        env.client.cookies.clear()
        anonymous = env.client.get("/admin/audit", follow_redirects=False)
        assert anonymous.status_code in (302, 303, 307)
        assert "/login" in anonymous.headers["location"]
