"""Telemetry sink: where periodic snapshots from the sites go for charts.

One interface, two implementations chosen by config (:func:`make_sink`):

* :class:`InfluxTelemetrySink`: InfluxDB 2 through influxdb-client's batching
  write API (retries with exponential backoff, line protocol, ms precision);
* :class:`EmbeddedTelemetrySink`: the default, in the central database. Raw
  points are kept ``telemetry_raw_days`` (1), 1-minute rollups
  ``telemetry_minute_days`` (30), hourly rollups forever. Rollups are updated
  on write (count, sum, min, max per bucket), so late points still land in the
  right bucket and charts over any range read few rows.

A telemetry message becomes :class:`Point` records (:func:`points_from_telemetry`):
``metric`` is ``measurement.field`` (``queue.waiting``), ``key`` the series inside
it (the service code for ``queue.*``, empty for site-wide metrics).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Protocol, cast

import msgspec
import structlog
from sqlalchemy import CursorResult, Result, Table, delete, func, insert, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from central.config import CentralConfig
from central.models import TelemetryPoint, TelemetryRollup
from firmware_protocols.mqtt_messages import Telemetry

log = structlog.get_logger(__name__)

HOUR_MS: Final = 3_600_000
DAY_MS: Final = 86_400_000
RESOLUTIONS_S: Final = (60, 3600)

# Tag name of the series key per measurement (Influx); the others are site-wide.
SERIES_TAG: Final = {"queue": "service"}

SITE_METRICS: Final = frozenset({
    "host.cpu_temp_c", "host.load1", "host.mem_used_pct", "host.disk_used_pct",
    "outbox.depth", "clock.synced", "windows.open", "windows.serving", "devices.faulty",
})  # fmt: skip
"""Metrics of the whole site (``key`` empty), as :func:`points_from_telemetry` makes them."""
QUEUE_METRICS: Final = frozenset({"queue.waiting", "queue.oldest_wait_s"})
"""Metrics per service (``key`` = the service code)."""


@dataclass(frozen=True, slots=True)
class Point:
    site_id: str
    metric: str
    key: str
    ts_ms: int
    value: float


def points_from_telemetry(site_id: str, telemetry: Telemetry, received_ms: int) -> list[Point]:
    """Flatten one snapshot. An unsynchronised edge clock is not trusted: receive time is used."""
    ts = telemetry.ts if telemetry.clock_synced else received_ms
    host = telemetry.host
    site_wide: list[tuple[str, float | None]] = [
        ("host.cpu_temp_c", host.cpu_temp_c),
        ("host.load1", host.load1),
        ("host.mem_used_pct", host.mem_used_pct),
        ("host.disk_used_pct", host.disk_used_pct),
        ("outbox.depth", telemetry.outbox.depth),
        ("clock.synced", 1.0 if telemetry.clock_synced else 0.0),
        ("windows.open", sum(w.state in ("open", "serving") for w in telemetry.windows)),
        ("windows.serving", sum(w.state == "serving" for w in telemetry.windows)),
        ("devices.faulty", sum(d.status != "ok" for d in telemetry.devices)),
    ]
    points = [Point(site_id, m, "", ts, float(v)) for m, v in site_wide if v is not None]
    for queue in telemetry.queues:
        points.append(Point(site_id, "queue.waiting", queue.service, ts, float(queue.waiting)))
        points.append(
            Point(site_id, "queue.oldest_wait_s", queue.service, ts, float(queue.oldest_wait_s))
        )
    return points


class TelemetrySink(Protocol):
    """Where telemetry points go, and where the dashboards read them back from.
    ``write`` may buffer; ``close`` flushes."""

    def write(self, points: Sequence[Point]) -> None: ...

    def history(self, site_id: str, metric: str, key: str = "", *, start_ms: int,
                end_ms: int, now_ms: int) -> list[HistoryPoint]: ...  # fmt: skip

    def resolution_for(self, start_ms: int, now_ms: int) -> int:
        """Seconds per point ``history`` gives from ``start_ms`` to now (0: raw points)."""
        ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


# --------------------------------------------------------------------------- InfluxDB


def _escape_tag(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def to_line_protocol(points: Sequence[Point]) -> list[str]:
    """Group points into one line per (measurement, site, series, time), fields as floats."""
    lines: dict[tuple[str, str, str, int], list[str]] = defaultdict(list)
    for p in points:
        measurement, _, field = p.metric.partition(".")
        lines[(measurement, p.site_id, p.key, p.ts_ms)].append(f"{field}={float(p.value)!r}")
    out = []
    for (measurement, site_id, key, ts_ms), fields in lines.items():
        tags = f",site={_escape_tag(site_id)}"
        if key:
            tags += f",{SERIES_TAG.get(measurement, 'key')}={_escape_tag(key)}"
        out.append(f"{measurement}{tags} {','.join(fields)} {ts_ms}")
    return out


def _flux_string(value: str) -> str:
    """A Flux string literal (InfluxDB OSS has no query parameters)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("${", "\\${")
    return f'"{escaped}"'


