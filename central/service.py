"""The central service object: ingest + live state + alarms + commands, one lifecycle.

::

    async with CentralService(load_config()) as central:   # migrates, connects, subscribes
        await central.wait_idle()                          # every received publish committed
        central.acknowledge_alarm(alarm_id, person="ops-li")
        await central.send_command("zs-sanxiang-01", ReprintArgs(ticket="A012"))

Tasks (one ``asyncio.TaskGroup``, each named): ``mqtt`` (the broker connection,
:class:`central.ingest.MqttIngest`), ``ingest-batches`` (collect the received
publishes, commit a batch in a worker thread,
then publish acks and queue notifications), ``alarm-timer`` (time-based alarm
rules, 差评 deadlines, telemetry retention), ``retention`` (old events, alarms and
commands, see :mod:`central.retention`), ``webhook`` (send notifications),
``robots`` (the managers' 企业微信/钉钉 groups, :mod:`central.notify`, when routes
are configured), ``province-report`` (好差评 records to the provincial platform, when
``province_url`` is set: :mod:`central.province`), ``pushes`` (the emergency stops
and the city calendar each site still lacks, :mod:`central.pushes`). The citizens'
progress pages read the sites' ``progress`` from memory
(:class:`central.progress.ProgressHub`, fed here without the database). Database work
is serialised by one lock per process; several processes (replicas) are safe
through the database (see :mod:`central.ingest`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import msgspec
import structlog
from sqlalchemy import Engine, func, insert, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from central.advice import expire_advice
from central.alarms import AlarmBook, Notification, WebhookNotifier, run_timed_rules
from central.audit import Actor, AuditAction, record
from central.bookings import Bookings, BookingView
from central.config import CentralConfig
from central.db import make_engine, migrate, session_factory
from central.errors import CommandRefused, InvalidRequest, TooManyRequests, UnknownSite
from central.ingest import IngestProcessor, MqttIngest, Received, new_command
from central.models import Alarm, BulkCommand, Command, CommandStatus, Site
from central.notify import Notifier, load_routes
from central.progress import ProgressHub, prune_ticket_links
from central.province import ProvincialReporter, ReportRun
from central.pushes import PUSH_TTL_S, PUSHED_COMMANDS, Pushes, StopView
from central.ratings import run_deadlines
from central.retention import Pruned, Retention
from central.telemetry import EmbeddedTelemetrySink, TelemetrySink, make_sink
from firmware_protocols import mqtt_messages as mm
from firmware_protocols.errors import LocalProtocolError
from firmware_protocols.mqtt_topics import Kind

log = structlog.get_logger(__name__)

UtcNow = Callable[[], datetime]  # now, timezone-aware UTC (utc_now; tests pin it)

PRUNE_EVERY = timedelta(minutes=10)
"""How often the embedded telemetry sink drops points past their retention, and expired
progress-page links go."""
REPORT_BATCHES_PER_RUN = 20
"""Batches one reporting run sends at most; the rest wait for the next run."""


PUSH_TICK_S = 30.0
"""Sites are checked for missing pushes at least this often."""
PUSH_MIN_GAP_S = 2.0
_STATE_TOPIC = f"/{Kind.STATE.value}"
_PROGRESS_TOPIC = f"/{Kind.PROGRESS.value}"
_HUB_TOPICS = (_PROGRESS_TOPIC, f"/{Kind.STATE.value}")


def utc_now() -> datetime:
    return datetime.now(UTC)


class CentralService:
    """Async context manager owning the MQTT client, the ingest batches and the alarm timer."""

    def __init__(
        self,
        config: CentralConfig,
        *,
        engine: Engine | None = None,
        sink: TelemetrySink | None = None,
        notifier: WebhookNotifier | None = None,
        robots: Notifier | None = None,
        clock: UtcNow = utc_now,
        run_migrations: bool = True,
    ) -> None:
        self.config = config
        self.engine = engine or make_engine(config.database_url)
        self.sessions: sessionmaker[Session] = session_factory(self.engine)
        self.sink = sink or make_sink(config, self.sessions)
        if notifier is None and config.webhook_url:
            notifier = WebhookNotifier(config.webhook_url, timeout_s=config.webhook_timeout_s)
        self.notifier = notifier
        self.clock = clock
        if robots is None and config.notify_routes_file:
            robots = Notifier(load_routes(Path(config.notify_routes_file)), self.sessions,
                              clock=clock, base_url=config.dashboard_url,
                              timeout_s=config.webhook_timeout_s)  # fmt: skip
        self.robots = robots
        """The managers' robot groups (:class:`central.notify.Notifier`), if configured."""
        self._run_migrations = run_migrations
        self.processor = IngestProcessor(self.sessions, config, self.sink)
        self.progress = ProgressHub(clock, stale_s=config.progress_stale_s)
        self.pushes = Pushes(self.sessions)
        self.bookings = Bookings(self.sessions, config)
        self._push_due = asyncio.Event()
        self.retention = Retention(self.sessions, config)
        self.reporter = ProvincialReporter(self.sessions, config)
        self.mqtt = MqttIngest(config, self._received)
        self._loop: asyncio.AbstractEventLoop | None = None
        # The MQTT client runs on this loop and appends here once per read; the batch
        # loop takes from the left.
        self._pending: collections.deque[Received] = collections.deque()
        self._arrived = asyncio.Event()
        self._notices: asyncio.Queue[Notification] = asyncio.Queue()
        self._db_lock = asyncio.Lock()
        self._idle = asyncio.Event()
        self._in_flight = 0
        self._stack = contextlib.AsyncExitStack()
        self._next_prune = datetime.min.replace(tzinfo=UTC)
        self.received = 0
        self.committed = 0

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Self:
        if self._run_migrations:
            await asyncio.to_thread(migrate, self.engine)
        self._loop = asyncio.get_running_loop()
        self.progress.bind(self._loop)
        tasks = await self._stack.enter_async_context(asyncio.TaskGroup())
        self._stack.callback(self._stop_background)
        self._tasks = [
            tasks.create_task(self.mqtt.run(), name="mqtt"),
            tasks.create_task(self._batch_loop(), name="ingest-batches"),
            tasks.create_task(self._alarm_timer(), name="alarm-timer"),
            tasks.create_task(self._webhook_loop(), name="webhook"),
            tasks.create_task(self._push_loop(), name="pushes"),
            tasks.create_task(self._retention_timer(), name="retention"),
        ]
        if self.robots is not None:
            self._tasks.append(tasks.create_task(self.robots.run(), name="robots"))
        if self.config.province_url:
            self._tasks.append(tasks.create_task(self._report_loop(), name="province-report"))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.mqtt.stop()
        if exc is None:
            await self.wait_idle()
        await self._stack.__aexit__(exc_type, exc, tb)
        await asyncio.to_thread(self.sink.close)

    def _stop_background(self) -> None:
        for task in self._tasks:
            task.cancel()

    def _received(self, items: list[Received]) -> None:
        """The publishes of one read from the broker (called on the loop).

        ``progress`` goes to the progress pages' hub only (memory, no database);
        ``state`` to both (the pages tell a site that is offline)."""
        for item in items:
            if item.topic.endswith(_HUB_TOPICS):
                self.progress.receive(item.topic, item.payload, item.received_at.timestamp())
        stored = [item for item in items if not item.topic.endswith(_PROGRESS_TOPIC)]
        if not stored:
            return
        self._pending.extend(stored)
        self.received += len(stored)
        self._idle.clear()
        self._arrived.set()

    async def wait_idle(self, timeout: float = 30.0) -> None:
        """Wait until every publish received so far is committed (tests, shutdown)."""
        async with asyncio.timeout(timeout):
            while self._pending or self._in_flight:
                self._idle.clear()
                await self._idle.wait()

    # ------------------------------------------------------------------ ingest

    async def _next_batch(self) -> list[Received]:
        """Up to ``batch_max_messages``, waiting at most ``batch_max_wait_ms`` after the first."""
        while not self._pending:
            self._arrived.clear()
            await self._arrived.wait()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.batch_max_wait_ms / 1000
        limit = self.config.batch_max_messages
        while len(self._pending) < limit and (remaining := deadline - loop.time()) > 0:
            self._arrived.clear()
            try:
                async with asyncio.timeout(remaining):
                    await self._arrived.wait()
            except TimeoutError:
                break
        return [self._pending.popleft() for _ in range(min(limit, len(self._pending)))]

    async def _batch_loop(self) -> None:
        while True:
            batch = await self._next_batch()
            self._in_flight = len(batch)
            try:
                await self._commit(batch)
            finally:
                self._in_flight = 0
                self.committed += len(batch)
                if not self._pending:
                    self._idle.set()

    async def _commit(self, batch: list[Received]) -> None:
        delay = 0.5
        for attempt in range(1, 6):
            now = self.clock()
            try:
                async with self._db_lock:
                    outcome = await asyncio.to_thread(self.processor.process, batch, now)
                break
            except OperationalError as exc:  # database down or locked: retry the same batch
                log.error("ingest.db_unavailable", attempt=attempt, error=str(exc)[:200])
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
            except Exception as exc:  # a bad publish must not stop ingest
                log.error(
                    "ingest.batch_failed",
                    size=len(batch),
                    error=repr(exc)[:400],
                    traceback=traceback.format_exc(limit=8),
                )
                async with self._db_lock:
                    outcome = await asyncio.to_thread(self.processor.process_one_by_one, batch, now)
                break
        else:
            # Events are not lost: no ack was sent, so the edges send them again.
            log.error("ingest.batch_dropped", size=len(batch))
            return
        with self.processor.stages.measure("ack"):
            for site_id, seq in outcome.acks.items():
                self.mqtt.publish_ack(site_id, seq)
            self._publish_after_commit(outcome.stream_acks, outcome.publishes)
        for notification in outcome.notifications:
            self._announce(notification)
        if any(item.topic.endswith(_STATE_TOPIC) for item in batch):
            self._push_due.set()  # a site came or went: it may lack a push

    # ------------------------------------------------------------------ pushes

    async def _push_loop(self) -> None:
        """Send each site what it lacks of the central's stops and calendar: when a
        state arrived, after a decision, and every :data:`PUSH_TICK_S` in any case."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(PUSH_TICK_S):
                    await self._push_due.wait()
            self._push_due.clear()
            try:
                await self.push_pending()
            except OperationalError as exc:
                log.error("pushes.db_unavailable", error=str(exc)[:200])
            await asyncio.sleep(PUSH_MIN_GAP_S)  # a reconnect storm: one pass per gap

    async def stop_issuing(self, scope: str, target: str, reason: str, *,
                           by: str | None) -> tuple[StopView, list[str], int]:
        """Stop ticket issuing at one site (``scope="site"``, ``target`` its id), a town
        (its name) or the whole city (``""``), with the ``reason`` the hall screens, the
        kiosks and the progress pages show: decided once in the database, sent at once to
        every site it covers and again to any that does not report it (offline ones when
        they are back). The one way to stop issuing: a bulk action calls this per town.
        The stop, the sites it covers, how many were sent now."""
        now = self.clock()
        async with self._db_lock:
            stop, sites = await asyncio.to_thread(self.pushes.stop, scope, target, reason,
                                                  by=by, now=now)
        return stop, sites, await self.push_pending(sites, online_only=False)

    async def lift_stop(self, stop_id: str, *, by: str | None
                        ) -> tuple[StopView, list[str], int]:
        """Lift the stop ``stop_id`` (:class:`central.pushes.UnknownStop` if none): its sites
        issue again unless another stop covers them. As :meth:`stop_issuing`."""
        now = self.clock()
        async with self._db_lock:
            stop, sites = await asyncio.to_thread(self.pushes.lift, stop_id, by=by, now=now)
        return stop, sites, await self.push_pending(sites, online_only=False)

    async def set_calendar(self, holidays: list[str], workdays: list[str],
                           special: list[str], *, by: str | None) -> tuple[str, int]:
        """A new version of the city calendar, sent to every site: its version, how many
        were sent now."""
        now = self.clock()
        async with self._db_lock:
            version = await asyncio.to_thread(self.pushes.set_calendar, holidays, workdays,
                                              special, by=by, now=now)
        return version, await self.push_pending(online_only=False)

    async def book(self, site_id: str, service: str, day: str, slot: str, id_number: str, *,
                   reference: str | None, actor: Actor) -> tuple[BookingView, int]:
        """A booking under the central's rules (:meth:`central.bookings.Bookings.book`);
        one for today is sent to its site at once. The booking, how many were sent."""
        now = self.clock()
        async with self._db_lock:
            view = await asyncio.to_thread(self.bookings.book, site_id, service, day, slot,
                                           id_number, reference=reference, actor=actor, now=now)
        return view, await self.push_pending([site_id], online_only=False)

    async def change_booking(self, code: str, *, service: str | None, day: str | None,
                             slot: str | None, actor: Actor) -> tuple[BookingView, int]:
        """Move a booking, its code kept (:meth:`central.bookings.Bookings.change`); its
        site gets the day's bookings again if today's changed (the booking came, went
        or moved within the day)."""
        now = self.clock()
        async with self._db_lock:
            _, after = await asyncio.to_thread(self.bookings.change, code, service=service,
                                               day=day, slot=slot, actor=actor, now=now)
        return after, await self.push_pending([after.site], online_only=False)

    async def cancel_booking(self, code: str, *, actor: Actor) -> tuple[BookingView, int]:
        """Cancel a booking (:meth:`central.bookings.Bookings.cancel`); its site, if it
        holds it today, is sent the day's bookings without it."""
        now = self.clock()
        async with self._db_lock:
            view = await asyncio.to_thread(self.bookings.cancel, code, actor=actor, now=now)
        return view, await self.push_pending([view.site], online_only=False)

    async def push_pending(self, sites: list[str] | None = None, *,
                           online_only: bool = True) -> int:
        """Send the stops, calendars and bookings sites lack
        (:meth:`central.pushes.Pushes.pending`);
        how many were sent. A site over its command rate gets its turn next time."""
        now = self.clock()
        async with self._db_lock:
            pending = await asyncio.to_thread(self.pushes.pending, now, sites=sites,
                                              online_only=online_only)
        sent = 0
        for site_id, args in pending:
            try:
                await self.send_command(site_id, args, ttl_s=PUSH_TTL_S, issued_by="central")
            except (TooManyRequests, CommandRefused, UnknownSite) as exc:
                log.warning("pushes.not_sent", site=site_id, error=str(exc)[:200])
            else:
                sent += 1
        if sent:
            log.info("pushes.sent", count=sent)
        return sent

    def _publish_after_commit(self, stream_acks: list[tuple[str, int]],
                              publishes: list[mm.Publish]) -> None:
        """Acks of replaced devices' epochs, then leases and restores (after their commit)."""
        for site_id, seq in stream_acks:
            self.mqtt.publish_ack(site_id, seq)
        for publish in publishes:
            self.mqtt.publish(publish)

    # ------------------------------------------------------------------ devices

    async def takeover(self, site_id: str, device: str, *, actor: Actor, skip: int = 0) -> None:
        """Let ``device`` (a new device of the site, waiting) take the site's numbers over.

        The next epoch is granted to it and the retained ``lease`` names it, so the old
        device stops numbering whenever it hears of it; the new device gets the day as
        the central knows it (``restore``), with every prefix's counter ``skip`` further.
        :class:`UnknownSite`, :class:`UnknownDevice`, :class:`Conflict` (409) otherwise.
        Audited (``device.takeover``) in the same transaction.
        """
        now = self.clock()

        def grant() -> tuple[list[mm.Publish], list[Notification]]:
            with self.sessions.begin() as session:
                book = AlarmBook(session, now)
                publishes = self.processor.leases.takeover(
                    session, site_id, device, actor=actor.name, skip=skip, now=now, book=book)
                record(session, actor, AuditAction.DEVICE_TAKEOVER, site_id,
                       {"device": device, "skip": skip}, now=now)
            return publishes, book.notifications

        async with self._db_lock:
            publishes, notifications = await asyncio.to_thread(grant)
        self._publish_after_commit([], publishes)
        for notification in notifications:
            self._notices.put_nowait(notification)

    # ------------------------------------------------------------------ alarms

    async def _alarm_timer(self) -> None:
        while True:
            await asyncio.sleep(self.config.alarm_tick_s)
            try:
                await self.run_alarm_rules()
            except OperationalError as exc:
                log.error("alarms.timer_db_unavailable", error=str(exc)[:200])

    async def run_alarm_rules(self) -> list[Notification]:
        """Run the time-based alarm rules now (the timer calls this every ``alarm_tick_s``)."""
        now = self.clock()

        def work() -> list[Notification]:
            with self.sessions.begin() as session:
                book = AlarmBook(session, now)
                run_timed_rules(book, self.config)
                expire_advice(book)  # staffing advice the edge stopped renewing
                run_deadlines(book, self.config)  # 差评 cases past their deadlines
            if now >= self._next_prune:
                if isinstance(self.sink, EmbeddedTelemetrySink):
                    self.sink.prune(int(now.timestamp() * 1000))
                with self.sessions.begin() as session:
                    prune_ticket_links(session, now)
                self._next_prune = now + PRUNE_EVERY
            return book.notifications

        async with self._db_lock:
            notifications = await asyncio.to_thread(work)
        for notification in notifications:
            self._announce(notification)
        return notifications

    async def _retention_timer(self) -> None:
        while True:
            try:
                await self.prune_history()
            except OperationalError as exc:
                log.error("retention.db_unavailable", error=str(exc)[:200])
            await asyncio.sleep(self.config.retention_interval_s)

    async def prune_history(self) -> Pruned:
        """Delete what is past the retention settings now (the ``retention`` task runs this
        every ``retention_interval_s``): step by step, each step holding the database only
        briefly, so ingest goes on in between."""
        now = self.clock()
        total = Pruned()
        more = True
        while more:
            async with self._db_lock:
                pruned, more = await asyncio.to_thread(self.retention.prune_step, now)
            total += pruned
        if total:
            log.info("retention.pruned", **total.as_dict())
        return total

    def acknowledge_alarm(self, alarm_id: int, person: str, note: str | None = None) -> Alarm:
        """A person acknowledges an alarm (synchronous; call from a worker thread in the API)."""
        with self.sessions.begin() as session:
            book = AlarmBook(session, self.clock())
            alarm = book.acknowledge(alarm_id, person, note)
        self.queue_notifications(book.notifications)
        return alarm

    def queue_notifications(self, notifications: list[Notification]) -> None:
        """Hand notifications committed elsewhere (the registry clearing a retired site's
        alarms) to the webhook sender; callable from any thread."""
        if self._loop is not None:
            for notification in notifications:
                self._loop.call_soon_threadsafe(self._announce, notification)

    def _announce(self, notification: Notification) -> None:
        """To the webhook and to the managers' robots (on the loop)."""
        self._notices.put_nowait(notification)
        if self.robots is not None:
            self.robots.submit_alarm(notification)

    async def report_ratings(self) -> ReportRun:
        """Send the 好差评 records that are due to the provincial platform now (the
        ``province-report`` task calls this every ``province_interval_s``). The database
        is touched under the lock, the request is made outside it."""
        reporter, now, run = self.reporter, self.clock(), ReportRun()
        for _ in range(REPORT_BATCHES_PER_RUN):
            async with self._db_lock:
                batch = await asyncio.to_thread(reporter.claim, now)
            if batch is None:
                break
            answer = await asyncio.to_thread(reporter.send, batch)
            async with self._db_lock:
                await asyncio.to_thread(reporter.settle, batch, answer, now, run)
        return run

    async def _report_loop(self) -> None:
        while True:
            try:
                run = await self.report_ratings()
                if run.requests:
                    log.info("province.reported", requests=run.requests, sent=run.sent,
                             duplicate=run.duplicate, rejected=run.rejected,
                             retried=run.retried, failed=run.failed)  # fmt: skip
            except OperationalError as exc:
                log.error("province.db_unavailable", error=str(exc)[:200])
            await asyncio.sleep(self.config.province_interval_s)

    async def _webhook_loop(self) -> None:
        while True:
            notification = await self._notices.get()
            if self.notifier is None:
                continue
            try:
                await asyncio.to_thread(self.notifier.send, notification)
            except Exception as exc:  # a broken webhook must not end ingest; no traceback:
                log.error(  # its frames and message could carry the URL's secret
                    "alarm.webhook_crashed",
                    webhook=self.notifier.target,
                    error=self.notifier.scrub(f"{type(exc).__name__}: {exc}")[:300],
                )

    # ------------------------------------------------------------------ commands

    async def send_command(
        self,
        site_id: str,
        args: mm.CommandArgs,
        *,
        ttl_s: int = 300,
        issued_by: str | None = None,
    ) -> mm.Cmd:
        """Record a command and publish it on ``cmd/{name}``; ``cmd_result`` completes it.

        :class:`UnknownSite` for a site not in the registry; :class:`TooManyRequests`
        past ``command_limit_per_site`` commands to the site in ``command_limit_window_s``;
        :class:`CommandRefused` when the contract's encoder refuses the command, with its
        reason. Nothing is recorded or sent in these cases.
        """
        now = self.clock()
        try:
            command = new_command(site_id, args, now=now, ttl_s=ttl_s)
        except ValueError as exc:  # the contract's own checks (msgspec's ValidationError too)
            raise CommandRefused(f"invalid command: {exc}") from None

        def record() -> mm.Publish:
            with self.sessions.begin() as session:
                if session.get(Site, site_id) is None:
                    raise UnknownSite(site_id)
                self._check_command_rate(session, site_id, now)
                try:
                    publish = mm.to_publish(command)  # the edge's own decoder checks it here
                except LocalProtocolError as exc:
                    raise CommandRefused(f"invalid {command.name} command: {exc}") from None
                session.add(
                    Command(
                        id=command.id,
                        site_id=site_id,
                        name=command.name,
                        args=msgspec.to_builtins(args),
                        issued_at=now,
                        expires_at=now + timedelta(seconds=ttl_s),
                        issued_by=issued_by,
                        status=CommandStatus.SENT,
                    )
                )
            return publish

        async with self._db_lock:
            publish = await asyncio.to_thread(record)
        self.mqtt.publish(publish)
        return command


    def _check_command_rate(self, session: Session, site_id: str, now: datetime) -> None:
        """Counted from the commands table, so that every replica and restart agree."""
        refusal = self._command_rates(session, [site_id], now).get(site_id)
        if refusal is not None:
            raise refusal

    def _command_rates(self, session: Session, site_ids: list[str],
                       now: datetime) -> dict[str, TooManyRequests]:  # fmt: skip
        """The sites of ``site_ids`` past ``command_limit_per_site``, each with its refusal
        (one grouped query per 500 sites, however many)."""
        limit = self.config.command_limit_per_site
        window = timedelta(seconds=self.config.command_limit_window_s)
        refused: dict[str, TooManyRequests] = {}
        for start in range(0, len(site_ids), 500):
            chunk = site_ids[start : start + 500]
            full = session.execute(
                select(Command.site_id, func.count())
                .where(Command.site_id.in_(chunk), Command.issued_at > now - window)
                .group_by(Command.site_id).having(func.count() >= limit)
            ).all()  # fmt: skip
            for site_id, _ in full:
                recent = session.scalars(
                    select(Command.issued_at)
                    .where(Command.site_id == site_id, Command.issued_at > now - window)
                    .order_by(Command.issued_at.desc()).limit(limit)
                ).all()  # fmt: skip
                retry_after = (recent[-1] + window - now).total_seconds()  # the oldest leaves
                log.warning("command.rate_limited", site=site_id, limit=limit,
                            window_s=self.config.command_limit_window_s)  # fmt: skip
                refused[site_id] = TooManyRequests(  # shown to the operator: Chinese first
                    f"指令过于频繁，请 {max(1, math.ceil(retry_after))} 秒后再试 / site "
                    f"{site_id!r} was sent {limit} commands in the last "
                    f"{self.config.command_limit_window_s} s (command_limit_per_site)",
                    retry_after_s=retry_after,
                )
        return refused

    async def send_bulk(
        self,
        site_ids: list[str],
        args: mm.CommandArgs,
        *,
        target: dict[str, Any],
        ttl_s: int = 300,
        issued_by: str,
    ) -> BulkSent:
        """One command to many sites: recorded in one transaction (a ``bulk_commands`` row,
        a command per site), then published, one ``cmd/{name}`` per site.

        A site past ``command_limit_per_site`` is not sent to: it is listed in
        :attr:`BulkSent.refused` with the reason (the others go). :class:`CommandRefused`
        when the contract refuses the command itself (nothing is recorded or sent);
        :class:`UnknownSite` for an id not in the registry.
        """
        if not site_ids:
            raise InvalidRequest("no site to send to")
        now = self.clock()
        bulk_id = uuid.uuid4()
        commands = []
        for site_id in site_ids:
            try:
                command = new_command(site_id, args, now=now, ttl_s=ttl_s)
                publish = mm.to_publish(command)  # the edge's own decoder checks it here
            except (ValueError, LocalProtocolError) as exc:
                raise CommandRefused(f"invalid command: {exc}") from None
            commands.append((command, publish))
        name = commands[0][0].name

        def record() -> tuple[list[mm.Publish], dict[str, str]]:
            with self.sessions.begin() as session:
                known: set[str] = set()
                for start in range(0, len(site_ids), 500):
                    chunk = site_ids[start : start + 500]
                    known.update(session.scalars(select(Site.id).where(Site.id.in_(chunk))))
                if missing := [s for s in site_ids if s not in known]:
                    raise UnknownSite(missing[0])
                refusals = self._command_rates(session, site_ids, now)
                refused = {site_id: str(exc) for site_id, exc in refusals.items()}
                session.add(BulkCommand(id=bulk_id, name=name, args=msgspec.to_builtins(args),
                                        ttl_s=ttl_s, target=target, issued_by=issued_by,
                                        issued_at=now, sites=len(site_ids),
                                        refused=refused))  # fmt: skip
                session.flush()
                publishes, rows = [], []
                stored_args = msgspec.to_builtins(args)
                expires_at = now + timedelta(seconds=ttl_s)
                for command, publish in commands:
                    if command.site in refused:
                        continue
                    rows.append({"id": command.id, "site_id": command.site, "name": name,
                                 "args": stored_args, "issued_at": now, "expires_at": expires_at,
                                 "issued_by": issued_by, "status": CommandStatus.SENT,
                                 "bulk_id": bulk_id})  # fmt: skip
                    publishes.append(publish)
                if rows:  # one executemany, not an ORM object per site (a province: 20,000)
                    session.execute(insert(Command), rows)
            return publishes, refused

        async with self._db_lock:
            publishes, refused = await asyncio.to_thread(record)
        for publish in publishes:
            self.mqtt.publish(publish)
        log.info("command.bulk_sent", id=str(bulk_id), name=name, sites=len(site_ids),
                 sent=len(publishes), refused=len(refused), by=issued_by)  # fmt: skip
        return BulkSent(bulk_id, len(publishes), refused)


