"""One site of the fleet demo: a real edge daemon, its devices simulated on ptys, people.

``python -m onedoor.demo_site SPEC.json`` runs, in one process:

* the simulated hardware, speaking the real bytes on pty pairs: a thermal
  printer, the LED screens, a window-terminal bank (Modbus RTU for halls, the
  vendor frame for village stations) and gpiozero mock pins for the 取号 and
  呼叫帮办 buttons;
* the real :class:`edge.daemon.EdgeDaemon` with the site's TOML config, its
  SQLite journal and its MQTT uplink, on a clock that runs ``speed`` times
  faster than real time, starting at opening time;
* simulated citizens (arrivals at the site's rate: the 取号 button, or the
  kiosk's ``POST /tickets``) and staff (sign in, 下一位, serve for a
  lognormal time, 办结; citizens rate on the pad).

It prints one JSON line of status every second on stdout for the demo
orchestrator (:mod:`onedoor.demo`) and takes incidents as JSON lines on stdin
(``{"do": "paper_out"}``, ``paper_in``, ``help``, ``overtime``, ``stop``).

``python -m onedoor.demo_site SPEC.json SPEC.json ...`` runs several sites in one
process (one event loop; each site has its own daemon, ptys, mock pins and
journal): a whole city's village stations then share a few interpreters. Status
lines carry ``"site"``; an incident with ``"site"`` goes to that site, one
without goes to every site.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import random
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import structlog

log = structlog.get_logger(__name__)
T = TypeVar("T")

TZ = ZoneInfo("Asia/Shanghai")
OPENING_MINUTE = 8 * 60 + 30
HALL_SCREEN = 100  # bus address of the hall's big screen
# Idle staff press 下一位 when the screen shows someone waiting for them, and otherwise
# about this often (real seconds), so that the window shows 无人等候 now and then.
IDLE_NEXT_S = 30.0
CALL_WAIT_S = 5.0  # real seconds staff wait for a called number to show up
SITE_NICENESS = 10  # see yield_cpu()


@dataclass
class ServiceSpec:
    id: str
    prefix: str
    name_zh: str
    name_en: str
    sla_minutes: int
    overtime_minutes: int
    mean_service_minutes: float


@dataclass
class SiteSpec:
    """Everything one demo site needs; written as JSON by the orchestrator."""

    site_id: str
    name: str
    town: str
    kind: str  # city_hall | district | village
    windows: int
    services: list[ServiceSpec]
    citizens_per_hour: float
    mqtt_host: str
    mqtt_port: int
    workdir: str
    speed: float = 20.0
    seed: int = 1
    staff_windows: int = 0  # windows staffed (0: all)
    # Devices as shipped; the orchestrator polls keypads less, and waits longer for every
    # simulated device's answer, when a whole city shares one machine (demo.CITY_VILLAGES).
    terminal_poll_ms: int = 100
    device_timeout_ms: int | None = None  # None: each device's own (see site_toml)
    config_version: str = "demo-1"
    mqtt_protocol: str = "5"  # "3.1.1" for a broker without MQTT 5 (the embedded amqtt)
    progress_url: str = ""  # the central's progress pages, where the tickets' QR codes point

    @classmethod
    def from_json(cls, text: str) -> SiteSpec:
        raw = json.loads(text)
        raw["services"] = [ServiceSpec(**s) for s in raw["services"]]
        return cls(**raw)

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @property
    def terminal_kind(self) -> str:
        return "vendor" if self.kind == "village" else "modbus"

    @property
    def hardware_windows(self) -> int:
        """Windows with a keypad on the RS485 bus; a city hall's others use soft callers."""
        return min(self.windows, 16)


class ScaledClock:
    """Wall time that runs ``speed`` times faster than real time, from today's opening."""

    def __init__(self, speed: float, start_ms: int | None = None) -> None:
        if start_ms is None:
            today = datetime.now(TZ).replace(hour=0, minute=0, second=0, microsecond=0)
            start_ms = int(today.timestamp() * 1000) + OPENING_MINUTE * 60_000
        self.speed = speed
        self._start_ms = start_ms
        self._t0 = time.monotonic()

    def now_ms(self) -> int:
        return self._start_ms + int((time.monotonic() - self._t0) * self.speed * 1000)

    def monotonic(self) -> float:
        return time.monotonic()

    def synced(self) -> bool:
        return True

    def real_seconds(self, simulated_seconds: float) -> float:
        return simulated_seconds / self.speed


