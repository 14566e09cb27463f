"""``onedoor loadgen``: many sites' MQTT traffic from a few processes, to load the central.

Each simulated site behaves like an edge daemon on the wire: its own MQTT
connection with a Will, a retained ``state``, business ``event`` messages with
a gap-free ``seq`` kept in an outbox until the central's ``ack`` covers them
(resent after a reconnect), and ``telemetry`` every interval. Citizens arrive
at the rate of a village station by default (tens a day: docs/ARCHITECTURE.md), each
producing the events of a ticket's life (issued, called, serving, done and,
for most, a rating).

The clients run on one asyncio loop per process through paho's external-loop
hooks (``on_socket_open`` & co.), so thousands of connections cost one
thread. The figure of merit is end to end: the delay from an event's publish
to the ack that covers it (the central has committed it), and whether the
unacknowledged backlog grows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import random
import resource
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from firmware_protocols import mqtt_messages as msgs
from firmware_protocols.mqtt_topics import ack_topic

SOFTWARE = "loadgen-1"
DAY_SECONDS = 9 * 3600  # opening hours of a village station
# As the edge's uplink: when the ack has not moved for this long the outbox is sent again (the
# central may have missed it). Resending on age alone would multiply the load of a slow central.
RESEND_AFTER_S = 30.0


@dataclass
class LoadProfile:
    """Rates per site. Defaults: a village station (60 citizens a day, telemetry each minute)."""

    citizens_per_day: float = 60.0
    telemetry_interval_s: float = 60.0
    speed: float = 1.0  # multiplies every rate: find the breaking point by raising it
    resend_after_s: float = RESEND_AFTER_S  # no ack progress this long: resend the outbox

    @property
    def citizen_interval_s(self) -> float:
        return DAY_SECONDS / (self.citizens_per_day * self.speed)


@dataclass
class SiteCounters:
    produced: int = 0
    acked: int = 0
    resent: int = 0
    reconnects: int = 0  # connections after the first (each resends the outbox)
    # Acks above anything this run produced: the central holds these seqs from an earlier
    # run under the same site id (a test set-up error: an edge never reuses a seq).
    acks_beyond_produced: int = 0
    ack_latency_ms: list[float] = field(default_factory=list)
    ack_at: list[float] = field(default_factory=list)
    """When each ack of ``ack_latency_ms`` came (loop time): latency over the run."""


class SimulatedSite:
    """One site's wire behaviour; the clock is passed in, the connection is owned here."""

    def __init__(self, site_id: str, session: int, rng: random.Random, now: Callable[[], float],
                 ) -> None:
        self.site_id = site_id
        self.session = session
        self.rng = rng
        self.now = now
        self.seq = 0
        self.ticket_counter = 0
        self.outbox: dict[int, tuple[msgs.Publish, float]] = {}  # seq -> (publish, first sent)
        self.last_resend = 0.0
        self.last_progress = 0.0  # when the ack last moved (or the connection was made)
        self.acked_seq = 0
        self.counters = SiteCounters()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"loadgen-{site_id}", clean_session=False
        )
        self.client.will_set(**_publish_kwargs(msgs.will_for(self._state("online"))))
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.connected = False

    def _state(self, status: Literal["online", "offline"]) -> msgs.State:
        return msgs.State(
            site=self.site_id, status=status, lwt=False, boot_id="loadgen", session=self.session,
            software=SOFTWARE, config="loadgen", ts=int(time.time() * 1000), clock_synced=True,
        )

    def _on_connect(self, client: mqtt.Client, _userdata: object, _flags: object,
                    reason: Any, _props: object) -> None:
        if reason.is_failure:
            return
        if self.last_progress:
            self.counters.reconnects += 1
        self.connected = True
        client.subscribe(ack_topic(self.site_id), qos=1)
        self._send(msgs.to_publish(self._state("online")))
        for seq in sorted(self.outbox):  # store-and-forward: everything not yet acked
            self._send(self.outbox[seq][0])
            self.counters.resent += 1
        self.last_resend = self.last_progress = self.now()

    def _on_message(self, _client: mqtt.Client, _userdata: object,
                    message: mqtt.MQTTMessage) -> None:
        ack = msgs.decode(msgs.Kind.ACK, message.payload, site_id=self.site_id)
        assert isinstance(ack, msgs.Ack)
        now = self.now()
        if ack.seq > self.seq:
            self.counters.acks_beyond_produced += 1
        for seq in range(self.acked_seq + 1, ack.seq + 1):
            entry = self.outbox.pop(seq, None)
            if entry is not None:
                self.counters.acked += 1
                self.counters.ack_latency_ms.append((now - entry[1]) * 1000)
                self.counters.ack_at.append(now)
        if ack.seq > self.acked_seq:
            self.last_progress = now
        self.acked_seq = max(self.acked_seq, ack.seq)

    def resend_unacked(self, quiet_s: float) -> None:
        """Resend everything above the ack when it has not moved for ``quiet_s``.

        Exactly the edge's rule (``edge.uplink``): the whole outbox, not only its old
        entries, since the ack can be stuck behind a recent event the central missed.
        """
        now = self.now()
        quiet_since = max(self.last_progress, self.last_resend)
        if not self.connected or not self.outbox or now - quiet_since < quiet_s:
            return
        self.last_resend = now
        for seq in sorted(self.outbox):
            self._send(self.outbox[seq][0])
            self.counters.resent += 1

    def _send(self, publish: msgs.Publish) -> None:
        if self.connected:
            self.client.publish(**_publish_kwargs(publish))

    def _event(self, body: Any) -> None:
        self.seq += 1
        event = msgs.Event(
            site=self.site_id, seq=self.seq, id=uuid.uuid4(), ts=int(time.time() * 1000),
            clock_synced=True, body=body,
        )
        publish = msgs.to_publish(event)
        if not self.outbox:  # the quiet period before a resend starts now, not at the last ack
            self.last_progress = self.now()
        self.outbox[self.seq] = (publish, self.now())
        self.counters.produced += 1
        self._send(publish)

    def citizen(self) -> None:
        """One ticket's whole life (compressed: the rate is what matters to the central)."""
        self.ticket_counter += 1
        ticket = f"A{self.ticket_counter:03d}"
        window = self.rng.randint(1, 3)
        self._event(msgs.TicketIssued(
            ticket=ticket, service="shebao", ticket_class="normal", booked_ts=None,
            channel="button", people_ahead=self.rng.randint(0, 5), wait=None,
        ))
        self._event(msgs.TicketCalled(ticket=ticket, window=window))
        self._event(msgs.TicketServing(ticket=ticket, window=window))
        self._event(msgs.TicketDone(ticket=ticket, window=window,
                                    served_s=self.rng.randint(120, 900)))
        if self.rng.random() < 0.7:
            self._event(msgs.RatingGiven(ticket=ticket, window=window, staff="clerk1",
                                         value=self.rng.choice((5, 5, 5, 4, 3))))

    def telemetry(self) -> None:
        oldest = min(self.outbox) if self.outbox else None
        self._send(msgs.to_publish(msgs.Telemetry(
            site=self.site_id, ts=int(time.time() * 1000), clock_synced=True,
            queues=[msgs.QueueStat(service="shebao", waiting=self.rng.randint(0, 4),
                                   oldest_wait_s=self.rng.randint(0, 600), wait=None)],
            windows=[msgs.WindowStat(window=1, state="open", ticket=None)],
            devices=[msgs.DeviceStat(device="printer", kind="printer", status="ok", detail=None)],
            host=msgs.HostStat(cpu_temp_c=48.0, load1=0.2, mem_used_pct=31.0,
                               disk_used_pct=12.0, uptime_s=3600),
            outbox=msgs.OutboxStat(depth=len(self.outbox), oldest_unacked_seq=oldest,
                                   last_seq=self.seq),
        )))


