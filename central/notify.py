"""Alarm notices to the managers' 企业微信 and 钉钉 groups: routes, quiet hours, daily summaries.

::

    routes = load_routes(Path("/etc/onedoor/notify.toml"), os.environ)
    notifier = Notifier(routes, sessions, clock=utc_now, base_url="https://onedoor.example.cn")
    notifier.submit_alarm(notification)       # an alarm raised/cleared (the service does this)
    notifier.submit(Notice(...))              # anything else a manager should hear about
    await notifier.run()                      # a task: one sender per route, the summary timer

**The interface for other senders** is :class:`Notice`: site id, Chinese site
name, town, severity, title, action, since when, a link path. Whoever has a
matter for a town's manager (the 差评 loop, say) builds one and calls
:meth:`Notifier.submit`; routes, quiet hours, rate limits and retries apply.

**Routes** (a TOML file, ``notify_routes_file``; see ``docs/NOTIFY.md``): each
names one robot (``kind`` ``wecom`` or ``dingtalk``, its URL, DingTalk's signing
secret), the ``towns`` whose notices it takes (none: every town), the
``severities`` and ``actions`` it takes, ``quiet_hours`` and ``daily_summary``.
A notice goes to every route that takes it.

**Quiet hours** (the decision): a notice that a route takes during its quiet
hours is held in the database (``notify_held``) unless its severity is in
``quiet_pass`` (default: critical only, which is sent at once). When the quiet
hours end, the route gets one message listing what was held, each alarm marked
"still open" or "cleared since", in the order it happened. Held notices survive
a restart; with several replicas the one that takes the rows (``DELETE ...
RETURNING``) sends them.

**Daily summary**: at ``daily_summary`` (business time) a town route gets one
message per town it covers (sites, offline now, alarms raised and cleared over
the last 24 h, the longest-open alarms); a city-wide route gets one message with
a line per town. ``notify_claims`` makes each summary go out once across
replicas and restarts.

**Rate limits and failures**: each robot URL takes at most
:data:`central.robots.RATE_PER_MINUTE` messages a minute from this process;
notices that arrive while the sender waits for a slot go out merged into one
message, so a burst (a power cut takes a town's sites offline) costs one or two
messages, never a queue of minutes. An answer with errcode not 0 (or HTTP not
2xx, or no answer) is a failure: retried with backoff; a rate-limit errcode
(WeCom 45009, DingTalk 130101) waits a whole minute first. After the last
attempt the message is counted failed and logged. Logs name a route and its
:func:`central.alarms.redact_url`, never the URL or the secret.
"""

from __future__ import annotations

import asyncio
import http.client
import math
import os
import re
import time
import tomllib
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any, Final

import structlog
from sqlalchemy import delete, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from central.alarms import TITLES, Notification, redact_url, scrub
from central.errors import ConfigError
from central.models import Alarm, AlarmType, NotifyClaim, NotifyHeld, Severity, Site
from central.notify_messages import (
    OpenAlarm,
    TownFigures,
    TownSummary,
    digest_body,
    notice_body,
    summary_body,
)
from central.robots import RATE_PER_MINUTE, RobotAnswer, RobotKind, dingtalk_signed_url
from central.robots import read_answer as read_robot_answer
from central.stats import BUSINESS_TZ

log = structlog.get_logger(__name__)

UtcNow = Callable[[], datetime]

SEVERITIES: Final = frozenset(s.value for s in Severity)
ACTIONS: Final = frozenset({"raised", "cleared", "acknowledged", "severity_changed"})
DEFAULT_SEVERITIES: Final = frozenset({"warning", "major", "critical"})
DEFAULT_ACTIONS: Final = frozenset({"raised", "cleared"})
DEFAULT_QUIET_PASS: Final = frozenset({"critical"})
MAX_MERGED: Final = 30
"""Notices merged into one message at most (the size limit may cut it shorter)."""
SUMMARY_OLDEST: Final = 5
"""Longest-open alarms a town's summary lists."""
SITE_NAMES_TTL_S: Final = 60.0


# --------------------------------------------------------------------------- the notice


