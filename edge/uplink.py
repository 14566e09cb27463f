"""The MQTT uplink: store-and-forward of the journal to the central (contract v1,
``docs/PROTOCOLS.md``).

One :class:`Uplink` task owns the paho client. Each connection attempt takes
a new session number from the journal (it survives reboots) and registers a
Will that is the ``offline`` twin of the ``online`` state it publishes first,
so the central can ignore a stale Will arriving after a reconnect
(:func:`firmware_protocols.mqtt_messages.state_supersedes`).

The broker keeps the edge's MQTT session while it is offline (a stable client
id ``onedoor-edge-{site}``; MQTT 5 with clean start off and a session expiry of
``mqtt.session_expiry_seconds``, or a 3.1.1 persistent session): a command the
central publishes meanwhile waits in the broker and runs when the edge comes
back, unless its ``expires_ts`` has passed by then (answered ``expired``).

While connected, events above the central's ``ack`` are published (QoS 1)
from the journal in order, at most ``window`` in flight; if the ack stops
moving for ``resend_s`` they are sent again from the ack (the central
deduplicates on seq). Queued telemetry snapshots go out QoS 0, and the staffing
advice (``advice``, :mod:`edge.advice`) QoS 1 whenever it changes and once on every
new connection unless it has expired. ``cmd/{name}``
messages are decoded, checked for expiry and duplicates, run through the
daemon's handler and answered on ``cmd_result`` (after the handler's reply, e.g.
``diag`` for ``cmd/diagnostics``); a malformed command gets an error result when
its ``id`` can be read, and is logged either way (its size is checked before any
parsing, and no payload can raise out of the uplink). An ``ack`` far above what
the journal holds is refused and reported (:class:`~edge.errors.AckRefused`).

The ``state`` carries the journal's device id and epoch. A journal still waiting
for its epoch sends no event (they are provisional until the grant renumbers
them) and no telemetry; a replaced one sends its events and no telemetry (the
site's live state is the new device's). ``lease`` and ``restore`` go to the
daemon's :class:`~edge.lease.SiteLease`. Every device of a site logs in with the
site's credentials, so the broker keeps one connection per site (the client id
is the site's) and each new connection ends the other's: a device that does not
number the site waits ``mqtt.yield_seconds`` after losing a connection, and a
replaced one leaves the broker for good once the central holds everything it
journaled (until the daemon restarts).

paho runs its network loop in its own thread (``loop_start``); every callback
is handed to the event loop with ``call_soon_threadsafe``. Reconnects wait a
capped, full-jitter exponential backoff (aiomqtt's pattern).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import shutil
import ssl
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
import paho.mqtt.client as paho
import structlog
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge.clock import Clock
from edge.config import MqttConfig
from edge.errors import AckRefused, CommandFailed
from edge.journal import Journal
from firmware_protocols import mqtt_messages as mm
from firmware_protocols import mqtt_topics as topics
from firmware_protocols.errors import ProtocolError

log = structlog.get_logger(__name__)

CommandHandler = Callable[[mm.Cmd], Awaitable[mm.Message | None]]
"""Runs a command; raising any exception turns into an error ``cmd_result``. A message
it returns (the ``diag`` of ``cmd/diagnostics``) is published before the result."""
LeaseHandler = Callable[[mm.Lease], None]
RestoreHandler = Callable[[mm.Restore], None]
AdviceSource = Callable[[int], "mm.Advice | None"]
"""The latest staffing advice, as a message of the given MQTT session (None: none yet)."""


def _close_wakeup_sockets(client: paho.Client) -> None:
    """Close the socket pair paho opens to wake its loop: paho itself closes it only when
    the client is garbage-collected, which for a client in a reference cycle is late (one
    pair per reconnect held open until then)."""
    client._reset_sockets()  # no public way to do it


class _CommandId(msgspec.Struct):
    """Only the ``id`` of a command payload (other fields are skipped, not checked)."""

    id: uuid.UUID


_COMMAND_ID = msgspec.json.Decoder(_CommandId)
_ID_FIELD = re.compile(r'"id"\s*:\s*"([0-9A-Fa-f-]{32,36})"')


def readable_command_id(payload: bytes) -> uuid.UUID | None:
    """The ``id`` of a command the contract refused, when it can be read; never raises.

    Only the first :data:`~firmware_protocols.mqtt_topics.TOPICS` ``cmd`` limit of
    bytes is looked at, and a byte that is not UTF-8 does not hide the id. A payload
    too large, or nested too deep, to parse is searched for an ``"id"`` field instead.
    """
    limit = topics.TOPICS[topics.Kind.CMD].max_payload
    text = bytes(payload[:limit]).decode("utf-8", errors="replace")
    if len(payload) <= limit:
        try:
            return _COMMAND_ID.decode(text).id
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
            pass
    match = _ID_FIELD.search(text)
    if match is None:
        return None
    try:
        return uuid.UUID(match.group(1))
    except ValueError:
        return None


def backoff_delay(attempt: int, base_s: float, cap_s: float, rng: random.Random) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(cap, base * 2**attempt)]."""
    return rng.uniform(0.0, min(cap_s, base_s * (2 ** min(attempt, 30))))