def _publish_kwargs(publish: msgs.Publish) -> dict[str, Any]:
    return {"topic": publish.topic, "payload": publish.payload, "qos": publish.qos,
            "retain": publish.retain}


def _attach(loop: asyncio.AbstractEventLoop, client: mqtt.Client) -> None:
    """Drive a paho client from the asyncio loop (paho's documented external-loop hooks)."""

    def on_open(c: mqtt.Client, _u: object, sock: Any) -> None:
        loop.add_reader(sock, c.loop_read)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 16)

    def on_close(_c: mqtt.Client, _u: object, sock: Any) -> None:
        loop.remove_reader(sock)

    def on_register_write(c: mqtt.Client, _u: object, sock: Any) -> None:
        loop.add_writer(sock, c.loop_write)

    def on_unregister_write(_c: mqtt.Client, _u: object, sock: Any) -> None:
        loop.remove_writer(sock)

    client.on_socket_open = on_open
    client.on_socket_close = on_close
    client.on_socket_register_write = on_register_write
    client.on_socket_unregister_write = on_unregister_write


@dataclass
class LoadResult:
    sites: int
    duration_s: float
    produced: int
    acked: int
    unacked_at_end: int
    resent: int
    reconnects: int
    acks_beyond_produced: int
    ack_p50_ms: float | None
    ack_p99_ms: float | None
    backlog_samples: list[int]
    ack_windows: list[dict[str, Any]] = field(default_factory=list)
    """Per tenth of the run: acks, ack p50 and p99 (ms): is the latency flat over time?"""

    @property
    def events_per_s(self) -> float:
        return self.produced / self.duration_s if self.duration_s else 0.0