@dataclass(frozen=True, slots=True)
class Notice:
    """One thing a manager should hear about, at one site."""

    site_id: str
    site_name: str
    """The site's Chinese name, as the registry has it."""
    town: str
    """Routes choose by it: a town's group gets its town's notices."""
    severity: str
    """``info``, ``warning``, ``major`` or ``critical``; routes choose by it."""
    title: str
    """What it is, short and Chinese: 站点离线, 差评待回访."""
    action: str
    """``raised`` (a new matter), ``cleared`` (it ended), ``acknowledged``, ``severity_changed``."""
    since: datetime
    """When the matter began."""
    at: datetime
    """When this action happened."""
    link: str
    """A path of the dashboards (``/sites/zs-sanxiang-01``); ``dashboard_url`` goes before it."""
    message: str = ""
    actor: str | None = None
    alarm_id: int | None = None
    """The alarm, for a notice about one: held ones say whether it is still open."""

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["since"], data["at"] = self.since.isoformat(), self.at.isoformat()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Notice:
        values = dict(data)
        values["since"] = datetime.fromisoformat(values["since"])
        values["at"] = datetime.fromisoformat(values["at"])
        return cls(**values)


def alarm_title(type_: str) -> str:
    """The Chinese half of an alarm type's title."""
    try:
        return TITLES[AlarmType(type_)].partition(" / ")[0]
    except ValueError:
        return type_


def notice_of(notification: Notification, site_name: str, town: str) -> Notice:
    at = datetime.fromisoformat(notification.at)
    since = datetime.fromisoformat(notification.raised_at) if notification.raised_at else at
    title = alarm_title(notification.type)
    generic = notification.message in TITLES.values()  # the title again: nothing to add
    return Notice(site_id=notification.site_id, site_name=site_name, town=town,
                  severity=notification.severity, title=title, action=notification.action,
                  since=since, at=at, link=f"/sites/{notification.site_id}",
                  message="" if generic else notification.message,
                  actor=notification.actor, alarm_id=notification.alarm_id)  # fmt: skip


# --------------------------------------------------------------------------- routes


@dataclass(frozen=True, slots=True)
class QuietHours:
    """A daily span of business time, ``start`` inclusive, ``end`` exclusive; may wrap midnight."""

    start: dtime
    end: dtime

    def covers(self, moment: datetime) -> bool:
        clock = moment.astimezone(BUSINESS_TZ).time()
        if self.start <= self.end:
            return self.start <= clock < self.end
        return clock >= self.start or clock < self.end

    def label(self) -> str:
        return f"{self.start:%H:%M}–{self.end:%H:%M}"


@dataclass(frozen=True, slots=True)
class Route:
    """One robot and which notices it takes. ``url`` and ``secret`` are secrets: never shown."""

    name: str
    kind: RobotKind
    url: str = field(repr=False)
    secret: str = field(default="", repr=False)
    """DingTalk's signing secret (``SEC...``); empty: the robot is not in signed mode."""
    towns: frozenset[str] | None = None
    """``None``: every town (a city-wide route)."""
    severities: frozenset[str] = DEFAULT_SEVERITIES
    actions: frozenset[str] = DEFAULT_ACTIONS
    quiet_hours: QuietHours | None = None
    quiet_pass: frozenset[str] = DEFAULT_QUIET_PASS
    daily_summary: dtime | None = None

    @property
    def target(self) -> str:
        return redact_url(self.url)

    def takes(self, notice: Notice) -> bool:
        in_town = self.towns is None or notice.town in self.towns
        return in_town and notice.severity in self.severities and notice.action in self.actions

    def holds(self, notice: Notice, now: datetime) -> bool:
        """Whether ``notice`` waits for the end of the quiet hours."""
        return (self.quiet_hours is not None and self.quiet_hours.covers(now)
                and notice.severity not in self.quiet_pass)  # fmt: skip


_NAME_RE: Final = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
_ROUTE_KEYS: Final = frozenset({"name", "kind", "url", "url_env", "secret", "secret_env", "towns",
                                "severities", "actions", "quiet_hours", "quiet_pass",
                                "daily_summary"})  # fmt: skip


def _clock(text: object, where: str) -> dtime:
    if not isinstance(text, str) or not re.fullmatch(r"\d{2}:\d{2}", text):
        raise ConfigError(f"{where}: give a time as HH:MM")
    try:
        return dtime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"{where}: {text!r} is not a time of day") from None


