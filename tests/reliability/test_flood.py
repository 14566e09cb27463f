"""Flood from one site at the central ingest: the per-site rate limit cuts it off.

The ingest keeps token buckets per site (``central.ingest``), so that one broken or
hostile edge cannot fill the database and starve the others: the flood is refused
and counted as ``rate_limited``, and the other site's traffic in the same batch is
committed in full.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, select

from central.config import CentralConfig
from central.db import make_engine, session_factory
from central.ingest import IngestProcessor, reject_counts
from central.models import TelemetryPoint
from central.telemetry import EmbeddedTelemetrySink
from tests.central.sim import SimSite, called, received
from tests.reliability.harness import prepare_central_db

FLOOD = 3000  # telemetry messages within one second: a village sends one a minute


def test_flooding_site_is_rate_limited_and_others_unaffected(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'central.db'}"
    prepare_central_db(url, tmp_path, ["zs-flood", "zs-quiet"])
    engine = make_engine(url)
    sessions = session_factory(engine)
    processor = IngestProcessor(sessions, CentralConfig(database_url=url),
                                EmbeddedTelemetrySink(sessions))
    flooder, quiet = SimSite("zs-flood"), SimSite("zs-quiet")
    now = datetime.now(UTC)
    try:
        batch = received(*(flooder.telemetry() for _ in range(FLOOD)),
                         quiet.event(called("A001")), quiet.telemetry(), at=now)
        outcome = processor.process(batch, now)
        assert outcome.acks.get("zs-quiet") == 1, "the quiet site was not served"
        with sessions() as session:
            rejects = reject_counts(session)
            stored = session.scalar(select(func.count()).select_from(TelemetryPoint)
                                    .where(TelemetryPoint.site_id == "zs-flood")) or 0
        rate_rejects = sum(n for (site, reason), n in rejects.items()
                           if site == "zs-flood" and "rate" in reason)
        assert rate_rejects > 0, f"no rate-limit reject counted ({dict(rejects)})"
        assert stored < FLOOD, "the whole flood was stored"
    finally:
        engine.dispose()