def _percentile(values: list[float], pct: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(pct / 100 * len(ordered)))]


async def run_sites(host: str, port: int, site_ids: list[str], profile: LoadProfile,
                    duration_s: float, seed: int = 1, drain_s: float = 10.0) -> LoadResult:
    """Run the given sites for ``duration_s``, then wait up to ``drain_s`` for the last acks."""
    loop = asyncio.get_running_loop()
    rng = random.Random(seed)
    sites = [SimulatedSite(sid, session=int(time.time()), rng=random.Random(rng.random()),
                           now=loop.time) for sid in site_ids]
    stopping = False

    def connect(site: SimulatedSite) -> None:
        if stopping:
            return
        try:
            site.client.reconnect()
        except OSError:  # broker down: try again, as the edge's backoff does
            loop.call_later(rng.uniform(1.0, 3.0), connect, site)

    def on_disconnect(site: SimulatedSite) -> Callable[..., None]:
        def handler(*_args: object) -> None:
            site.connected = False
            loop.call_later(rng.uniform(0.5, 2.0), connect, site)
        return handler

    for site in sites:
        _attach(loop, site.client)
        site.client.on_disconnect = on_disconnect(site)
        site.client.connect_async(host, port, keepalive=60)
        connect(site)
        await asyncio.sleep(0)  # let the CONNECTs go out gradually

    async def misc() -> None:
        while True:
            for site in sites:
                site.client.loop_misc()
                site.resend_unacked(profile.resend_after_s)
            await asyncio.sleep(1)

    async def traffic(site: SimulatedSite) -> None:
        next_telemetry = loop.time() + rng.uniform(0, profile.telemetry_interval_s)
        next_citizen = loop.time() + rng.expovariate(1 / profile.citizen_interval_s)
        while True:
            wake = min(next_telemetry, next_citizen)
            await asyncio.sleep(max(0.0, wake - loop.time()))
            if loop.time() >= next_citizen:
                site.citizen()
                next_citizen += rng.expovariate(1 / profile.citizen_interval_s)
            if loop.time() >= next_telemetry:
                site.telemetry()
                next_telemetry += profile.telemetry_interval_s / profile.speed

    backlog: list[int] = []

    async def sample_backlog() -> None:
        while True:
            await asyncio.sleep(max(1.0, duration_s / 20))
            backlog.append(sum(len(site.outbox) for site in sites))

    helpers = [asyncio.create_task(misc()), asyncio.create_task(sample_backlog())]
    generators = [asyncio.create_task(traffic(site)) for site in sites]
    started = loop.time()
    await asyncio.sleep(duration_s)
    for task in generators:
        task.cancel()
    elapsed = loop.time() - started
    deadline = loop.time() + drain_s
    while loop.time() < deadline and any(site.outbox for site in sites):
        await asyncio.sleep(0.2)
    for task in helpers:
        task.cancel()
    stopping = True
    for site in sites:
        site.client.disconnect()
    await asyncio.sleep(0.1)
    latencies = [v for site in sites for v in site.counters.ack_latency_ms]
    timed = sorted((at, ms) for site in sites
                   for at, ms in zip(site.counters.ack_at, site.counters.ack_latency_ms,
                                     strict=True))  # fmt: skip
    return LoadResult(
        sites=len(sites), duration_s=elapsed,
        produced=sum(s.counters.produced for s in sites),
        acked=sum(s.counters.acked for s in sites),
        unacked_at_end=sum(len(s.outbox) for s in sites),
        resent=sum(s.counters.resent for s in sites),
        reconnects=sum(s.counters.reconnects for s in sites),
        acks_beyond_produced=sum(s.counters.acks_beyond_produced for s in sites),
        ack_p50_ms=_percentile(latencies, 50), ack_p99_ms=_percentile(latencies, 99),
        backlog_samples=backlog,
        ack_windows=ack_windows(timed, started, duration_s),
    )


