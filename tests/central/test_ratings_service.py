"""好差评 through the running central (real Mosquitto, SQLite and PostgreSQL): a 差评 sent by
an edge alerts the webhook at once, a step on its case reaches the webhook too, and the
province-report task sends the records to a fake provincial platform."""

from __future__ import annotations

import asyncio
import json

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from central.alarms import WebhookNotifier
from central.audit import Actor
from central.models import BadRatingCase, RatingProfile, RatingRecord, ReportStatus
from central.ratings import BadRatingDesk
from central.service import CentralService
from firmware_protocols import mqtt_messages as mm
from tests.central.edge_sim import EdgeClient
from tests.central.http_capture import capture_server
from tests.central.province_fake import APP_KEY, APP_SECRET, FakeProvinceServer
from tests.central.sim import SimSite
from tests.central.test_service_mqtt import _config, _connected, _until
from tests.servers import MosquittoBroker

CASE = mm.CaseInfo(no="442000-2026-000777", item_code="ITEM-1", item_name="户口迁移",
                   department="DEPT-1", department_name="公安分局", source="hook")


def test_a_bad_rating_alerts_at_once_and_is_reported(
    mqtt_broker: MosquittoBroker, db_url: str, engine: Engine,
    sessions: sessionmaker[Session], sites: list[str],
) -> None:
    site_id = sites[1]
    with sessions.begin() as session:
        session.add(RatingProfile(site_id=site_id, region_code="442000107201",
                                  department=None, department_name=None))

    async def main(webhook: str, province: FakeProvinceServer) -> None:
        config = _config(mqtt_broker, db_url, webhook_url=webhook, province_url=province.url,
                         province_app_key=APP_KEY, province_app_secret=APP_SECRET,
                         province_interval_s=0.2, province_hold_s=1)
        notifier = WebhookNotifier(webhook, attempts=1)
        async with CentralService(config, engine=engine, notifier=notifier) as central:
            await _connected(central)
            sim = SimSite(site_id)
            edge = await asyncio.to_thread(EdgeClient, mqtt_broker.host, mqtt_broker.port, sim)
            try:
                edge.send(sim.state("online"), sim.event(mm.RatingGiven(
                    ticket="A001", window=1, staff="zs0231", value=1, case=CASE,
                    reasons=["attitude"])))
                await asyncio.to_thread(edge.wait_ack, 1)
                await _until(lambda: bool(posted(capture.requests)))
                [raised] = posted(capture.requests)
                assert (raised["type"], raised["action"], raised["severity"]) == (
                    "bad_rating", "raised", "warning")
                assert raised["detail"]["reasons"] == ["服务态度不好"]
                assert raised["detail"]["town"] == "测试镇"
                with sessions() as session:
                    case = session.scalars(select(BadRatingCase)).one()
                desk = BadRatingDesk(central.sessions)
                li = Actor(name="李主任", source="10.0.0.8", actor_id="0123abcd")
                desk.act(case.id, "contact", li, "已回访", now=central.clock())
                closed = desk.act(case.id, "rectify", li, "已整改", now=central.clock())
                central.queue_notifications(closed)
                await _until(lambda: len(posted(capture.requests)) == 2)
                assert posted(capture.requests)[1]["action"] == "cleared"
                # The record goes up once its hold is over (the task runs every 0.2 s).
                await _until(lambda: bool(province.province.accepted), timeout=20)
                [record] = province.province.accepted.values()
                assert (record["projectNo"], record["alternate"], record["areaCode"]) == (
                    "442000-2026-000777", "1", "442000107201")
                await _until(lambda: status_of(sessions) is ReportStatus.SENT)
            finally:
                edge.close()

    with capture_server() as capture, FakeProvinceServer() as province:
        asyncio.run(main(capture.url, province))


def posted(requests: list[object]) -> list[dict[str, object]]:
    """The bad_rating notifications the webhook got."""
    found = [json.loads(r.body) for r in requests]  # type: ignore[attr-defined]
    return [n for n in found if n["type"] == "bad_rating"]


def status_of(sessions: sessionmaker[Session]) -> ReportStatus:
    with sessions() as session:
        return session.scalars(select(RatingRecord.report_status)).one()