def _flux_time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def flux_history(bucket: str, site_id: str, metric: str, key: str, start_ms: int,
                 end_ms: int, every_s: int) -> str:  # fmt: skip
    """The Flux query behind :meth:`InfluxTelemetrySink.history`: one series, four
    aggregates per window (told apart by the ``agg`` column), windows by their start."""
    measurement, _, field_name = metric.partition(".")
    match = (f"r._measurement == {_flux_string(measurement)} and "
             f"r._field == {_flux_string(field_name)} and r.site == {_flux_string(site_id)}")
    if key:
        match += f" and r.{SERIES_TAG.get(measurement, 'key')} == {_flux_string(key)}"
    window = f"every: {every_s}s, createEmpty: false, timeSrc: \"_start\""
    aggregates = ", ".join(
        f'data |> aggregateWindow({window}, fn: {fn}){" |> toFloat()" if fn == "count" else ""}'
        f' |> set(key: "agg", value: "{fn}")'
        for fn in ("mean", "min", "max", "count"))
    return (f"data = from(bucket: {_flux_string(bucket)})\n"
            f"  |> range(start: {_flux_time(start_ms)}, stop: {_flux_time(end_ms)})\n"
            f"  |> filter(fn: (r) => {match})\n"
            f"union(tables: [{aggregates}])")


_PRECISION_MS: Final = cast(Any, "ms")  # influxdb_client's WritePrecision.MS (typed as str)


class InfluxTelemetrySink:
    """InfluxDB 2 via influxdb-client's batching write API (background thread, retries)."""

    def __init__(
        self,
        url: str,
        *,
        org: str,
        bucket: str,
        token: str,
        batch_size: int = 1000,
        flush_interval_ms: int = 1000,
        max_retries: int = 5,
        retry_interval_ms: int = 1000,
    ) -> None:
        from influxdb_client.client.influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import WriteOptions

        self.org, self.bucket = org, bucket
        self.failed_batches = 0
        self._client = InfluxDBClient(url=url, token=token, org=org)
        options = WriteOptions(
            batch_size=batch_size,
            flush_interval=flush_interval_ms,
            jitter_interval=0,
            retry_interval=retry_interval_ms,
            max_retries=max_retries,
            max_retry_delay=30_000,
            exponential_base=2,
        )
        self._write_api = self._client.write_api(
            write_options=options, error_callback=self._on_error
        )

    def _on_error(self, conf: Any, data: Any, exc: BaseException) -> None:
        self.failed_batches += 1
        log.error("telemetry.influx_write_failed", error=str(exc), bucket=self.bucket)

    def write(self, points: Sequence[Point]) -> None:
        if points:
            self._write_api.write(
                bucket=self.bucket,
                org=self.org,
                record=to_line_protocol(points),
                write_precision=_PRECISION_MS,
            )

    def history(self, site_id: str, metric: str, key: str = "", *, start_ms: int,
                end_ms: int, now_ms: int) -> list[HistoryPoint]:  # fmt: skip
        """Mean, min, max and count per minute (spans up to 12 h) or hour, by Flux."""
        every_s = self.resolution_for(start_ms, now_ms)
        query = flux_history(self.bucket, site_id, metric, key, start_ms, end_ms, every_s)
        tables = self._client.query_api().query(query, org=self.org)
        buckets: dict[int, dict[str, float]] = defaultdict(dict)
        for table in tables:
            for record in table.records:
                ts_ms = int(record.values["_time"].timestamp() * 1000)
                buckets[ts_ms][str(record.values["agg"])] = float(record.values["_value"])
        return [
            HistoryPoint(ts, b["mean"], b.get("min", b["mean"]), b.get("max", b["mean"]),
                         int(b.get("count", 1)))
            for ts, b in sorted(buckets.items()) if "mean" in b
        ]  # fmt: skip

    def resolution_for(self, start_ms: int, now_ms: int) -> int:
        """Per minute for spans up to 12 h, else per hour (Influx keeps what its bucket keeps)."""
        return 60 if now_ms - start_ms <= 12 * HOUR_MS else 3600

    def flush(self) -> None:
        self._write_api.flush()  # type: ignore[no-untyped-call]

    def close(self) -> None:
        self._write_api.close()  # type: ignore[no-untyped-call]  # flushes the buffer
        self._client.close()  # type: ignore[no-untyped-call]


# --------------------------------------------------------------------------- embedded