# --------------------------------------------------------------------------- host stats


def host_stats(disk_path: str | Path = "/", *, thermal: Path = Path("/sys/class/thermal")
               ) -> mm.HostStat:
    """CPU temperature (if the board exposes it), load, memory, disk and uptime."""
    temp = None
    zone = thermal / "thermal_zone0" / "temp"
    with contextlib.suppress(OSError, ValueError):
        temp = max(-60.0, min(150.0, int(zone.read_text().strip()) / 1000))
    meminfo: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            name, _, rest = line.partition(":")
            meminfo[name] = int(rest.split()[0]) if rest.split() else 0
    total = meminfo.get("MemTotal", 0)
    mem_pct = 100.0 * (total - meminfo.get("MemAvailable", total)) / total if total else 0.0
    path = Path(disk_path)
    while not path.exists() and path != path.parent:
        path = path.parent
    usage = shutil.disk_usage(path)
    uptime = 0
    with contextlib.suppress(OSError, ValueError):
        uptime = int(float(Path("/proc/uptime").read_text().split()[0]))
    return mm.HostStat(
        cpu_temp_c=temp,
        load1=min(1000.0, os.getloadavg()[0]),
        mem_used_pct=round(min(100.0, max(0.0, mem_pct)), 1),
        disk_used_pct=round(100.0 * usage.used / usage.total, 1) if usage.total else 0.0,
        uptime_s=uptime,
    )


# --------------------------------------------------------------------------- uplink