def site_toml(spec: SiteSpec, ports: dict[str, str], http_port: int) -> str:
    """The site's edge config, as ops would write it, with the simulators' pty names."""
    lines = [
        f'version = "{spec.config_version}"', "",
        "[site]", f'id = "{spec.site_id}"', f'name = "{spec.name}"', f'town = "{spec.town}"',
        'timezone = "Asia/Shanghai"', "",
        "[hours]", 'open = "08:30"', 'close = "23:59"', 'reset = "03:00"', "",
    ]
    for service in spec.services:
        lines += [
            "[[services]]", f'id = "{service.id}"', f'prefix = "{service.prefix}"',
            f'name_zh = "{service.name_zh}"', f'name_en = "{service.name_en}"',
            f"sla_minutes = {service.sla_minutes}",
            f"overtime_minutes = {service.overtime_minutes}",
            f"mean_minutes = {service.mean_service_minutes}",
            f"visitors_per_day = {spec.citizens_per_hour * 9 / len(spec.services):.1f}", "",
        ]
    ids = [s.id for s in spec.services]
    timeout = [] if spec.device_timeout_ms is None else [f"timeout_ms = {spec.device_timeout_ms}"]
    for number in range(1, spec.windows + 1):
        # 一窗通办: every window serves every service, its own first.
        weights = ", ".join(
            f"{sid} = {3 if i == (number - 1) % len(ids) else 1}" for i, sid in enumerate(ids)
        )
        lines += ["[[windows]]", f"number = {number}", f"services = {{ {weights} }}"]
        if number == 1:
            lines += ["priority = true", "ratio_cap = 2"]
        if number <= spec.hardware_windows:
            lines += [f"terminal = {number}"]
            if spec.kind != "village":
                lines += [f"screen = {number}"]
        lines.append("")
    lines += [
        # Poll intervals as shipped (edge/examples/*.toml, the edge's defaults): a printer's
        # status every 5 s, each terminal every 100 ms unless the orchestrator says otherwise
        # (a whole city on one laptop). The keypads' reply timeout is generous (50 ms
        # shipped): a simulator shares its process with nine more sites.
        "[devices.printer]", f'port = "{ports["printer"]}"', "baud = 115200", "poll_seconds = 5",
        *timeout, "",
        "[devices.terminals]", f'kind = "{spec.terminal_kind}"', f'port = "{ports["terminals"]}"',
        f"baud = {9600 if spec.terminal_kind == 'vendor' else 19200}",
        f"poll_ms = {spec.terminal_poll_ms}", f"timeout_ms = {spec.device_timeout_ms or 150}", "",
    ]
    if "screens" in ports:
        lines += ["[devices.screens]", f'port = "{ports["screens"]}"', "baud = 115200",
                  f"hall = {HALL_SCREEN}", *timeout, ""]
    lines += [
        "[devices.gpio]", 'pin_factory = "mock"', "buzzer_pin = 18", "leds = { paper = 21 }", "",
    ]
    if spec.kind == "village":
        for i, service in enumerate(spec.services[:3]):
            lines += ["[[devices.gpio.ticket_buttons]]", f"pin = {5 + i}",
                      f'service = "{service.id}"', ""]
    lines += [
        "[[devices.gpio.help_buttons]]", 'id = "help-1"', "pin = 19", "led_pin = 26",
        'location = "自助服务区"', "",
        "[mqtt]", f'host = "{spec.mqtt_host}"', f"port = {spec.mqtt_port}",
        f'username = "{spec.site_id}"', 'password = "demo"', "keepalive_seconds = 15",
        f'protocol = "{spec.mqtt_protocol}"', "",
        "[paths]", f'journal = "{spec.workdir}/journal.db"', "",
        "[http]", 'host = "127.0.0.1"', f"port = {http_port}",
        f"window_api = {'true' if spec.windows > spec.hardware_windows else 'false'}", "",
        # Telemetry as shipped (every 30 s; the demo sent it every 5 s).
        "[daemon]", "telemetry_seconds = 30", "outbox_limit = 50000",
        "help_escalation_minutes = 5", "watchdog_seconds = 30", "",
    ]
    if spec.progress_url:
        lines += ["[progress]", f'url = "{spec.progress_url}"', ""]
    return "\n".join(lines)