# Core statements on the ORM tables: the ORM's bulk path costs ~3x per row.
_POINTS: Final = cast(Table, TelemetryPoint.__table__)
_ROLLUPS: Final = cast(Table, TelemetryRollup.__table__)
_JSON: Final = msgspec.json.Encoder()

# PostgreSQL: the rows of a batch travel as one JSON array into a statement of constant
# text. An executemany sends one statement per row (about 30 per snapshot), which was
# most of the central's CPU per telemetry message at province scale.
_PG_INSERT_POINTS: Final = text(
    "INSERT INTO telemetry_points (site_id, metric, key, ts_ms, value) "
    "SELECT site_id, metric, key, ts_ms, value FROM json_to_recordset(CAST(:rows AS json)) "
    "AS r(site_id varchar, metric varchar, key varchar, ts_ms bigint, value double precision)"
)
_PG_UPSERT_ROLLUPS: Final = text(
    "INSERT INTO telemetry_rollups "
    "(resolution_s, site_id, metric, key, bucket_ms, count, total, minimum, maximum) "
    "SELECT resolution_s, site_id, metric, key, bucket_ms, count, total, minimum, maximum "
    "FROM json_to_recordset(CAST(:rows AS json)) AS r(resolution_s integer, site_id varchar, "
    "metric varchar, key varchar, bucket_ms bigint, count bigint, total double precision, "
    "minimum double precision, maximum double precision) "
    "ON CONFLICT (resolution_s, site_id, metric, key, bucket_ms) DO UPDATE SET "
    "count = telemetry_rollups.count + excluded.count, "
    "total = telemetry_rollups.total + excluded.total, "
    "minimum = least(telemetry_rollups.minimum, excluded.minimum), "
    "maximum = greatest(telemetry_rollups.maximum, excluded.maximum)"
)


def _rowcount(result: Result[Any]) -> int:
    return int(cast(CursorResult[Any], result).rowcount)


@dataclass(frozen=True, slots=True)
class HistoryPoint:
    """One chart point: a raw value (count 1) or a bucket's mean with its min and max."""

    ts_ms: int
    mean: float
    minimum: float
    maximum: float
    count: int


