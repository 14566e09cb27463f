"""Against a real InfluxDB 2 (set ONEDOOR_TEST_INFLUX_URL, _ORG, _BUCKET, _TOKEN); else skipped."""

from __future__ import annotations

import os
import time
import uuid

import pytest

from central.telemetry import InfluxTelemetrySink, Point

URL = os.environ.get("ONEDOOR_TEST_INFLUX_URL", "")

pytestmark = [
    pytest.mark.influx,
    pytest.mark.skipif(
        not URL,
        reason="no InfluxDB: set ONEDOOR_TEST_INFLUX_URL (and _ORG, "
        "_BUCKET, _TOKEN) to run against a real server",
    ),
]


def _server() -> tuple[str, str, str, str]:
    """(org, bucket, token, a fresh site id) for one test."""
    return (os.environ.get("ONEDOOR_TEST_INFLUX_ORG", "onedoor"),
            os.environ.get("ONEDOOR_TEST_INFLUX_BUCKET", "onedoor"),
            os.environ.get("ONEDOOR_TEST_INFLUX_TOKEN", ""), f"zs-test-{uuid.uuid4().hex[:8]}")


def test_points_are_queryable_in_influx() -> None:
    from influxdb_client.client.influxdb_client import InfluxDBClient

    org, bucket, token, site = _server()
    now_ms = int(time.time() * 1000)
    sink = InfluxTelemetrySink(URL, org=org, bucket=bucket, token=token, batch_size=10)
    sink.write([Point(site, "queue.waiting", "zonghe", now_ms, 7.0)])
    sink.close()
    with InfluxDBClient(url=URL, token=token, org=org) as client:
        query = (
            f'from(bucket: "{bucket}") |> range(start: -5m) '
            f'|> filter(fn: (r) => r._measurement == "queue" and r.site == "{site}")'
        )
        tables = client.query_api().query(query)
        values = [
            (r.get_field(), r.get_value(), r.values["service"]) for t in tables for r in t.records
        ]
    assert values == [("waiting", 7.0, "zonghe")]


def test_history_reads_back_what_was_written() -> None:
    org, bucket, token, site = _server()
    now_ms = int(time.time() * 1000)
    minute = now_ms - now_ms % 60_000 - 120_000
    sink = InfluxTelemetrySink(URL, org=org, bucket=bucket, token=token, batch_size=10)
    sink.write([Point(site, "queue.waiting", "zonghe", minute + 1_000, 2.0),
                Point(site, "queue.waiting", "zonghe", minute + 31_000, 5.0),
                Point(site, "queue.waiting", "huji", minute + 1_000, 9.0)])
    sink.flush()
    time.sleep(1.0)
    points = sink.history(site, "queue.waiting", "zonghe", start_ms=minute - 60_000,
                          end_ms=now_ms, now_ms=now_ms)
    sink.close()
    assert [(p.ts_ms, p.mean, p.minimum, p.maximum, p.count) for p in points] == [
        (minute, 3.5, 2.0, 5.0, 2)]