def _names(value: object, where: str, allowed: frozenset[str] | None = None) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where}: give a list of names")
    names = frozenset(value)
    if allowed is not None and (unknown := names - allowed):
        raise ConfigError(f"{where}: unknown {sorted(unknown)}; known: {sorted(allowed)}")
    return names


def _secret(table: dict[str, Any], key: str, env: Mapping[str, str], where: str) -> str:
    """A secret given inline (``url``) or by the name of an environment variable (``url_env``)."""
    if key in table and f"{key}_env" in table:
        raise ConfigError(f"{where}: give {key} or {key}_env, not both")
    if f"{key}_env" in table:
        variable = table[f"{key}_env"]
        if not isinstance(variable, str) or variable not in env:
            raise ConfigError(f"{where}: {key}_env names {variable!r}, which is not set")
        return env[variable]
    value = table.get(key, "")
    if not isinstance(value, str):
        raise ConfigError(f"{where}: {key} must be text")
    return value


def route_of(table: dict[str, Any], env: Mapping[str, str], where: str) -> Route:
    """One ``[[route]]`` table; :class:`ConfigError` naming the route and key, never a secret."""
    if unknown := set(table) - _ROUTE_KEYS:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}")
    name = table.get("name")
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ConfigError(f"{where}: name must be 1-64 of a-z 0-9 _ . -")
    where = f"{where} ({name})"
    try:
        kind = RobotKind(str(table.get("kind")))
    except ValueError:
        raise ConfigError(f"{where}: kind must be wecom or dingtalk") from None
    url = _secret(table, "url", env, where)
    if not url.startswith(("https://", "http://")):
        raise ConfigError(f"{where}: url is not an http(s) URL")  # not echoed: it is a secret
    secret = _secret(table, "secret", env, where)
    if secret and kind is not RobotKind.DINGTALK:
        raise ConfigError(f"{where}: a signing secret is DingTalk's (加签); WeCom has none")
    towns = _names(table["towns"], f"{where}: towns") if "towns" in table else None
    quiet = None
    if "quiet_hours" in table:
        span = table["quiet_hours"]
        start, dash, end = span.partition("-") if isinstance(span, str) else ("", "", "")
        if not dash:
            raise ConfigError(f"{where}: quiet_hours is HH:MM-HH:MM (business time)")
        quiet = QuietHours(_clock(start.strip(), f"{where}: quiet_hours"),
                           _clock(end.strip(), f"{where}: quiet_hours"))  # fmt: skip
        if quiet.start == quiet.end:
            raise ConfigError(f"{where}: quiet_hours starts and ends at the same time")
    summary = (_clock(table["daily_summary"], f"{where}: daily_summary")
               if "daily_summary" in table else None)  # fmt: skip
    return Route(
        name=name, kind=kind, url=url, secret=secret, towns=towns,
        severities=_names(table.get("severities", sorted(DEFAULT_SEVERITIES)),
                          f"{where}: severities", SEVERITIES),
        actions=_names(table.get("actions", sorted(DEFAULT_ACTIONS)), f"{where}: actions",
                       ACTIONS),
        quiet_hours=quiet,
        quiet_pass=_names(table.get("quiet_pass", sorted(DEFAULT_QUIET_PASS)),
                          f"{where}: quiet_pass", SEVERITIES),
        daily_summary=summary,
    )  # fmt: skip