@dataclass
class SiteCounters:
    issued: int = 0
    served: int = 0
    rated: int = 0
    help_pressed: int = 0
    kiosk_errors: int = 0
    started_real: float = field(default_factory=time.monotonic)


class DemoSite:
    """The simulated hardware and people around one real edge daemon."""

    def __init__(self, spec: SiteSpec) -> None:
        self.spec = spec
        self.workdir = Path(spec.workdir)
        self.rng = random.Random(spec.seed)
        self.clock = ScaledClock(spec.speed)
        self.counters = SiteCounters()
        self.fresh: dict[str, Any] | None = None  # the ticket the orchestrator asked for
        self.stack = contextlib.ExitStack()
        self.overtime_window: int | None = None
        self.stopping = asyncio.Event()
        self.hall_changed = asyncio.Event()  # set by each journaled event
        self.people: list[asyncio.Task[None]] = []  # citizens and staff
        self.last_seq = 0
        self.reporting = False  # serving: its status line goes out every second

    # -- hardware ------------------------------------------------------------

    def start_hardware(self) -> dict[str, str]:
        from gpiozero.pins.mock import MockFactory

        from firmware_protocols.simulators.led_screens import ScreenLayout, VirtualLedScreens
        from firmware_protocols.simulators.modbus_bank import ModbusTerminalBank
        from firmware_protocols.simulators.printer import VirtualPrinter
        from firmware_protocols.simulators.serial_link import PtyLink, SerialTiming
        from firmware_protocols.simulators.terminal_bank import TerminalBank
        from firmware_protocols.simulators.vendor_bank import VendorTerminalBank

        enter = self.stack.enter_context
        printer_link = enter(PtyLink(SerialTiming(115200)))
        self.printer = enter(VirtualPrinter(printer_link))
        bus_link = enter(PtyLink())
        addresses = range(1, self.spec.hardware_windows + 1)
        # Not started here: run() serves it on this process's event loop (no thread per bank).
        self.bank: TerminalBank[Any] = (
            VendorTerminalBank(bus_link, addresses) if self.spec.terminal_kind == "vendor"
            else ModbusTerminalBank(bus_link, addresses))
        ports = {"printer": printer_link.port_name, "terminals": bus_link.port_name}
        self.screens = None
        if self.spec.kind != "village":
            screen_link = enter(PtyLink(SerialTiming(115200)))
            layouts = {address: ScreenLayout() for address in addresses}
            layouts[HALL_SCREEN] = ScreenLayout(lines=5, columns=24)  # 3 calls + counts + notice
            self.screens = enter(VirtualLedScreens(screen_link, layouts))
            ports["screens"] = screen_link.port_name
        self.pins = MockFactory()
        return ports

    # -- people --------------------------------------------------------------

    async def press_pin(self, pin: int, hold_s: float = 0.1) -> None:
        mock = self.pins.pin(pin)
        mock.drive_low()
        await asyncio.sleep(hold_s)
        mock.drive_high()

    async def citizens(self) -> None:
        """Poisson arrivals at the site's rate, in simulated time."""
        rate_per_real_s = self.spec.citizens_per_hour / 3600 * self.spec.speed
        while True:
            await asyncio.sleep(self.rng.expovariate(rate_per_real_s))
            service = self.rng.choice(self.spec.services)
            if self.spec.kind == "village":
                index = self.spec.services.index(service)
                await self.press_pin(5 + min(index, 2))
                self.counters.issued += 1
            else:
                klass = "priority" if self.rng.random() < 0.1 else "normal"
                ok = await asyncio.to_thread(
                    self._kiosk, {"service": service.id, "class": klass, "print": True}
                )
                self.counters.issued += ok

    def _kiosk(self, body: dict[str, Any]) -> int:
        return 0 if self._kiosk_answer(body) is None else 1

    def _kiosk_answer(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """The kiosk API's answer to a ticket request; None when refused or unreachable."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.http_port}/tickets", data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"}, method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                answer: dict[str, Any] = json.load(response)
                return answer if response.status == 201 else None
        except (OSError, ValueError):
            self.counters.kiosk_errors += 1
            return None

    def _soft_caller(self, window: int, action: str, body: dict[str, Any] | None = None) -> None:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.http_port}/windows/{window}/{action}",
            data=json.dumps(body or {}).encode(), headers={"Content-Type": "application/json"},
            method="POST",
        )
        with contextlib.suppress(OSError), urllib.request.urlopen(request, timeout=10):
            pass

    async def key(self, window: int, *keys: Any) -> None:
        for key in keys:
            self.bank.press(window, key)
            await asyncio.sleep(0.05)

    async def staff(self, window: int) -> None:
        """Sign in, then 下一位 → serve → 办结 (→ the citizen rates), all day."""
        from firmware_protocols.terminal_events import Key

        hardware = window <= self.spec.hardware_windows
        staff_id = f"{window:02d}"
        if hardware:
            digits = [Key(Key.DIGIT_0 + int(d)) for d in staff_id]
            await self.key(window, *digits, Key.SIGN_IN)
        else:
            await asyncio.to_thread(self._soft_caller, window, "sign_in", {"staff": staff_id})
        await asyncio.sleep(self.rng.uniform(0.5, 2.0))
        while True:
            await self._work_for(window)
            if hardware:
                await self.key(window, Key.NEXT)
            else:
                await asyncio.to_thread(self._soft_caller, window, "next")
            current = await self._called(window)
            if current is None:
                continue
            service = self._service_of(current)
            minutes = self.rng.lognormvariate(math.log(service.mean_service_minutes), 0.5)
            if self.overtime_window == window:
                minutes = service.overtime_minutes * 1.5  # the scripted overtime incident
                self.overtime_window = None
            await asyncio.sleep(self.clock.real_seconds(minutes * 60))
            if hardware:
                await self.key(window, Key.FINISH)
            else:
                await asyncio.to_thread(self._soft_caller, window, "finish")
            await self._finished(window, current)
            self.counters.served += 1
            if self.rng.random() < 0.8:
                value = self.rng.choice((5, 5, 5, 5, 4, 4, 3, 2))
                await asyncio.sleep(0.5)
                if hardware:
                    self.bank.rate(window, value)
                else:
                    await asyncio.to_thread(self._soft_caller, window, "rate", {"value": value})
                self.counters.rated += 1

    async def _work_for(self, window: int) -> None:
        """Return when someone waits for ``window``, or after about IDLE_NEXT_S.

        Staff watch the hall screen rather than press 下一位 every few seconds: an idle
        keypad loop was a bus exchange, a journaled input and a 无人等候 text per press,
        which a city of idle village windows paid for in CPU and showed nothing new.
        """
        def waiting() -> object | None:
            hall = self.daemon.hall
            return None if hall is None else hall.dispatcher.peek(window, self.clock.now_ms())

        await self._watch(waiting, self.rng.uniform(0.5, 1.5) * IDLE_NEXT_S)

    async def _called(self, window: int) -> str | None:
        """The ticket ``window`` holds once its 下一位 has been handled (None: nobody).

        Staff look at their window's display, not at a clock: a key press reaches the
        daemon with the next poll of the keypad, which on a loaded machine takes longer.
        """
        return await self._watch(lambda: self._current(window), CALL_WAIT_S)

    async def _finished(self, window: int, ticket: str) -> None:
        """Wait until ``window`` no longer holds ``ticket`` (its 办结 has been handled).

        Otherwise, with a slow poll, the rating and the next 下一位 would come before
        it, and a 下一位 would find the finished ticket still there and serve it again.
        """
        await self._watch(lambda: True if self._current(window) != ticket else None,
                          CALL_WAIT_S)

    async def _watch(self, seen: Callable[[], T | None], seconds: float) -> T | None:
        """``seen()`` once it is not None, looked at again after each journaled event;
        None when that has not happened within ``seconds``."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + seconds
        while (found := seen()) is None:
            left = give_up - loop.time()
            if left <= 0:
                return None
            self.hall_changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await self.hall_changed.wait()
        return found

    @property
    def http_port(self) -> int:
        """The kiosk API's port, as the daemon bound it."""
        assert self.daemon.http is not None
        return self.daemon.http.port

    def _current(self, window: int) -> str | None:
        hall = self.daemon.hall
        if hall is None:
            return None
        current: str | None = hall.dispatcher.window(window).current
        return current

    def _service_of(self, number: str) -> ServiceSpec:
        hall = self.daemon.hall
        assert hall is not None
        service_id = hall.dispatcher.ticket(number).service_id
        return next(s for s in self.spec.services if s.id == service_id)

    # -- control and status ----------------------------------------------------

    def send_people_home(self) -> None:
        """No more citizens and key presses: the hall goes quiet, the daemon runs on."""
        for task in self.people:
            task.cancel()

    def incident(self, command: dict[str, Any]) -> None:
        what = command.get("do")
        if what == "quiet":  # the orchestrator drains the journals before it stops us
            self.send_people_home()
        elif what == "paper_out":
            self.printer.run_out_of_paper()
        elif what == "paper_in":
            self.printer.load_paper()
        elif what == "help":
            self.counters.help_pressed += 1
            asyncio.get_running_loop().create_task(self.press_pin(19))
        elif what == "overtime":
            self.overtime_window = 1
        elif what == "stop":
            self.stopping.set()
        elif what == "ticket":  # a fresh ticket for the orchestrator to show its page
            asyncio.get_running_loop().create_task(self.fresh_ticket())
        else:
            log.warning("demo_site.unknown_incident", command=command)

    async def fresh_ticket(self) -> None:
        """Take a ticket at the kiosk and report its number and progress page."""
        service = self.spec.services[0]
        answer = await asyncio.to_thread(self._kiosk_answer, {"service": service.id,
                                                              "print": True})
        if answer is not None:
            self.counters.issued += 1
            self.fresh = {"number": answer.get("number"), "url": answer.get("progress_url")}

    def status(self) -> dict[str, Any]:
        uplink = self.daemon.uplink
        return {
            "fresh_ticket": self.fresh,
            "site": self.spec.site_id,
            "t": round(time.monotonic() - self.counters.started_real, 1),
            "sim_time": datetime.fromtimestamp(self.clock.now_ms() / 1000, TZ).strftime("%H:%M"),
            "last_seq": self.last_seq,
            "acked_seq": self.acked_seq,
            "online": bool(uplink and uplink.connected and not self.stopping.is_set()),
            "printed": len(self.printer.tickets),
            **{k: v for k, v in asdict(self.counters).items() if k != "started_real"},
        }

    @property
    def acked_seq(self) -> int:
        hall = self.daemon.hall
        if hall is None or self.stopping.is_set():
            return self._acked_seq
        self._acked_seq: int = hall.journal.acked_seq
        return self._acked_seq

    def save_pictures(self, directory: Path) -> None:
        from firmware_protocols.simulators.led_screens import render_screen
        from firmware_protocols.simulators.printer import render_ticket

        directory.mkdir(parents=True, exist_ok=True)
        tickets = self.printer.tickets
        if tickets:
            render_ticket(tickets[-1]).save(directory / f"{self.spec.site_id}-ticket.png")
        if self.screens is not None:
            render_screen(self.screens.screen(HALL_SCREEN)).save(
                directory / f"{self.spec.site_id}-hall-screen.png")

    # -- main ------------------------------------------------------------------

    async def run(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        ports = self.start_hardware()
        try:
            async with self.bank.serving():  # the terminal bank, on this loop
                await self._run(ports)
        finally:
            self.stack.close()

    async def _run(self, ports: dict[str, str]) -> None:
        from edge.daemon import EdgeDaemon
        from edge.devices_factory import build_devices

        config_path = self.workdir / "edge.toml"
        # Port 0: the daemon binds a free port itself (see http_port). A port picked here
        # and bound later can meanwhile become some connection's ephemeral port: with a
        # city of sites connecting, the kiosk API then failed with "address in use".
        config_path.write_text(site_toml(self.spec, ports, 0), encoding="utf-8")
        self.daemon = EdgeDaemon(
            config_path, clock=self.clock, install_signals=False,
            device_factory=lambda config, inputs: build_devices(
                config, inputs, pin_factory=self.pins),
        )
        daemon_task = asyncio.create_task(self.daemon.run(), name="daemon")
        await asyncio.wait_for(self.daemon.ready.wait(), 30)
        assert self.daemon.hall is not None
        self.last_seq = self.daemon.hall.journal.last_seq
        self._acked_seq = self.daemon.hall.journal.acked_seq

        def follow(event: Any) -> None:
            self.last_seq = max(self.last_seq, event.seq)
            self.hall_changed.set()

        self.daemon.hall.subscribe(follow)
        staffed = self.spec.staff_windows or self.spec.windows
        self.people.append(asyncio.create_task(self.citizens(), name="citizens"))
        self.reporting = True  # report_status() includes this site from now on
        self.people += [asyncio.create_task(self.staff(w), name=f"staff-{w}")
                        for w in range(1, staffed + 1)]
        stop_waiter = asyncio.create_task(self.stopping.wait())
        await asyncio.wait([daemon_task, stop_waiter], return_when=asyncio.FIRST_COMPLETED)
        self.reporting = False
        self.send_people_home()
        _ = self.acked_seq  # last reading before the journal closes
        self.stopping.set()
        self.daemon.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await daemon_task
        print(json.dumps({**self.status(), "final": True}, ensure_ascii=False), flush=True)
        self.save_pictures(self.workdir / "pictures")


async def control(sites: dict[str, DemoSite]) -> None:
    """Incidents from the orchestrator on stdin; its end (the orchestrator gone) stops all."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        try:
            command = json.loads(line)
        except ValueError:
            continue
        target = command.get("site") if isinstance(command, dict) else None
        for site_id, site in sites.items():
            if target is None or target == site_id:
                site.incident(command)
    for site in sites.values():
        site.stopping.set()


async def report_status(sites: list[DemoSite]) -> None:
    """Every second, one status line per serving site, in one write: the orchestrator
    wakes once per process, not once per site (ten village sites share a process)."""
    while True:
        lines = [json.dumps(site.status(), ensure_ascii=False) + "\n"
                 for site in sites if site.reporting]
        if lines:
            sys.stdout.write("".join(lines))
            sys.stdout.flush()
        await asyncio.sleep(1.0)


async def run_sites(sites: list[DemoSite]) -> None:
    """Every site of this process on one event loop, until each has stopped."""
    helpers = [asyncio.create_task(control({s.spec.site_id: s for s in sites})),
               asyncio.create_task(report_status(sites))]
    try:
        await asyncio.gather(*(site.run() for site in sites))
    finally:
        for task in helpers:
            task.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)


def yield_cpu() -> None:
    """Let the broker and the central come first on a machine short of cores.

    The simulated sites are the load; the central and the broker are what the demo
    shows. Each site process leads its own session (Ctrl-C is the orchestrator's), and
    with the kernel's autogroup scheduling (Debian's default) CPU is shared between
    sessions, not processes: a process's own nice value would only rank it inside its
    session. So the session's autogroup is niced too, where the kernel has them.
    """
    os.nice(SITE_NICENESS)
    with contextlib.suppress(OSError):  # no autogroups: the process nice is enough
        Path("/proc/self/autogroup").write_text(f"{SITE_NICENESS}\n", encoding="ascii")


def main(argv: list[str] | None = None) -> int:
    from onedoor import log as onedoor_log

    args = sys.argv[1:] if argv is None else argv
    specs = [SiteSpec.from_json(Path(arg).read_text(encoding="utf-8")) for arg in args]
    onedoor_log.configure("warning")
    yield_cpu()
    asyncio.run(run_sites([DemoSite(spec) for spec in specs]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