class Uplink:
    """Keeps one site connected to the broker and its outbox drained."""

    def __init__(
        self,
        site_id: str,
        mqtt: MqttConfig,
        journal: Journal,
        clock: Clock,
        *,
        software: str,
        boot_id: str,
        config_version: Callable[[], str | None],
        commands: CommandHandler,
        on_lease: LeaseHandler = lambda _lease: None,
        on_restore: RestoreHandler = lambda _restore: None,
        advice: AdviceSource | None = None,
        beat: Callable[[], None] = lambda: None,
        on_connect: Callable[[], None] = lambda: None,
        pushed: Callable[[], tuple[str | None, str | None]] = lambda: (None, None),
        bookings: Callable[[], str | None] = lambda: None,
        window: int = 200,
        resend_s: float = 30.0,
        backoff_base_s: float = 0.5,
        backoff_cap_s: float = 60.0,
        rng: random.Random | None = None,
    ) -> None:
        self.site_id = site_id
        self.mqtt = mqtt
        self.journal = journal
        self.clock = clock
        self.software = software
        self.boot_id = boot_id
        self.config_version = config_version
        self.commands = commands
        self.on_lease = on_lease
        self.on_restore = on_restore
        self.advice = advice
        self._advice_sent: int | None = None  # ts of the advice sent in this session
        self.beat = beat
        self.on_connect = on_connect
        self.pushed = pushed  # (the stop in force, the city calendar's version)
        self.bookings = bookings  # the version of the day's bookings held
        self.window = window
        self.resend_s = resend_s
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self.rng = rng or random.Random()
        self.connected = False
        self.left = False  # replaced, and everything it held was acknowledged
        self.session = 0
        self.connects = 0
        self._wake = asyncio.Event()
        self._client: paho.Client | None = None
        self._seen_commands: OrderedDict[uuid.UUID, None] = OrderedDict()
        self._command_tasks: set[asyncio.Task[None]] = set()

    def wake(self) -> None:
        """Something new is in the outbox (call from the event loop)."""
        self._wake.set()

    # -- messages ------------------------------------------------------------

    def _state(self, status: str) -> mm.State:
        stop, calendar = self.pushed()
        return mm.State(site=self.site_id, status=status,  # type: ignore[arg-type]
                        lwt=False, boot_id=self.boot_id, session=self.session,
                        software=self.software, config=self.config_version(),
                        ts=self.clock.now_ms(), clock_synced=self.clock.synced(),
                        device=self.journal.device_id, epoch=self.journal.epoch,
                        stop=stop, calendar=calendar, bookings=self.bookings(),
                        seq=self.journal.reported_seq, forked=self.journal.forked)

    def publish_state(self) -> None:
        """(Re)publish the retained online state, e.g. after a config reload."""
        if self._client is not None and self.connected:
            self._publish(mm.to_publish(self._state("online")))

    def publish_live(self, message: mm.Message) -> bool:
        """Publish a message only its latest value matters for (``progress``), straight
        away, never through the journal: False when not connected (it is dropped; the
        caller sends a fresh one after ``on_connect``)."""
        if self._client is None or not self.connected:
            return False
        self._publish(mm.to_publish(message))
        return True

    def _publish(self, publish: mm.Publish) -> None:
        assert self._client is not None
        self._client.publish(publish.topic, publish.payload, qos=publish.qos,
                             retain=publish.retain)

    # -- the task ------------------------------------------------------------

    async def run(self) -> None:
        attempt = 0
        while True:
            self.beat()
            if self._replaced_and_done():
                if not self.left:
                    self.left = True
                    log.info("uplink.left", detail="replaced: the central holds all this "
                             "device journaled; the broker is the new device's")
                await asyncio.sleep(1.0)
                continue
            connected = self.connects
            try:
                await self._session()
                attempt = 0  # a session that got connected resets the backoff
            except (OSError, ssl.SSLError, ConnectionError, TimeoutError) as exc:
                log.warning("uplink.connect_failed", host=self.mqtt.host, port=self.mqtt.port,
                            error=repr(exc), attempt=attempt)
            delay = backoff_delay(attempt, self.backoff_base_s, self.backoff_cap_s, self.rng)
            if self.connects > connected and self.journal.numbering != "granted":
                delay = max(delay, float(self.mqtt.yield_seconds))  # another device's turn
                log.info("uplink.yielding", seconds=self.mqtt.yield_seconds,
                         numbering=self.journal.numbering)
            attempt += 1
            deadline = time.monotonic() + delay
            while time.monotonic() < deadline:  # keep checking in while waiting
                self.beat()
                await asyncio.sleep(min(1.0, max(0.0, deadline - time.monotonic())))

    def _replaced_and_done(self) -> bool:
        return self.journal.numbering == "replaced" and self.journal.unacked_count() == 0

    @property
    def client_id(self) -> str:
        """Stable across connections and restarts: the broker keeps its session."""
        return f"onedoor-edge-{self.site_id}"

    def _new_paho(self, *, clean_session: bool | None) -> paho.Client:
        """A paho client with the site's id, protocol, login and TLS."""
        mqtt5 = self.mqtt.protocol == "5"
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                             clean_session=None if mqtt5 else clean_session,
                             protocol=paho.MQTTv5 if mqtt5 else paho.MQTTv311,
                             reconnect_on_failure=False)
        if self.mqtt.username is not None:
            client.username_pw_set(self.mqtt.username, self.mqtt.password)
        if self.mqtt.tls is not None:
            client.tls_set(ca_certs=self.mqtt.tls.ca_file, certfile=self.mqtt.tls.cert_file,
                           keyfile=self.mqtt.tls.key_file)
        return client

    def _make_client(self) -> paho.Client:
        # 3.1.1 keeps the session (clean_session False): a fresh journal's start is made
        # clean beforehand by _end_earlier_session (see _connect).
        client = self._new_paho(clean_session=False)
        # paho must never reconnect by itself (reconnect_on_failure=False above): each
        # connection needs a new session number and a Will that carries it.
        client.max_inflight_messages_set(self.window)
        client.max_queued_messages_set(0)
        will = mm.will_for(self._state("online"))
        client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
        return client

    async def _session(self) -> None:
        loop = asyncio.get_running_loop()
        self.session = self.journal.next_session()
        client = self._make_client()
        connected = asyncio.Event()
        lost = asyncio.Event()
        refused: list[str] = []

        def on_connect(_c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
            if reason.is_failure:
                refused.append(str(reason))
                loop.call_soon_threadsafe(lost.set)
            else:
                loop.call_soon_threadsafe(connected.set)

        def on_disconnect(_c: Any, _u: Any, _f: Any, _reason: Any, _p: Any) -> None:
            loop.call_soon_threadsafe(lost.set)
            loop.call_soon_threadsafe(self._wake.set)

        def on_message(_c: Any, _u: Any, message: paho.MQTTMessage) -> None:
            try:
                topic = message.topic
            except UnicodeDecodeError:
                topic = "\x00invalid-utf8"  # parse_topic refuses it (reason "topic")
            loop.call_soon_threadsafe(self._on_message, topic, bytes(message.payload))

        client.on_connect = on_connect
        client.on_disconnect = on_disconnect
        client.on_message = on_message
        self._client = client
        try:
            async with asyncio.timeout(30):
                await asyncio.to_thread(self._connect, client)
            client.loop_start()
            waiter = asyncio.ensure_future(connected.wait())
            loser = asyncio.ensure_future(lost.wait())
            await asyncio.wait({waiter, loser}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            loser.cancel()
            if not connected.is_set() or lost.is_set():
                raise ConnectionError(f"broker refused or dropped the connection: {refused}")
            self.connects += 1
            for sub in topics.edge_subscriptions(self.site_id):
                client.subscribe(sub.filter, qos=sub.qos)
            self._publish(mm.to_publish(self._state("online")))
            self._advice_sent = None  # a new connection gets the latest advice again
            self.journal.note_broker_session()
            self.connected = True
            self.on_connect()
            log.info("uplink.connected", session=self.session, acked=self.journal.acked_seq,
                     pending=self.journal.unacked_count())
            await self._pump(lost)
        finally:
            self.connected = False
            if not lost.is_set() and not self._replaced_and_done():
                # A clean goodbye: the retained state says offline, not via the Will (a
                # replaced device leaves the retained state to the device that numbers).
                with contextlib.suppress(Exception):
                    info = client.publish(*self._offline_args())
                    await asyncio.to_thread(info.wait_for_publish, 2.0)
            with contextlib.suppress(Exception):
                client.disconnect()
            await asyncio.to_thread(client.loop_stop)
            _close_wakeup_sockets(client)
            self._client = None
            log.info("uplink.disconnected", session=self.session)

    def _connect(self, client: paho.Client) -> None:
        """Connect (blocking, in a thread), resuming the session the broker keeps.

        The first session of a journal starts clean: what the broker kept for this
        client id belongs to an earlier journal (acks of its seqs, commands about its
        tickets), and taking an ack of another journal would move this one's seq floor.
        """
        mqtt = self.mqtt
        fresh = not self.journal.broker_session_known()
        if mqtt.protocol != "5":
            # 3.1.1 has no "clean start, then keep the session": a clean connection's
            # session ends at its disconnect, and a command sent to the offline site
            # then would be lost. So end the earlier journal's session with a clean
            # connection of its own, and open a kept one.
            if fresh:
                self._end_earlier_session()
            client.connect(mqtt.host, mqtt.port, mqtt.keepalive_seconds)
            return
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = mqtt.session_expiry_seconds
        client.connect(mqtt.host, mqtt.port, mqtt.keepalive_seconds, clean_start=fresh,
                       properties=properties)

    def _end_earlier_session(self, timeout_s: float = 10.0) -> None:
        """Connect clean and leave (blocking, 3.1.1 only): the broker drops what it kept."""
        wiper = self._new_paho(clean_session=True)
        answered: list[bool] = []
        wiper.on_connect = lambda _c, _u, _f, reason, _p: answered.append(not reason.is_failure)
        wiper.connect(self.mqtt.host, self.mqtt.port, self.mqtt.keepalive_seconds)
        deadline = time.monotonic() + timeout_s
        try:
            while not answered and time.monotonic() < deadline:
                wiper.loop(0.1)
            if answered != [True]:
                raise ConnectionError("the broker did not accept the clean connection "
                                      "that ends the earlier journal's session")
        finally:
            with contextlib.suppress(Exception):
                wiper.disconnect()
                wiper.loop(0.1)  # writes the DISCONNECT
            _close_wakeup_sockets(wiper)

    def _offline_args(self) -> tuple[str, bytes, int, bool]:
        publish = mm.to_publish(self._state("offline"))
        return publish.topic, publish.payload, publish.qos, publish.retain

    async def _pump(self, lost: asyncio.Event) -> None:
        """Send events above the ack and queued telemetry until the connection drops."""
        sent_up_to = self.journal.acked_seq
        last_progress = time.monotonic()
        last_acked = sent_up_to
        while not lost.is_set():
            self.beat()
            if self._replaced_and_done():
                return  # see run(): the broker is the new device's
            acked = self.journal.acked_seq
            now = time.monotonic()
            # The quiet period runs from the ack's last move, or from the first send after
            # everything was acked: an idle hall's next event is not resent at once.
            if acked != last_acked or sent_up_to <= acked:
                last_acked, last_progress = acked, now
            if sent_up_to < acked:
                sent_up_to = acked
            if sent_up_to > acked and now - last_progress > self.resend_s:
                log.warning("uplink.resend", from_seq=acked + 1, to_seq=sent_up_to)
                sent_up_to, last_progress = acked, now
            sending = self.journal.epoch is not None  # else provisional: not sent
            room = self.window - (sent_up_to - acked)
            if room > 0 and sending:
                for seq, payload in self.journal.payloads(sent_up_to, room):
                    self._publish(mm.Publish(topics.event_topic(self.site_id), payload, 1,
                                             False))
                    sent_up_to = seq
            batch = self.journal.telemetry(50)
            if batch:
                if self.journal.numbering == "granted":
                    for _, payload in batch:
                        self._publish(mm.Publish(topics.telemetry_topic(self.site_id),
                                                 payload, 0, False))
                self.journal.remove_telemetry([row_id for row_id, _ in batch])
            self._send_advice()
            self._wake.clear()
            if (sending and self.journal.last_seq > sent_up_to
                    and (sent_up_to - acked) < self.window):
                continue  # more to send right away
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._wake.wait()

    def _send_advice(self) -> None:
        """The latest staffing advice, if it changed since sent and has not expired."""
        message = None if self.advice is None else self.advice(self.session)
        if message is None or message.ts == self._advice_sent:
            return
        self._advice_sent = message.ts
        if message.expires_ts <= self.clock.now_ms():
            return  # the central has dropped it already
        try:
            self._publish(mm.to_publish(message))
        except ProtocolError as exc:  # a bug in building it: logged, the uplink goes on
            log.error("uplink.advice_invalid", error=str(exc))

    # -- incoming ------------------------------------------------------------

    def _on_message(self, topic: str, payload: bytes) -> None:
        try:
            self._handle_message(topic, payload)
        except Exception:  # a bug here must not reach paho's thread or stop the session
            log.exception("uplink.message_failed", topic=topic[:200], bytes=len(payload))

    def _handle_message(self, topic: str, payload: bytes) -> None:
        try:
            incoming = mm.decode_publish(topic, payload)
        except topics.InvalidMessage as exc:
            log.error("uplink.bad_message", topic=topic, reason=exc.reason.value,
                      detail=exc.detail[:200], bytes=len(payload))
            if exc.kind is topics.Kind.CMD:
                self._reject_unreadable_command(payload, f"{exc.reason.value}: {exc.detail}")
            return
        if incoming.site_id != self.site_id:
            return
        message = incoming.message
        if isinstance(message, mm.Ack):
            before = self.journal.acked_seq
            try:
                after = self.journal.ack(message.seq)
            except AckRefused as exc:  # reported by the telemetry task as ack.refused
                log.error("uplink.ack_refused", ack=exc.ack, last_seq=exc.last_seq,
                          detail="far above what this journal holds: wrong or forged")
                return
            if after != before:
                self._wake.set()
        elif isinstance(message, mm.Cmd):
            self._start_command(message)
        elif isinstance(message, mm.Lease):
            self.on_lease(message)
            self._wake.set()
        elif isinstance(message, mm.Restore):
            self.on_restore(message)
            self._wake.set()

    def _reject_unreadable_command(self, payload: bytes, error: str) -> None:
        command_id = readable_command_id(payload)
        if command_id is None:
            log.error("uplink.cmd_unanswerable", detail="no readable id", error=error[:200])
            return
        self._send_result(command_id, error)

    def _start_command(self, cmd: mm.Cmd) -> None:
        if cmd.id in self._seen_commands:
            log.info("uplink.cmd_duplicate", id=str(cmd.id))
            return
        self._seen_commands[cmd.id] = None
        while len(self._seen_commands) > 512:
            self._seen_commands.popitem(last=False)
        if cmd.expired(self.clock.now_ms()):
            self._send_result(cmd.id, "expired: the command is past its expires_ts")
            return
        task = asyncio.get_running_loop().create_task(self._run_command(cmd),
                                                       name=f"cmd-{cmd.name}")
        self._command_tasks.add(task)
        task.add_done_callback(self._command_tasks.discard)

    async def _run_command(self, cmd: mm.Cmd) -> None:
        log.info("uplink.cmd", id=str(cmd.id), name=cmd.name)
        try:
            reply = await self.commands(cmd)
            if reply is not None:
                publish = mm.to_publish(reply)
                if self._client is None or not self._client.is_connected():
                    raise CommandFailed("the connection dropped before the answer was sent")
                self._publish(publish)
        except Exception as exc:  # every failure becomes the command's result
            log.warning("uplink.cmd_failed", id=str(cmd.id), name=cmd.name, error=str(exc))
            self._send_result(cmd.id, str(exc) or type(exc).__name__)
        else:
            self._send_result(cmd.id, None)

    def _send_result(self, command_id: uuid.UUID, error: str | None) -> None:
        if error is not None:
            error = "".join(c if c.isprintable() else " " for c in error)[:400] or "error"
        result = mm.CmdResult(site=self.site_id, id=command_id, ok=error is None, error=error,
                              ts=self.clock.now_ms())
        # The session's own test, not self.connected: a command the broker kept for this
        # session arrives right after the broker accepted the connection.
        if self._client is None or not self._client.is_connected():
            log.warning("uplink.cmd_result_unsent", id=str(command_id))
            return
        try:
            self._publish(mm.to_publish(result))
        except ProtocolError as exc:
            log.error("uplink.cmd_result_invalid", id=str(command_id), error=str(exc))


__all__ = ["AdviceSource", "CommandFailed", "CommandHandler", "LeaseHandler",
           "RestoreHandler", "Uplink", "backoff_delay", "host_stats",
           "readable_command_id"]