def load_routes(path: Path, env: Mapping[str, str] | None = None) -> list[Route]:
    """The routes of a TOML file: ``[[route]]`` tables (see ``docs/NOTIFY.md``)."""
    try:
        document = tomllib.loads(path.read_text("utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    if unknown := set(document) - {"route"}:
        raise ConfigError(f"{path}: unknown keys {sorted(unknown)}; routes are [[route]] tables")
    tables = document.get("route", [])
    if not isinstance(tables, list):
        raise ConfigError(f"{path}: routes are [[route]] tables")
    environ = os.environ if env is None else env
    routes = [route_of(t, environ, f"{path}: route {i}") for i, t in enumerate(tables, 1)]
    names = [r.name for r in routes]
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: two routes have the same name")
    if any("url" in t or "secret" in t for t in tables) and path.stat().st_mode & 0o077:
        log.warning("notify.routes_file_readable", path=str(path),
                    hint="it holds robot URLs: chmod 600, or give url_env/secret_env")  # fmt: skip
    return routes


# --------------------------------------------------------------------------- sending


class RateWindow:
    """At most ``limit`` sends in any ``period_s``: :meth:`wait_s` says how long until the next."""

    def __init__(self, limit: int = RATE_PER_MINUTE, period_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.limit = limit
        self.period_s = period_s
        self._clock = clock
        self._sent: deque[float] = deque()
        self._blocked_until = 0.0

    def wait_s(self) -> float:
        now = self._clock()
        while self._sent and self._sent[0] <= now - self.period_s:
            self._sent.popleft()
        wait = max(0.0, self._blocked_until - now)
        if len(self._sent) >= self.limit:
            wait = max(wait, self._sent[0] + self.period_s - now)
        return wait

    def take(self) -> None:
        self._sent.append(self._clock())

    def block(self) -> None:
        """The robot said "too many": send nothing for a whole period."""
        self._blocked_until = self._clock() + self.period_s


Post = Callable[[str, bytes, float], tuple[int, bytes]]
"""``(url, body, timeout_s) -> (status, body)``; raises OSError when nothing answered."""


def urllib_post(url: str, body: bytes, timeout_s: float) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": "onedoor-central"}
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, response.read(65536)
    except urllib.error.HTTPError as exc:  # 4xx/5xx still carry an answer
        with exc:
            return exc.code, exc.read(65536)


@dataclass
class RouteStats:
    sent: int = 0
    failed: int = 0
    held: int = 0
    merged: int = 0
    """Notices that went out inside a message with others."""


# --------------------------------------------------------------------------- the notifier


class Notifier:
    """Routes notices to robots; one sender task per route, a timer for summaries."""

    def __init__(
        self,
        routes: Sequence[Route],
        sessions: sessionmaker[Session],
        *,
        clock: UtcNow = lambda: datetime.now(UTC),
        base_url: str = "",
        post: Post = urllib_post,
        attempts: int = 4,
        backoff_s: float = 1.0,
        timeout_s: float = 5.0,
        tick_s: float = 30.0,
        rate: tuple[int, float] = (RATE_PER_MINUTE, 60.0),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.routes = list(routes)
        self._sessions = sessions
        self._clock = clock
        self.base_url = base_url.rstrip("/")
        self._post = post
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self.tick_s = tick_s
        self._monotonic = monotonic
        # One window per robot URL: two routes to one group share its 20 a minute.
        self._windows: dict[str, RateWindow] = {}
        for route in self.routes:
            self._windows.setdefault(route.url, RateWindow(*rate, clock=monotonic))
        self._queues: dict[str, asyncio.Queue[Notice]] = {}
        self._incoming: asyncio.Queue[Notification | Notice] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._busy = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.stats = {route.name: RouteStats() for route in self.routes}
        self._site_names: dict[str, tuple[str, str]] = {}
        self._site_names_at = -math.inf

    def __repr__(self) -> str:
        return f"Notifier({[r.name for r in self.routes]})"

    # ------------------------------------------------------------------ intake

    def _queue(self) -> asyncio.Queue[Notification | Notice]:
        if self._incoming is None:
            self._incoming = asyncio.Queue()
        return self._incoming

    def submit(self, notice: Notice | Notification) -> None:
        """Take a notice (or an alarm's notification); call on the service's loop."""
        if not self.routes:
            return
        self._busy += 1
        self._idle.clear()
        self._queue().put_nowait(notice)

    def submit_alarm(self, notification: Notification) -> None:
        self.submit(notification)

    def submit_threadsafe(self, notice: Notice | Notification) -> None:
        """:meth:`submit` from a worker thread."""
        if self._loop is None:
            raise RuntimeError("the notifier is not running")
        self._loop.call_soon_threadsafe(self.submit, notice)

    def _done(self, count: int = 1) -> None:
        self._busy -= count
        if self._busy <= 0:
            self._busy = 0
            self._idle.set()

    async def wait_idle(self, timeout: float = 60.0) -> None:
        """Until every notice submitted so far was sent, held or failed (tests, shutdown)."""
        async with asyncio.timeout(timeout):
            await self._idle.wait()

    # ------------------------------------------------------------------ the tasks

    async def run(self) -> None:
        """Route and send until cancelled (the service runs this as the ``robots`` task)."""
        self._loop = asyncio.get_running_loop()
        if not self.routes:
            return
        if not self.base_url:
            log.warning("notify.no_dashboard_url", hint="set dashboard_url: messages carry no link")
        async with asyncio.TaskGroup() as tasks:
            for route in self.routes:
                self._queues[route.name] = asyncio.Queue()
                tasks.create_task(self._deliver(route), name=f"robot-{route.name}")
            tasks.create_task(self._intake(), name="robots-intake")
            tasks.create_task(self._timer(), name="robots-timer")

    async def _intake(self) -> None:
        incoming = self._queue()
        while True:
            batch = [await incoming.get()]
            while not incoming.empty():
                batch.append(incoming.get_nowait())
            try:
                notices = await asyncio.to_thread(self._notices_of, batch)
                now = self._clock()
                to_hold: list[tuple[Route, Notice]] = []
                routed = 0
                for notice in notices:
                    for route in self.routes:
                        if not route.takes(notice):
                            continue
                        if route.holds(notice, now):
                            to_hold.append((route, notice))
                        else:
                            routed += 1
                            self._busy += 1
                            self._queues[route.name].put_nowait(notice)
                if to_hold:
                    await asyncio.to_thread(self._hold, to_hold, now)
            except Exception as exc:  # the database away: these notices are lost, logged
                log.error("notify.intake_failed", error=str(exc)[:300], notices=len(batch))
            finally:
                self._done(len(batch))

    def _notices_of(self, batch: list[Notification | Notice]) -> list[Notice]:
        missing = {n.site_id for n in batch if isinstance(n, Notification)}
        if missing - self._site_names.keys() or (
            missing and self._monotonic() - self._site_names_at > SITE_NAMES_TTL_S
        ):
            with self._sessions() as session:
                rows = session.execute(select(Site.id, Site.name, Site.town))
                self._site_names = {site_id: (name, town) for site_id, name, town in rows}
            self._site_names_at = self._monotonic()
        notices = []
        for item in batch:
            if isinstance(item, Notice):
                notices.append(item)
                continue
            name, town = self._site_names.get(item.site_id, (item.site_id, ""))
            notices.append(notice_of(item, name, town))
        return notices

    def _hold(self, held: list[tuple[Route, Notice]], now: datetime) -> None:
        with self._sessions.begin() as session:
            session.execute(insert(NotifyHeld), [
                {"route": route.name, "held_at": now, "notice": notice.to_json()}
                for route, notice in held])  # fmt: skip
        for route, notice in held:
            self.stats[route.name].held += 1
            log.info("notify.held", route=route.name, site=notice.site_id, title=notice.title)

    async def _deliver(self, route: Route) -> None:
        queue = self._queues[route.name]
        while True:
            batch = [await queue.get()]
            try:
                await self._slot(route)
                while not queue.empty() and len(batch) < MAX_MERGED:
                    batch.append(queue.get_nowait())
                if len(batch) == 1:
                    body = notice_body(route.kind, batch[0], base_url=self.base_url)
                else:
                    self.stats[route.name].merged += len(batch)
                    body = digest_body(route.kind, batch, heading="告警通知",
                                       base_url=self.base_url)  # fmt: skip
                await self._send(route, body, what="notice", count=len(batch))
            finally:
                self._done(len(batch))

    async def _slot(self, route: Route) -> None:
        window = self._windows[route.url]
        while (wait := window.wait_s()) > 0:
            await asyncio.sleep(wait)

    async def _send(self, route: Route, body: bytes, *, what: str, count: int = 1) -> bool:
        """POST ``body`` to the route's robot with retries; True once the robot took it."""
        window = self._windows[route.url]
        answer: RobotAnswer | None = None
        for attempt in range(1, self.attempts + 1):
            await self._slot(route)
            window.take()
            answer = await asyncio.to_thread(self._post_once, route, body)
            if answer.ok:
                self.stats[route.name].sent += 1
                log.info("notify.sent", route=route.name, robot=route.target, what=what,
                         notices=count, attempt=attempt)  # fmt: skip
                return True
            log.warning("notify.refused", route=route.name, robot=route.target, what=what,
                        attempt=attempt, answer=answer.describe())  # fmt: skip
            if answer.rate_limited:
                window.block()
            elif attempt < self.attempts:
                await asyncio.sleep(self.backoff_s * 2 ** (attempt - 1))
        self.stats[route.name].failed += 1
        log.error("notify.failed", route=route.name, robot=route.target, what=what,
                  notices=count, answer=answer.describe() if answer else "")  # fmt: skip
        return False

    def _post_once(self, route: Route, body: bytes) -> RobotAnswer:
        url = route.url
        if route.kind is RobotKind.DINGTALK and route.secret:
            # The wall clock, not the service's: DingTalk compares it with its own (± 1 h).
            url = dingtalk_signed_url(url, route.secret, int(time.time() * 1000))
        try:
            status, answer = self._post(url, body, self.timeout_s)
        except (OSError, ValueError, http.client.HTTPException) as exc:
            # The error text may hold the URL (its key, token or sign): scrubbed of all three.
            text = scrub(scrub(f"{type(exc).__name__}: {exc}", url), route.url)
            if route.secret:
                text = text.replace(route.secret, "***")
            return RobotAnswer(False, 0, None, text[:300])
        return read_robot_answer(status, answer)

    # ------------------------------------------------------------------ timed messages

    async def _timer(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception as exc:  # the database away: try again next tick
                log.error("notify.tick_failed", error=str(exc)[:300])
            await asyncio.sleep(self.tick_s)

    async def tick(self) -> None:
        """Send what quiet hours held once they are over, and the daily summaries due."""
        now = self._clock()
        self._busy += 1
        self._idle.clear()
        try:
            for route in self.routes:
                if route.quiet_hours is None or not route.quiet_hours.covers(now):
                    await self._release(route, now)
                if route.daily_summary is not None:
                    await self._summary(route, now)
        finally:
            self._done()

    async def _release(self, route: Route, now: datetime) -> None:
        taken = await asyncio.to_thread(self._take_held, route)
        if not taken:
            return
        notices = [Notice.from_json(data) for _, data in taken]
        active = await asyncio.to_thread(self._still_active, notices)
        span = route.quiet_hours.label() if route.quiet_hours else ""
        body = digest_body(route.kind, notices, heading=f"免打扰时段 {span} 暂缓的通知".strip(),
                           base_url=self.base_url, still_active=active, checked=True)  # fmt: skip
        try:
            sent = await self._send(route, body, what="held", count=len(notices))
        except asyncio.CancelledError:  # stopping: the next start sends them
            self._put_back(route, taken)
            raise
        if not sent:
            await asyncio.to_thread(self._put_back, route, taken)

    def _take_held(self, route: Route) -> list[tuple[datetime, dict[str, Any]]]:
        with self._sessions.begin() as session:
            rows = session.execute(
                delete(NotifyHeld).where(NotifyHeld.route == route.name)
                .returning(NotifyHeld.id, NotifyHeld.held_at, NotifyHeld.notice)
            ).all()  # fmt: skip
        return [(held_at, notice) for _, held_at, notice in sorted(rows)]

    def _put_back(self, route: Route, taken: list[tuple[datetime, dict[str, Any]]]) -> None:
        with self._sessions.begin() as session:
            session.execute(insert(NotifyHeld), [
                {"route": route.name, "held_at": held_at, "notice": notice}
                for held_at, notice in taken])  # fmt: skip

    def _still_active(self, notices: list[Notice]) -> frozenset[int]:
        ids = {n.alarm_id for n in notices if n.alarm_id is not None}
        if not ids:
            return frozenset()
        with self._sessions() as session:
            return frozenset(session.scalars(
                select(Alarm.id).where(Alarm.id.in_(ids), Alarm.cleared_at.is_(None))))  # fmt: skip

    async def _summary(self, route: Route, now: datetime) -> None:
        assert route.daily_summary is not None
        local_now = now.astimezone(BUSINESS_TZ)
        if local_now.time() < route.daily_summary:
            return
        day = local_now.date().isoformat()
        if not await asyncio.to_thread(self._claim, route, "daily", day, now):
            return
        summaries = await asyncio.to_thread(self._summaries, route, now, day)
        sent = True
        for summary in summaries:
            body = summary_body(route.kind, summary, base_url=self.base_url)
            sent = await self._send(route, body, what="daily_summary") and sent
        if not sent:  # a later tick tries again
            await asyncio.to_thread(self._unclaim, route, "daily", day)

    def _claim(self, route: Route, kind: str, period: str, now: datetime) -> bool:
        try:
            with self._sessions.begin() as session:
                session.add(NotifyClaim(route=route.name, kind=kind, period=period,
                                        claimed_at=now))  # fmt: skip
        except IntegrityError:
            return False  # sent already, by this process or another replica
        return True

    def _unclaim(self, route: Route, kind: str, period: str) -> None:
        with self._sessions.begin() as session:
            session.execute(delete(NotifyClaim).where(
                NotifyClaim.route == route.name, NotifyClaim.kind == kind,
                NotifyClaim.period == period))  # fmt: skip

    def _summaries(self, route: Route, now: datetime, day: str) -> list[TownSummary]:
        start = now - timedelta(days=1)
        figures = town_figures(self._sessions, start, now, route.towns)
        if route.towns is None:
            return [TownSummary(day, start, now, figures, city=True)]
        return [TownSummary(day, start, now, [f], city=False) for f in figures]


def town_figures(sessions: sessionmaker[Session], start: datetime, end: datetime,
                 towns: frozenset[str] | None) -> list[TownFigures]:  # fmt: skip
    """Per town (all, or ``towns``): sites, offline now, alarms raised and cleared in
    ``[start, end)``, active now and the longest-open ones. Sites in service only."""
    in_service = Site.retired_at.is_(None)
    with sessions() as session:
        site_rows = session.execute(
            select(Site.town, Site.online, Site.last_seen_at.is_not(None), func.count())
            .where(in_service).group_by(Site.town, Site.online, Site.last_seen_at.is_not(None))
        ).all()  # fmt: skip
        raised_rows = session.execute(
            select(Site.town, Alarm.severity, func.count()).select_from(Alarm)
            .join(Site, Site.id == Alarm.site_id)
            .where(Alarm.raised_at >= start, Alarm.raised_at < end, in_service)
            .group_by(Site.town, Alarm.severity)
        ).all()  # fmt: skip
        cleared_rows = session.execute(
            select(Site.town, func.count()).select_from(Alarm).join(Site, Site.id == Alarm.site_id)
            .where(Alarm.cleared_at >= start, Alarm.cleared_at < end, in_service)
            .group_by(Site.town)
        ).all()  # fmt: skip
        active_rows = session.execute(
            select(Site.town, Site.name, Alarm.type, Alarm.severity, Alarm.raised_at)
            .select_from(Alarm).join(Site, Site.id == Alarm.site_id)
            .where(Alarm.cleared_at.is_(None), in_service)
            .order_by(Alarm.raised_at, Alarm.id)
        ).all()  # fmt: skip
    names = sorted({town for town, *_ in site_rows})
    if towns is not None:
        names = sorted(towns)
    sites: dict[str, int] = {}
    offline: dict[str, int] = {}
    for town, online, seen, count in site_rows:
        sites[town] = sites.get(town, 0) + count
        if seen and not online:
            offline[town] = offline.get(town, 0) + count
    raised: dict[str, dict[str, int]] = {}
    for town, severity, count in raised_rows:
        raised.setdefault(town, {})[severity.value] = count
    cleared = dict(cleared_rows)
    active: dict[str, list[OpenAlarm]] = {}
    for town, site_name, type_, severity, raised_at in active_rows:
        active.setdefault(town, []).append(
            OpenAlarm(site_name, alarm_title(type_.value), severity.value, raised_at))
    return [TownFigures(town=town, sites=sites.get(town, 0), offline=offline.get(town, 0),
                        raised=raised.get(town, {}), cleared=cleared.get(town, 0),
                        active=len(active.get(town, [])),
                        oldest=active.get(town, [])[:SUMMARY_OLDEST])
            for town in names]  # fmt: skip


def notifier_summary(notifier: Notifier | None) -> dict[str, Any]:
    """The routes and their counters, without URLs (for logs and the CLI)."""
    if notifier is None:
        return {}
    return {r.name: {"kind": r.kind.value, "robot": r.target, **asdict(notifier.stats[r.name])}
            for r in notifier.routes}  # fmt: skip


__all__ = [
    "ACTIONS",
    "DEFAULT_ACTIONS",
    "DEFAULT_QUIET_PASS",
    "DEFAULT_SEVERITIES",
    "Notice",
    "Notifier",
    "QuietHours",
    "RateWindow",
    "Route",
    "RouteStats",
    "load_routes",
    "notice_of",
    "route_of",
    "town_figures",
    "urllib_post",
]
