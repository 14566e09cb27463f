"""Fuzz the central ingest's payload handling without a broker.

The entry point is :meth:`central.ingest.IngestProcessor.process`, which takes
the ``(topic, payload)`` publishes the MQTT client hands over
(:class:`central.ingest.Received`) and commits them in one transaction. The
property: a batch of hostile publishes never makes ``process`` raise (a bad
publish is counted per site and reason, never fatal to the batch it came in),
every publish the contract decoder refuses is counted as rejected, and the
valid publishes beside it are still stored. Runs on SQLite and on the real
PostgreSQL of ``tests/conftest.py``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from central.config import CentralConfig
from central.db import make_engine, migrate, session_factory
from central.ingest import IngestProcessor, Received
from central.models import EventRecord
from central.seed import SERVICES_CSV, load_seed
from central.telemetry import EmbeddedTelemetrySink
from firmware_protocols import mqtt_messages as mm
from firmware_protocols.mqtt_topics import InvalidMessage
from tests.fuzz import strategies as fs
from tests.fuzz.harness import fuzz_settings, golden_mqtt, known_findings_rejected
from tests.fuzz.harness import test_timeout as fuzz_timeout
from tests.servers import PostgresCluster

pytestmark = pytest.mark.timeout(fuzz_timeout())

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
GOLDEN_SITE = "zs-sanxiang-01"
SITES = ("zs-sanxiang", "zs-sanxiang-01")
SITES_CSV = """\
id,name,town,kind,lat,lon,windows
zs-sanxiang,中山市三乡镇行政服务中心,三乡镇,district,22.3560,113.4340,4
zs-sanxiang-01,三乡雍陌村党群服务中心,三乡镇,village,22.3600,113.4400,2
"""


def _processor(url: str, workdir: Path) -> tuple[IngestProcessor, sessionmaker[Session]]:
    engine = make_engine(url)
    migrate(engine)
    sessions = session_factory(engine)
    sites_csv = workdir / "sites.csv"
    sites_csv.write_text(SITES_CSV, encoding="utf-8")
    with sessions.begin() as session:
        load_seed(session, sites_csv, SERVICES_CSV)
    return IngestProcessor(sessions, CentralConfig(), EmbeddedTelemetrySink(sessions)), sessions


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def ingest(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[IngestProcessor, sessionmaker[Session]]]:
    workdir = tmp_path_factory.mktemp("ingest")
    if request.param == "sqlite":
        url = f"sqlite:///{workdir}/central.db"
    else:
        cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
        url = cluster.create_database("onedoor_fuzz_ingest")
    processor, sessions = _processor(url, workdir)
    yield processor, sessions
    sessions.kw["bind"].dispose()


# --------------------------------------------------------------------------- publishes

_GOLDEN = golden_mqtt()
_EDGE_KINDS = ("state", "event", "telemetry", "cmd_result", "advice")
_UPLINK = [(t, p) for t, p in _GOLDEN if t.rsplit("/", 1)[-1] in _EDGE_KINDS]


@st.composite
def _publish(draw: st.DrawFn) -> tuple[str, bytes]:
    topic, payload = draw(st.sampled_from(_UPLINK))
    site = draw(st.sampled_from([*SITES, "zs-unknown-site"]))
    topic = topic.replace(GOLDEN_SITE, site)
    doc = json.loads(payload)
    doc["site"] = site
    if "seq" in doc:  # a fresh event each time, so storing and folding run, not only dedup
        doc["seq"] = draw(st.integers(1, 2**53 - 1) | st.integers(1, 50))
        doc["id"] = str(uuid.UUID(int=draw(st.integers(0, 2**128 - 1))))
    how = draw(st.sampled_from(["valid", "json", "json", "bytes", "raw", "topic"]))
    if how == "json":
        doc = draw(fs.mutated_json(doc))
    wire = json.dumps(doc, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")
    if how == "bytes":
        wire = draw(fs.mutated(st.just(wire)))
    elif how == "raw":
        wire = draw(st.binary(max_size=300))
    elif how == "topic":
        topic = draw(st.text(max_size=80) | st.just(f"onedoor/v1/{site}/ack"))
    return topic, wire


def _accepted(topic: str, payload: bytes) -> mm.Incoming | None:
    try:
        return mm.decode_publish(topic, payload)
    except InvalidMessage:
        return None


@fuzz_settings(0.25)
@given(batch=st.lists(_publish(), min_size=1, max_size=4))
def test_hostile_publishes_never_break_a_batch(
    ingest: tuple[IngestProcessor, sessionmaker[Session]], batch: list[tuple[str, bytes]]
) -> None:
    processor, sessions = ingest
    with known_findings_rejected():
        outcome = processor.process([Received(t, p, NOW) for t, p in batch], NOW)
        decoded = [_accepted(t, p) for t, p in batch]
    refused = sum(1 for incoming in decoded if incoming is None)
    unknown = sum(1 for i in decoded if i is not None and i.site_id not in SITES)
    assert outcome.rejected == refused + unknown
    events = {
        (i.site_id, i.message.seq)
        for i in decoded
        if i is not None and i.site_id in SITES and isinstance(i.message, mm.Event)
    }
    with sessions() as session:
        for site_id, seq in events:  # the valid events beside the bad ones were committed
            stored = session.scalar(
                select(EventRecord.id).where(EventRecord.site_id == site_id, EventRecord.seq == seq)
            )
            assert stored is not None, (site_id, seq)
