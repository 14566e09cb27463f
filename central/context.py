"""What every request handler reaches: one :class:`Central` per app, on ``app.state``.

::

    central = central_of(request)
    central.read_as(principal).site_detail(site_id, central.now())   # scoped to the caller
    service_of(central).send_command(...)               # ingest, commands (503 if read-only)

Built by :func:`central.app.create_app`; tests build one directly for a
read-only app over a database.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from fastapi import Request
from sqlalchemy.orm import Session, sessionmaker

from central.accounts import SessionStore, UserStore
from central.audit import AuditLog
from central.auth import Principal, SessionSigner, TokenStore
from central.bookings import Bookings
from central.config import CentralConfig
from central.errors import Unavailable
from central.limits import LoginThrottle, ProgressLimits, StreamQuota
from central.progress import ProgressHub
from central.pushes import Pushes
from central.queries import ReadModel
from central.registry import Registry
from central.service import CentralService
from central.telemetry import TelemetrySink


@dataclass
class HttpMetrics:
    """In-process counters exported on ``/metrics``."""

    requests: Counter[tuple[str, str, int]] = field(default_factory=Counter)
    started: float = field(default_factory=time.time)


@dataclass
class Central:
    """What the routes and pages need; kept on ``app.state.central``."""

    config: CentralConfig
    sessions: sessionmaker[Session]
    tokens: TokenStore
    signer: SessionSigner
    service: CentralService | None
    """Ingest, alarms and the MQTT client; ``None`` for a read-only app (benchmarks)."""
    metrics: HttpMetrics = field(default_factory=HttpMetrics)
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    telemetry: TelemetrySink | None = None
    """Where telemetry history is read from: InfluxDB or the embedded store (the default)."""
    read: ReadModel = field(init=False)
    """The read model over ``sessions`` and ``telemetry``: every read of both faces."""
    registry: Registry = field(init=False)
    """Registry changes people make (admin routes)."""
    audit: AuditLog = field(init=False)
    """Audit entries of changes committed elsewhere (tokens, alarms, commands)."""
    logins: LoginThrottle = field(init=False)
    streams: StreamQuota = field(init=False)
    """Open live streams (``/metrics`` counts them too)."""
    users: UserStore = field(init=False)
    """Named accounts of people."""
    web_sessions: SessionStore = field(init=False)
    """Dashboard sessions (idle and absolute expiry, logout)."""
    progress: ProgressHub = field(init=False)
    """Every site's latest progress: the service's (fed by MQTT), or an empty one."""
    progress_limits: ProgressLimits = field(init=False)
    pushes: Pushes = field(init=False)
    """Emergency stops and the city calendar people decide (:mod:`central.pushes`)."""
    bookings: Bookings = field(init=False)
    """Bookings (预约) the booking platforms push (:mod:`central.bookings`)."""

    def __post_init__(self) -> None:
        self.read = ReadModel(self.sessions, self.telemetry)
        self.users = UserStore(self.sessions)
        self.web_sessions = SessionStore(self.sessions, self.tokens,
                                         idle_s=self.config.session_idle_s,
                                         max_s=self.config.session_max_s)  # fmt: skip
        self.registry = Registry(self.sessions)
        self.audit = AuditLog(self.sessions)
        config = self.config
        self.logins = LoginThrottle(config.login_attempts_per_min, config.login_attempts_burst)
        self.streams = StreamQuota(config.sse_streams_per_session, config.sse_streams_max)
        self.progress = (self.service.progress if self.service is not None
                         else ProgressHub(self.now, stale_s=config.progress_stale_s))
        self.pushes = Pushes(self.sessions)
        self.bookings = Bookings(self.sessions, config)
        self.progress_limits = ProgressLimits(
            config.progress_requests_per_min, config.progress_requests_burst,
            config.progress_misses_per_min, config.progress_misses_burst,
            config.progress_streams_per_ticket, config.progress_streams_max)

    def read_as(self, principal: Principal) -> ReadModel:
        """The read model as ``principal`` may see it: its towns' sites only, unless
        city-wide. Every route and page reads through this."""
        return self.read.scoped(principal.towns)


def central_of(request: Request) -> Central:
    central: Central = request.app.state.central
    return central


def service_of(central: Central) -> CentralService:
    """The ingest service; :class:`Unavailable` (503) in a read-only process."""
    if central.service is None:
        raise Unavailable("this process runs without ingest (read-only)")
    return central.service


__all__ = ["Central", "HttpMetrics", "central_of", "service_of"]