def ack_windows(timed: list[tuple[float, float]], started: float, duration_s: float,
                parts: int = 10) -> list[dict[str, Any]]:  # fmt: skip
    """Ack latency per tenth of the run (acks during the drain count in the last tenth)."""
    width = duration_s / parts
    buckets: list[list[float]] = [[] for _ in range(parts)]
    for at, ms in timed:
        buckets[min(parts - 1, max(0, int((at - started) / width)))].append(ms)
    return [{"from_s": round(n * width), "acks": len(b), "p50_ms": _percentile(b, 50),
             "p99_ms": _percentile(b, 99)} for n, b in enumerate(buckets)]  # fmt: skip


def _worker(args: tuple[str, int, list[str], LoadProfile, float, int]) -> dict[str, Any]:
    host, port, site_ids, profile, duration_s, seed = args
    # Drain past one resend period, so that an event the central missed gets its second chance.
    drain_s = profile.resend_after_s + 15.0
    result = asyncio.run(run_sites(host, port, site_ids, profile, duration_s, seed, drain_s))
    return result.__dict__


def site_ids(count: int, prefix: str = "load") -> list[str]:
    return [f"{prefix}-{i:05d}" for i in range(1, count + 1)]


def run(host: str, port: int | list[int], sites: int, profile: LoadProfile, duration_s: float,
        processes: int = 1, prefix: str = "load") -> dict[str, Any]:
    """Split the sites over processes; sum their results.

    With several ``port`` values (brokers on ``host``), process ``i`` connects its
    sites to ``port[i % len(port)]``. Each run starts every site at seq 1: runs
    against the same central need their own ``prefix`` (site ids), as an edge
    never reuses a seq.
    """
    ports = port if isinstance(port, list) else [port]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # one socket per site
    ids = site_ids(sites, prefix)
    chunks = [ids[i::processes] for i in range(processes)]
    jobs = [(host, ports[seed % len(ports)], chunk, profile, duration_s, seed)
            for seed, chunk in enumerate(chunks)]  # fmt: skip
    if processes == 1:
        parts = [_worker(jobs[0])]
    else:
        with multiprocessing.get_context("spawn").Pool(processes) as pool:
            parts = pool.map(_worker, jobs)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    total: dict[str, Any] = {"sites": sites, "processes": processes}
    for key in ("produced", "acked", "unacked_at_end", "resent", "reconnects",
                "acks_beyond_produced"):
        total[key] = sum(part[key] for part in parts)
    total["duration_s"] = max(part["duration_s"] for part in parts)
    total["events_per_s"] = round(total["produced"] / total["duration_s"], 1)
    total["ack_p50_ms_worst_process"] = max((p["ack_p50_ms"] or 0) for p in parts)
    total["ack_p99_ms_worst_process"] = max((p["ack_p99_ms"] or 0) for p in parts)
    total["backlog_samples"] = [sum(s) for s in zip(*(p["backlog_samples"] for p in parts),
                                                    strict=False)]
    total["ack_windows_worst_process"] = [
        {"from_s": windows[0]["from_s"], "acks": sum(w["acks"] for w in windows),
         "p50_ms": max((w["p50_ms"] or 0) for w in windows),
         "p99_ms": max((w["p99_ms"] or 0) for w in windows)}
        for windows in zip(*(p["ack_windows"] for p in parts), strict=True)
    ]  # fmt: skip
    return total


def _cmd_loadgen(args: argparse.Namespace) -> int:
    profile = LoadProfile(citizens_per_day=args.citizens_per_day,
                          telemetry_interval_s=args.telemetry_interval, speed=args.speed,
                          resend_after_s=args.resend_after)
    ports = [int(p) for p in args.ports.split(",")] if args.ports else [args.port]
    result = run(args.host, ports, args.sites, profile, args.duration, args.processes,
                 args.prefix)
    print(json.dumps(result, ensure_ascii=False))
    return 0 if result["unacked_at_end"] == 0 else 1


def register_cli(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("loadgen", help="负载生成 / "
                                            "simulate many sites' MQTT traffic against a central")
    parser.add_argument("--sites", type=int, default=277)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--ports", default="",
                        help="several brokers on HOST, comma-separated: process i uses the i-th "
                             "(round robin); overrides --port")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of traffic")
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--prefix", default="load",
                        help="site ids are PREFIX-00001...; a fresh prefix per run on one central")
    parser.add_argument("--speed", type=float, default=1.0, help="multiply every rate")
    parser.add_argument("--citizens-per-day", type=float, default=60.0)
    parser.add_argument("--telemetry-interval", type=float, default=60.0)
    parser.add_argument("--resend-after", type=float, default=RESEND_AFTER_S,
                        help="resend the outbox when the ack has not moved for this long "
                             "(the edge's 30 s; shorter in tests)")
    parser.set_defaults(func=_cmd_loadgen)