@dataclass(frozen=True, slots=True)
class BulkSent:
    """What :meth:`CentralService.send_bulk` did: the bulk's id, how many sites were sent
    the command, and the sites it was not sent to, with why."""

    id: uuid.UUID
    sent: int
    refused: dict[str, str]


def command_args(name: str, args: dict[str, Any]) -> mm.CommandArgs:
    """The typed args of command ``name``; :class:`CommandRefused` (422) with the contract's
    reason when they do not fit its schema."""
    schema = mm.COMMAND_ARGS.get(name)
    if name in PUSHED_COMMANDS:  # sent by hand, the central would undo it at the next push
        raise CommandRefused(f"{name!r} is decided through {PUSHED_COMMANDS[name]} "
                             "(central.pushes), which keeps every site holding it")
    if schema is None:
        raise CommandRefused(f"unknown command {name!r}; one of {', '.join(mm.COMMAND_ARGS)}")
    try:
        converted = msgspec.convert({**args, "name": name}, schema)
    except msgspec.ValidationError as exc:
        raise CommandRefused(f"invalid {name} args: {exc}") from None
    typed: mm.CommandArgs = converted  # type: ignore[assignment]  # COMMAND_ARGS maps to these
    return typed


__all__ = ["BulkSent", "CentralService", "command_args", "utc_now"]
