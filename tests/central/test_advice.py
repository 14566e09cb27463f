"""Staffing advice at the central, on SQLite and PostgreSQL: stored, renewed, replaced,
cleared by the edge or by expiry, the newest message winning; an info alarm tells the
site's manager without colouring the site as faulty."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from central.advice import expire_advice
from central.alarms import AlarmBook, Notification
from central.config import CentralConfig
from central.ingest import IngestProcessor
from central.models import (
    AdviceEnd,
    Alarm,
    AlarmAction,
    AlarmHistory,
    AlarmType,
    Severity,
    StaffingAdvisory,
)
from central.queries import ReadModel
from central.telemetry import EmbeddedTelemetrySink
from central.views import SiteDetail
from firmware_protocols import mqtt_messages as mm
from tests.central.sim import T0_MS, SimSite, advice, advisory, received

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
SITE = "zs-sanxiang-01"


def _feed(sessions: sessionmaker[Session], *messages: mm.Message,
          at: datetime = NOW) -> list[Notification]:
    processor = IngestProcessor(sessions, CentralConfig(), EmbeddedTelemetrySink(sessions))
    return processor.process(received(*messages, at=at), at).notifications


def _rows(sessions: sessionmaker[Session]) -> list[StaffingAdvisory]:
    with sessions() as session:
        return list(session.scalars(select(StaffingAdvisory).order_by(StaffingAdvisory.id)))


def _alarms(sessions: sessionmaker[Session]) -> list[Alarm]:
    with sessions() as session:
        return list(session.scalars(select(Alarm).where(
            Alarm.type == AlarmType.STAFFING_ADVICE).order_by(Alarm.id)))


def _detail(sessions: sessionmaker[Session], now: datetime = NOW) -> SiteDetail:
    return ReadModel(sessions).site_detail(SITE, now)


def test_an_advisory_is_stored_and_told_as_an_info_alarm(
        small_registry: sessionmaker[Session]) -> None:
    sim = SimSite(SITE)
    body = advisory()
    notices = _feed(small_registry, sim.state(), advice(SITE, body))
    (row,) = _rows(small_registry)
    assert row.advisory_id == body.id
    assert row.services == ["zonghe"]
    assert row.move == {"kind": "open", "windows": [2], "services": ["zonghe"], "count": 1}
    assert row.expires_at == NOW + timedelta(minutes=15)  # from arrival, not the edge clock
    (alarm,) = _alarms(small_registry)
    assert alarm.severity is Severity.INFO
    assert alarm.message.startswith("未来60分钟综合受理预计p90等候45分钟")
    assert alarm.detail["message_en"].startswith("Next 60 min")
    (notice,) = [n for n in notices if n.type == "staffing_advice"]
    assert (notice.action, notice.severity, notice.site_id) == ("raised", "info", SITE)
    assert notice.message == body.message_zh  # the manager reads Chinese first

    detail = _detail(small_registry)
    assert detail.health == "ok"  # advice is not a fault
    assert detail.advice is not None
    assert detail.advice.advisory_id == str(body.id)
    assert detail.advice.before[0]["p90_s"] == 2700
    assert detail.to_json()["advice"]["move"]["windows"] == [2]


def test_renewal_updates_without_a_new_notice_and_a_stale_message_is_ignored(
        small_registry: sessionmaker[Session]) -> None:
    body = advisory()
    _feed(small_registry, advice(SITE, body, ts=T0_MS))
    later = NOW + timedelta(minutes=5)
    notices = _feed(small_registry, advice(SITE, body, ts=T0_MS + 300_000), at=later)
    assert notices == []
    (row,) = _rows(small_registry)
    assert row.expires_at == later + timedelta(minutes=15)
    assert row.ts_ms == T0_MS + 300_000
    (alarm,) = _alarms(small_registry)
    assert alarm.occurrences == 1
    # A clear delayed from before the renewal (another replica) changes nothing.
    assert _feed(small_registry, advice(SITE, None, ts=T0_MS + 100_000), at=later) == []
    assert _rows(small_registry)[0].cleared_at is None


def test_another_move_replaces_the_advisory_and_the_edge_clears_it(
        small_registry: sessionmaker[Session]) -> None:
    first = advisory()
    _feed(small_registry, advice(SITE, first))
    second = advisory(move=mm.AdviceMove(kind="add", windows=[], services=["zonghe"], count=2))
    notices = _feed(small_registry, advice(SITE, second, ts=T0_MS + 300_000))
    assert [(n.action, n.type) for n in notices] == [("cleared", "staffing_advice"),
                                                    ("raised", "staffing_advice")]
    old, new = _rows(small_registry)
    assert (old.cleared_by, new.cleared_by) == (AdviceEnd.REPLACED, None)
    assert _detail(small_registry).advice is not None

    notices = _feed(small_registry, advice(SITE, None, ts=T0_MS + 600_000))
    assert [(n.action, n.type) for n in notices] == [("cleared", "staffing_advice")]
    assert _rows(small_registry)[1].cleared_by is AdviceEnd.EDGE
    assert _detail(small_registry).advice is None
    first_alarm, second_alarm = _alarms(small_registry)
    assert second_alarm.cleared_at is not None
    with small_registry() as session:
        history = list(session.scalars(select(AlarmHistory.action).where(
            AlarmHistory.alarm_id == first_alarm.id).order_by(AlarmHistory.id)))
    assert history == [AlarmAction.RAISED, AlarmAction.CLEARED]
    # A clear with nothing in force is a no-op.
    assert _feed(small_registry, advice(SITE, None, ts=T0_MS + 900_000)) == []


def test_advice_the_edge_stops_renewing_expires(small_registry: sessionmaker[Session]) -> None:
    _feed(small_registry, advice(SITE, advisory(), ttl_ms=600_000))
    with small_registry.begin() as session:
        book = AlarmBook(session, NOW + timedelta(minutes=9))
        assert expire_advice(book) == 0
    with small_registry.begin() as session:
        book = AlarmBook(session, NOW + timedelta(minutes=10))
        assert expire_advice(book) == 1
    assert [(n.action, n.type) for n in book.notifications] == [("cleared", "staffing_advice")]
    (row,) = _rows(small_registry)
    assert row.cleared_by is AdviceEnd.EXPIRED
    assert _alarms(small_registry)[0].cleared_at is not None
    assert _detail(small_registry).advice is None


def test_a_newer_session_wins_over_a_clock_set_back(
        small_registry: sessionmaker[Session]) -> None:
    """After a reboot the Pi's clock may start behind: its session number still orders."""
    _feed(small_registry, advice(SITE, advisory(), ts=T0_MS, session=4))
    notices = _feed(small_registry, advice(SITE, None, ts=T0_MS - 86_400_000, session=5))
    assert [n.action for n in notices] == ["cleared"]
    assert _detail(small_registry).advice is None


def test_two_sites_each_hold_their_own(small_registry: sessionmaker[Session]) -> None:
    other = "zs-sanxiang-02"
    one, two = advisory(), advisory(uuid.uuid4(), services=("zonghe", "shebao"))
    _feed(small_registry, advice(SITE, one), advice(other, two))
    assert {r.site_id: r.advisory_id for r in _rows(small_registry)} == {SITE: one.id,
                                                                        other: two.id}
    _feed(small_registry, advice(SITE, None, ts=T0_MS + 1))
    assert ReadModel(small_registry).site_detail(other, NOW).advice is not None
