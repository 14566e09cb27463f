"""Telemetry sinks: the embedded one on both databases, the Influx one on its wire contract."""

from __future__ import annotations

import gzip
import json
import time
import urllib.parse

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from central.config import CentralConfig
from central.models import TelemetryPoint, TelemetryRollup
from central.telemetry import (
    DAY_MS,
    HOUR_MS,
    EmbeddedTelemetrySink,
    HistoryPoint,
    InfluxTelemetrySink,
    Point,
    flux_history,
    make_sink,
    points_from_telemetry,
    to_line_protocol,
)
from tests.central.http_capture import capture_server
from tests.central.sim import T0_MS, SimSite

SITE = "zs-sanxiang-01"
T0 = T0_MS - T0_MS % HOUR_MS  # an hour boundary


def test_points_from_telemetry() -> None:
    snapshot = SimSite(SITE).telemetry(waiting=7, oldest_wait_s=420, outbox=3)
    points = {(p.metric, p.key): p.value for p in points_from_telemetry(SITE, snapshot, 5)}
    assert points == {
        ("host.cpu_temp_c", ""): 48.5,
        ("host.load1", ""): 0.3,
        ("host.mem_used_pct", ""): 30.0,
        ("host.disk_used_pct", ""): 20.0,
        ("outbox.depth", ""): 3.0,
        ("clock.synced", ""): 1.0,
        ("windows.open", ""): 2.0,
        ("windows.serving", ""): 1.0,
        ("devices.faulty", ""): 0.0,
        ("queue.waiting", "zonghe"): 7.0,
        ("queue.oldest_wait_s", "zonghe"): 420.0,
    }
    assert {p.ts_ms for p in points_from_telemetry(SITE, snapshot, 5)} == {snapshot.ts}
    unsynced = SimSite(SITE).telemetry(synced=False)
    assert {p.ts_ms for p in points_from_telemetry(SITE, unsynced, 5)} == {5}


def test_embedded_downsampling_and_retention(sessions: sessionmaker[Session]) -> None:
    sink = EmbeddedTelemetrySink(sessions, raw_days=1, minute_days=30)
    # Two hours of one point every 20 s: values 0, 1, 2, ...
    points = [Point(SITE, "queue.waiting", "zonghe", T0 + i * 20_000, float(i)) for i in range(360)]
    sink.write(points[:200])
    sink.write(points[200:])  # a second write lands in the same buckets: aggregates add up
    sink.write([Point(SITE, "queue.waiting", "zonghe", T0 + 30_000, 1000.0)])  # a late point

    now = T0 + 2 * HOUR_MS
    raw = sink.history(SITE, "queue.waiting", "zonghe", start_ms=T0, end_ms=now, now_ms=now)
    assert len(raw) == 361
    minutes = sink.history(
        SITE, "queue.waiting", "zonghe", start_ms=T0, end_ms=now, now_ms=now, resolution_s=60
    )
    assert len(minutes) == 120
    assert (minutes[0].count, minutes[0].minimum, minutes[0].maximum) == (4, 0.0, 1000.0)
    assert minutes[0].mean == pytest.approx((0 + 1 + 2 + 1000) / 4)
    assert minutes[1].mean == pytest.approx(4.0)  # values 3, 4, 5
    hours = sink.history(
        SITE, "queue.waiting", "zonghe", start_ms=T0, end_ms=now, now_ms=now, resolution_s=3600
    )
    assert [(h.ts_ms, h.count, h.minimum, h.maximum) for h in hours] == [
        (T0, 181, 0.0, 1000.0),
        (T0 + HOUR_MS, 180, 180.0, 359.0),
    ]
    # The resolution follows what is still kept.
    assert sink.resolution_for(now - HOUR_MS, now) == 0
    assert sink.resolution_for(now - 2 * DAY_MS, now) == 60
    assert sink.resolution_for(now - 40 * DAY_MS, now) == 3600

    much_later = T0 + 31 * DAY_MS + 2 * HOUR_MS
    assert sink.prune(much_later) == (361, 120)
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(TelemetryPoint)) == 0
        kept = session.scalars(select(TelemetryRollup.resolution_s)).all()
        assert sorted(kept) == [3600, 3600]
    old = sink.history(
        SITE, "queue.waiting", "zonghe", start_ms=T0, end_ms=T0 + 2 * HOUR_MS, now_ms=much_later
    )
    assert [h.count for h in old] == [181, 180]  # hourly history survives forever


def test_make_sink_follows_config(sessions: sessionmaker[Session]) -> None:
    assert isinstance(make_sink(CentralConfig(), sessions), EmbeddedTelemetrySink)
    influx = make_sink(CentralConfig(influx_url="http://127.0.0.1:9", influx_token="t"), sessions)
    assert isinstance(influx, InfluxTelemetrySink)
    influx.close()


def test_line_protocol() -> None:
    points = [
        Point("zs-a", "queue.waiting", "zonghe", 1000, 7),
        Point("zs-a", "queue.oldest_wait_s", "zonghe", 1000, 420.5),
        Point("zs-a", "host.load1", "", 1000, 0.25),
        Point("zs a,b=c", "host.load1", "", 2000, 1),
    ]
    assert to_line_protocol(points) == [
        "queue,site=zs-a,service=zonghe waiting=7.0,oldest_wait_s=420.5 1000",
        "host,site=zs-a load1=0.25 1000",
        "host,site=zs\\ a\\,b\\=c load1=1.0 2000",
    ]