class EmbeddedTelemetrySink:
    """Telemetry history in the central database, downsampled so charts work without Influx."""

    def __init__(
        self, sessions: sessionmaker[Session], *, raw_days: int = 1, minute_days: int = 30
    ) -> None:
        self._sessions = sessions
        self.raw_keep_ms = raw_days * DAY_MS
        self.minute_keep_ms = minute_days * DAY_MS

    def write(self, points: Sequence[Point]) -> None:
        if not points:
            return
        with self._sessions.begin() as session:
            self.write_in(session, points)

    def write_in(self, session: Session, points: Sequence[Point]) -> None:
        """Write inside the caller's transaction (ingest commits points with its batch)."""
        raw = [  # not dataclasses.asdict: it deep-copies, 5× slower
            {"site_id": p.site_id, "metric": p.metric, "key": p.key, "ts_ms": p.ts_ms,
             "value": p.value} for p in points]  # fmt: skip
        postgres = session.get_bind().dialect.name == "postgresql"
        if postgres:  # one statement per table (see _PG_INSERT_POINTS), not one per row
            session.execute(_PG_INSERT_POINTS, {"rows": _JSON.encode(raw).decode()})
        else:
            session.execute(insert(_POINTS), raw)
        buckets: dict[tuple[int, str, str, str, int], list[float]] = {}
        for p in points:
            for resolution in RESOLUTIONS_S:
                size = resolution * 1000
                k = (resolution, p.site_id, p.metric, p.key, p.ts_ms - p.ts_ms % size)
                agg = buckets.get(k)
                if agg is None:
                    buckets[k] = [1, p.value, p.value, p.value]
                else:
                    agg[0] += 1
                    agg[1] += p.value
                    agg[2] = min(agg[2], p.value)
                    agg[3] = max(agg[3], p.value)
        rows = [
            {
                "resolution_s": r, "site_id": s, "metric": m, "key": k, "bucket_ms": b,
                "count": int(a[0]), "total": a[1], "minimum": a[2], "maximum": a[3],
            }
            for (r, s, m, k, b), a in buckets.items()
        ]  # fmt: skip
        if postgres:
            session.execute(_PG_UPSERT_ROLLUPS, {"rows": _JSON.encode(rows).decode()})
        else:
            session.execute(self._upsert(session), rows)

    @staticmethod
    def _upsert(session: Session) -> Any:
        dialect = session.get_bind().dialect.name
        if dialect == "postgresql":
            pg = postgresql.insert(_ROLLUPS)
            t, x = _ROLLUPS.c, pg.excluded
            return pg.on_conflict_do_update(
                index_elements=["resolution_s", "site_id", "metric", "key", "bucket_ms"],
                set_={
                    "count": t.count + x.count,
                    "total": t.total + x.total,
                    "minimum": func.least(t.minimum, x.minimum),
                    "maximum": func.greatest(t.maximum, x.maximum),
                },
            )
        if dialect == "sqlite":
            lite = sqlite.insert(_ROLLUPS)
            t, x = _ROLLUPS.c, lite.excluded
            return lite.on_conflict_do_update(
                index_elements=["resolution_s", "site_id", "metric", "key", "bucket_ms"],
                set_={
                    "count": t.count + x.count,
                    "total": t.total + x.total,
                    # SQLite's two-argument min()/max() are scalar functions.
                    "minimum": func.min(t.minimum, x.minimum),
                    "maximum": func.max(t.maximum, x.maximum),
                },
            )
        raise NotImplementedError(f"embedded telemetry needs SQLite or PostgreSQL, not {dialect}")

    def flush(self) -> None:
        """Writes are committed immediately; nothing is buffered."""

    def close(self) -> None:
        """Nothing to release: the engine belongs to the caller."""

    def prune(self, now_ms: int) -> tuple[int, int]:
        """Drop raw points past their retention and minute rollups past theirs."""
        with self._sessions.begin() as session:
            raw = _rowcount(
                session.execute(
                    delete(TelemetryPoint).where(TelemetryPoint.ts_ms < now_ms - self.raw_keep_ms)
                )
            )
            minute = _rowcount(
                session.execute(
                    delete(TelemetryRollup).where(
                        TelemetryRollup.resolution_s == 60,
                        TelemetryRollup.bucket_ms < now_ms - self.minute_keep_ms,
                    )
                )
            )
        return raw, minute

    def resolution_for(self, start_ms: int, now_ms: int) -> int:
        """0 (raw) if raw points still cover ``start_ms``, else 60 if minutes do, else 3600."""
        if start_ms >= now_ms - self.raw_keep_ms:
            return 0
        if start_ms >= now_ms - self.minute_keep_ms:
            return 60
        return 3600

    def history(
        self,
        site_id: str,
        metric: str,
        key: str = "",
        *,
        start_ms: int,
        end_ms: int,
        now_ms: int,
        resolution_s: int | None = None,
    ) -> list[HistoryPoint]:
        """Chart points of one series in ``[start_ms, end_ms)``, finest resolution still kept."""
        resolution = self.resolution_for(start_ms, now_ms) if resolution_s is None else resolution_s
        with self._sessions() as session:
            if resolution == 0:
                raw = session.execute(
                    select(TelemetryPoint.ts_ms, TelemetryPoint.value)
                    .where(
                        TelemetryPoint.site_id == site_id,
                        TelemetryPoint.metric == metric,
                        TelemetryPoint.key == key,
                        TelemetryPoint.ts_ms >= start_ms,
                        TelemetryPoint.ts_ms < end_ms,
                    )
                    .order_by(TelemetryPoint.ts_ms, TelemetryPoint.id)
                )
                return [HistoryPoint(ts, v, v, v, 1) for ts, v in raw]
            r = TelemetryRollup
            rows = session.execute(
                select(r.bucket_ms, r.total, r.minimum, r.maximum, r.count)
                .where(
                    r.resolution_s == resolution,
                    r.site_id == site_id,
                    r.metric == metric,
                    r.key == key,
                    r.bucket_ms >= start_ms - start_ms % (resolution * 1000),
                    r.bucket_ms < end_ms,
                )
                .order_by(r.bucket_ms)
            )
            return [HistoryPoint(b, total / n, lo, hi, n) for b, total, lo, hi, n in rows]


def make_sink(config: CentralConfig, sessions: sessionmaker[Session]) -> TelemetrySink:
    """InfluxDB when ``influx_url`` is set, else the embedded sink."""
    if config.influx_url:
        return InfluxTelemetrySink(
            config.influx_url,
            org=config.influx_org,
            bucket=config.influx_bucket,
            token=config.influx_token,
            batch_size=config.influx_batch_size,
            flush_interval_ms=config.influx_flush_interval_ms,
        )
    return EmbeddedTelemetrySink(
        sessions, raw_days=config.telemetry_raw_days, minute_days=config.telemetry_minute_days
    )


__all__ = [
    "QUEUE_METRICS",
    "SITE_METRICS",
    "EmbeddedTelemetrySink",
    "HistoryPoint",
    "InfluxTelemetrySink",
    "Point",
    "TelemetrySink",
    "flux_history",
    "make_sink",
    "points_from_telemetry",
    "to_line_protocol",
]