def _wait_for(condition: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def test_influx_write_wire_contract() -> None:
    """What influxdb-client sends to /api/v2/write, captured by a local HTTP server."""
    with capture_server() as server:
        sink = InfluxTelemetrySink(
            server.url,
            org="zhongshan",
            bucket="onedoor",
            token="s3cr3t-token",
            batch_size=3,
            flush_interval_ms=200,
        )
        snapshot = SimSite(SITE).telemetry(waiting=5)
        points = points_from_telemetry(SITE, snapshot, 0)
        sink.write(points)
        sink.close()
        assert server.requests, "nothing was written"
        lines: list[str] = []
        for request in server.requests:
            url = urllib.parse.urlsplit(request.path)
            assert url.path == "/api/v2/write"
            assert urllib.parse.parse_qs(url.query) == {
                "org": ["zhongshan"],
                "bucket": ["onedoor"],
                "precision": ["ms"],
            }
            headers = {k.lower(): v for k, v in request.headers.items()}
            assert headers["authorization"] == "Token s3cr3t-token"
            body = request.body
            if headers.get("content-encoding") == "gzip":
                body = gzip.decompress(body)
            lines += body.decode().splitlines()
        assert sorted(lines) == sorted(to_line_protocol(points))
        assert (
            f"queue,site={SITE},service=zonghe waiting=5.0,oldest_wait_s=60.0 {snapshot.ts}"
            in lines
        )


def test_influx_retries_server_errors() -> None:
    with capture_server() as server:
        server.statuses = [503, 503]
        sink = InfluxTelemetrySink(
            server.url,
            org="o",
            bucket="b",
            token="t",
            batch_size=1,
            flush_interval_ms=50,
            retry_interval_ms=50,
        )
        sink.write([Point(SITE, "host.load1", "", 1000, 0.5)])
        _wait_for(lambda: len(server.requests) >= 3)
        sink.close()
        assert {r.body for r in server.requests} == {f"host,site={SITE} load1=0.5 1000".encode()}
        assert sink.failed_batches == 0


# What InfluxDB 2 answers a query with: annotated CSV, one table per aggregate here.
_QUERY_REPLY = b"""#datatype,string,long,dateTime:RFC3339,double,string
#group,false,false,false,false,true
#default,_result,,,,
,result,table,_time,_value,agg
,,0,2025-11-23T07:20:00Z,3.5,mean
,,0,2025-11-23T07:21:00Z,5,mean
,,1,2025-11-23T07:20:00Z,2,min
,,1,2025-11-23T07:21:00Z,5,min
,,2,2025-11-23T07:20:00Z,5,max
,,2,2025-11-23T07:21:00Z,5,max
,,3,2025-11-23T07:20:00Z,2,count
,,3,2025-11-23T07:21:00Z,1,count

"""


def test_influx_history_wire_contract() -> None:
    """The Flux query influxdb-client posts to /api/v2/query, and its CSV answer read back."""
    with capture_server() as server:
        server.csv_reply = _QUERY_REPLY
        sink = InfluxTelemetrySink(server.url, org="zhongshan", bucket="onedoor", token="tok")
        start = 1_763_882_400_000
        points = sink.history(SITE, "queue.waiting", "zonghe", start_ms=start,
                              end_ms=start + 6 * 3_600_000, now_ms=start + 6 * 3_600_000)
        sink.close()
    (request,) = server.requests
    url = urllib.parse.urlsplit(request.path)
    assert url.path == "/api/v2/query"
    assert urllib.parse.parse_qs(url.query) == {"org": ["zhongshan"]}
    assert {k.lower(): v for k, v in request.headers.items()}["authorization"] == "Token tok"
    body = json.loads(request.body)
    assert body["query"] == flux_history("onedoor", SITE, "queue.waiting", "zonghe", start,
                                         start + 6 * 3_600_000, 60)
    assert 'r.service == "zonghe"' in body["query"]
    assert "range(start: 2025-11-23T07:20:00.000Z, stop: 2025-11-23T13:20:00.000Z)" in body["query"]
    assert points == [
        HistoryPoint(start, 3.5, 2.0, 5.0, 2),
        HistoryPoint(start + 60_000, 5.0, 5.0, 5.0, 1),
    ]


def test_flux_strings_are_escaped() -> None:
    query = flux_history("b", 'x" or true or "${evil}', "host.load1", "", 0, 60_000, 60)
    assert 'r.site == "x\\" or true or \\"\\${evil}"' in query
    assert "r.service" not in query
    assert "r.key" not in query


def test_ingest_sends_telemetry_to_influx_after_commit(
    small_registry: sessionmaker[Session],
) -> None:
    from datetime import UTC, datetime

    from central.ingest import IngestProcessor
    from tests.central.sim import received

    with capture_server() as server:
        sink = InfluxTelemetrySink(
            server.url, org="o", bucket="b", token="t", batch_size=100, flush_interval_ms=100
        )
        processor = IngestProcessor(small_registry, CentralConfig(), sink)
        snapshot = SimSite(SITE).telemetry(waiting=9)
        processor.process(received(snapshot), datetime.now(UTC))
        sink.close()
        body = b"\n".join(r.body for r in server.requests).decode()
    assert f"queue,site={SITE},service=zonghe waiting=9.0,oldest_wait_s=60.0 {snapshot.ts}" in body
    with small_registry() as session:  # nothing went to the embedded tables
        assert session.scalar(select(func.count()).select_from(TelemetryPoint)) == 0


def test_public_names_are_pinned() -> None:
    import central.alarms
    import central.ingest
    import central.service
    import central.telemetry

    assert central.service.__all__ == ["BulkSent", "CentralService", "command_args", "utc_now"]
    assert "AlarmBook" in central.alarms.__all__
    assert {"IngestProcessor", "MqttIngest", "Received"} <= set(central.ingest.__all__)
    for module in (central.alarms, central.ingest, central.service, central.telemetry):
        assert all(hasattr(module, name) for name in module.__all__)
