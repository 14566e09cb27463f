"""Benchmarks of the codecs and the simulators (``onedoor bench --only protocols``).

Each ``bench_*`` function returns a flat dict of figures; :func:`run` merges
every function listed in :data:`BENCHES`, prefixing its figures with the
function's topic. Add a device family by writing its ``bench_<topic>`` here
and listing it in :data:`BENCHES`.

Figures are rates measured on this machine (best of three timed rounds) or
byte counts; "wire" figures are computed from byte counts and the baud rate.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Final

from firmware_protocols import escpos, led

_ROUNDS: Final = 3


def _rate(operation: Callable[[], object], repeat: int) -> float:
    """Operations per second: the best of a few rounds of ``repeat`` calls."""
    best = float("inf")
    for _ in range(_ROUNDS):
        started = time.perf_counter()
        for _ in range(repeat):
            operation()
        best = min(best, time.perf_counter() - started)
    return repeat / best


def _ticket_events(large: bool) -> list[escpos.EscPosEvent]:
    """A queue ticket's events, shaped as the edge lays them out (edge.devices.ticket builds
    the real ones; the codec package does not import the edge)."""
    big, body = (escpos.CharSize(2, 2), escpos.CharSize(2, 2)) if large else (
        escpos.CharSize(1, 2), escpos.NORMAL_SIZE)
    centre = escpos.Align.CENTER
    lines = ["前面17人", "约等23分钟", "取号 09:05"] if large else [
        "您前面还有17人等候", "预计等候约23分钟（最长约41分钟）", "取号时间：2026-11-23 09:05:07"]
    return [
        escpos.Init(), escpos.ChineseMode(True),
        escpos.Text("中山市政务服务中心", big, bold=True, align=centre),
        escpos.Text("综合受理", body, align=centre), escpos.Text("", align=centre),
        escpos.Text("A012", escpos.CharSize(6, 6) if large else escpos.CharSize(4, 4),
                    bold=True, align=centre),
        escpos.Text("", align=centre),
        *(escpos.Text(line, body, align=centre) for line in lines),
        escpos.QrCode(b"https://q.example.cn/t/20261123-A012", module_size=8 if large else 6),
        escpos.Text("扫码看进度" if large else "微信扫码查看排队进度", body, align=centre),
        escpos.Text("请留意叫号，过号需重新取号", body, align=centre),
        escpos.Feed(4), escpos.Cut(),
    ]


def bench_escpos() -> dict[str, Any]:
    """Tickets encoded and decoded per second, ticket size, status parsing, PNG rendering."""
    from firmware_protocols.simulators.printer import assemble, render_ticket

    normal_events, large_events = _ticket_events(False), _ticket_events(True)
    normal = escpos.encode_all(normal_events)
    large = escpos.encode_all(large_events)

    def decode() -> None:
        escpos.decode_all(normal)

    def status() -> None:
        for request, reply in ((1, b"\x12"), (2, b"\x12"), (4, b"\x1e")):
            escpos.parse_status_reply(request, reply)

    ticket = assemble(escpos.decode_all(normal))[0]
    render_ticket(ticket)  # load the font once, outside the timing
    return {
        "tickets encoded/s (normal)": round(_rate(lambda: escpos.encode_all(normal_events), 2000)),
        "tickets encoded/s (large print)": round(
            _rate(lambda: escpos.encode_all(large_events), 2000)
        ),
        "tickets decoded/s (normal)": round(_rate(decode, 1000)),
        "ticket bytes (normal / large print)": f"{len(normal)} / {len(large)}",
        "ticket wire time at 9600 baud 8N1, ms": round(len(normal) * 10 / 9600 * 1000),
        "health checks parsed/s (3 replies each)": round(_rate(status, 20000)),
        "ticket PNG renders/s": round(_rate(lambda: render_ticket(ticket), 20), 1),
    }


def bench_led() -> dict[str, Any]:
    """LED frames encoded / decoded per second, and ACKed round trips over a pty."""
    texts = [f"请A{n:03d}到{n % 30 + 1}号窗口" for n in range(500)]
    events = [led.ShowText(n % 30 + 1, n & 0xFF, text) for n, text in enumerate(texts)]
    stream = b"".join(led.encode(event) for event in events)

    def encode_all() -> None:
        for event in events:
            led.encode(event)

    def decode_stream() -> None:
        decoder = led.LedDecoder()
        decoder.receive_data(stream)
        while decoder.next_event() is not led.NEED_DATA:
            pass

    encode_rate = _rate(encode_all, 20) * len(events)
    decode_rate = _rate(decode_stream, 20) * len(events)
    frame_bytes = len(stream) // len(events)
    return {
        "ShowText frames encoded/s": round(encode_rate),
        "ShowText frames decoded/s (one 500-frame stream)": round(decode_rate),
        "encode + decode round trips/s": round(1 / (1 / encode_rate + 1 / decode_rate)),
        "ShowText frame bytes (12-character text)": frame_bytes,
        "frames + ACKs a 9600-baud bus carries/s": round(9600 / 11 / (frame_bytes + 9), 1),
        **_led_pty_round_trips(),
    }


def _led_pty_round_trips(count: int = 300) -> dict[str, Any]:
    """ShowText -> ACK through a real pty and pyserial, without and with honest timing."""
    import serial

    from firmware_protocols.simulators.led_screens import VirtualLedScreens
    from firmware_protocols.simulators.serial_link import PtyLink, SerialTiming

    figures: dict[str, Any] = {}
    for label, timing in (("pty, no line timing", None), ("115200 baud", SerialTiming(115200))):
        with (
            PtyLink(timing) as link,
            VirtualLedScreens(link, [1]) as screens,
            serial.Serial(screens.port, 115200, timeout=2.0) as port,
        ):
            started = time.perf_counter()
            for seq in range(count):
                frame = led.encode(led.ShowText(1, seq & 0xFF, "请A012到1号窗口"))
                port.write(frame)
                reply = port.read(9)
                if led.decode_all(reply) != [led.Ack(1, seq & 0xFF)]:
                    raise RuntimeError(f"unexpected reply {reply!r}")
            elapsed = time.perf_counter() - started
        figures[f"acked frames/s over {label}"] = round(count / elapsed)
    return figures


# --- window terminals (Modbus register map and vendor frame) ----------------------------------

_HALL_WINDOWS: Final = 33  # Zhongshan's comprehensive windows: one bus of terminals
_CYCLES: Final = 3


def _cycle_ms(timings: list[float]) -> str:
    return f"{min(timings) * 1000:.0f} / {sum(timings) / len(timings) * 1000:.0f}"


def bench_modbus_terminal() -> dict[str, Any]:
    """Register-map codec rates, and poll cycles of a 33-terminal bank at 19200 baud.

    The cycle is measured with a real pymodbus RTU client against the simulated
    bank with line timing on (11 bits a character, t3.5 gaps): one FC04 poll
    per terminal, plus one FC16 ack per terminal that had inputs.
    """
    from pymodbus.client import ModbusSerialClient

    from firmware_protocols import modbus_terminal as mt
    from firmware_protocols.simulators.modbus_bank import ModbusTerminalBank
    from firmware_protocols.simulators.serial_link import PtyLink, SerialTiming
    from firmware_protocols.terminal_events import Key, ShowText

    queue = mt.InputQueue()
    queue.latch(mt.encode_input(Key.NEXT))
    queue.latch(mt.encode_input(4, rating=True))
    block = mt.encode_poll_block(
        firmware_version=(1, 0), boot_id=0xA17E, uptime=120, flags=0, inputs=queue
    )
    led_write = mt.command_write(ShowText(3, "请A012号到3号窗口"))

    def encode_led_write() -> None:
        mt.encode_write_request(mt.command_write(ShowText(3, "请A012号到3号窗口")))

    poll_bytes = len(mt.encode_read_request(1)) + 5 + 2 * mt.POLL_BLOCK_COUNT
    timing = SerialTiming(mt.DEFAULT_BAUD, mt.DEFAULT_PARITY)
    figures: dict[str, Any] = {
        "poll blocks decoded/s": round(_rate(lambda: mt.decode_poll_block(3, block, None), 20000)),
        "LED writes encoded/s (FC16 frame)": round(_rate(encode_led_write, 20000)),
        "LED write bytes (11-character text)": len(mt.encode_write_request(led_write)),
        "poll bytes per terminal (request + answer)": poll_bytes,
        "wire floor per poll at 19200 baud, ms": round(
            (timing.transmit_seconds(poll_bytes) + 2 * timing.frame_gap_seconds()) * 1000, 1
        ),
    }
    slaves = range(1, _HALL_WINDOWS + 1)
    with PtyLink() as link, ModbusTerminalBank(link, slaves, timing=timing) as bank:
        client = ModbusSerialClient(
            port=link.port_name, baudrate=mt.DEFAULT_BAUD, parity=mt.DEFAULT_PARITY,
            timeout=1.0, retries=0,
        )
        client.connect()
        cursors: dict[int, mt.PollCursor | None] = dict.fromkeys(slaves)
        acks_due: dict[int, mt.RegisterWrite] = {}

        def cycle(piggyback: bool) -> float:
            """One poll of every terminal; acks by FC16 at once, or by FC23 in the next poll."""
            started = time.perf_counter()
            for slave in slaves:
                due = acks_due.pop(slave, None)
                if due is None:
                    reply = client.read_input_registers(
                        mt.POLL_BLOCK_START, count=mt.POLL_BLOCK_COUNT, device_id=slave
                    )
                else:
                    reply = client.readwrite_registers(
                        read_address=mt.POLL_BLOCK_START,
                        read_count=mt.POLL_BLOCK_COUNT,
                        write_address=due.address,
                        values=list(due.values),
                        device_id=slave,
                    )
                result = mt.decode_poll_block(slave, reply.registers, cursors[slave])
                cursors[slave] = result.cursor
                if result.ack is not None and piggyback:
                    acks_due[slave] = result.ack
                elif result.ack is not None:
                    client.write_registers(
                        result.ack.address, list(result.ack.values), device_id=slave
                    )
            return time.perf_counter() - started

        def busy(piggyback: bool) -> list[float]:
            """Cycles with a press at every terminal; the first one settles the ack mode."""
            timings = []
            for _ in range(_CYCLES + 1):
                for slave in slaves:
                    bank.press(slave, Key.NEXT)
                timings.append(cycle(piggyback))
            return timings[1:]

        cycle(False)  # first contact
        idle = [cycle(False) for _ in range(_CYCLES)]
        busy_fc16 = busy(False)
        busy_fc23 = busy(True)
        client.close()  # type: ignore[no-untyped-call]
    figures["33-terminal poll cycle at 19200 baud, idle, ms (min / mean)"] = _cycle_ms(idle)
    figures["33-terminal cycle, every terminal pressed, FC16 acks, ms (min / mean)"] = _cycle_ms(
        busy_fc16
    )
    figures["33-terminal cycle, every terminal pressed, acks in FC23 polls, ms (min / mean)"] = (
        _cycle_ms(busy_fc23)
    )
    return figures


def bench_vendor_frame() -> dict[str, Any]:
    """Vendor-frame codec rates, and poll cycles of a 33-terminal bank at 9600 baud."""
    import serial

    from firmware_protocols import vendor_frame as vf
    from firmware_protocols.simulators.serial_link import PtyLink, SerialTiming
    from firmware_protocols.simulators.vendor_bank import VendorTerminalBank
    from firmware_protocols.terminal_events import Key, KeyPressed, RatingPressed, ShowText

    events: list[vf.VendorEvent] = [
        vf.Poll(n % 33 + 1, n & 0xFF) if n % 3 else KeyPressed(n % 33 + 1, Key.NEXT, n % 255 + 1)
        for n in range(600)
    ]
    stream = b"".join(vf.encode(event) for event in events)

    def encode_all() -> None:
        for event in events:
            vf.encode(event)

    def decode_stream() -> None:
        decoder = vf.VendorDecoder()
        decoder.receive_data(stream)
        while decoder.next_event() is not vf.NEED_DATA:
            pass

    timing = SerialTiming(vf.BAUD)
    poll_bytes = len(vf.encode(vf.Poll(1, 0))) + len(vf.encode(vf.Idle(1, 0)))
    figures: dict[str, Any] = {
        "frames encoded/s (polls and key reports)": round(_rate(encode_all, 20) * len(events)),
        "frames decoded/s (one 600-frame stream)": round(_rate(decode_stream, 20) * len(events)),
        "LED text frame bytes (11 characters)": len(vf.encode(ShowText(3, "请A012号到3号窗口"))),
        "poll bytes per terminal (request + answer)": poll_bytes,
        "wire floor per poll at 9600 baud, ms": round(
            (timing.transmit_seconds(poll_bytes) + 2 * timing.frame_gap_seconds()) * 1000, 1
        ),
    }
    addresses = range(1, _HALL_WINDOWS + 1)
    with (
        PtyLink() as link,
        VendorTerminalBank(link, addresses, timing=timing) as bank,
        serial.Serial(link.port_name, vf.BAUD, timeout=1.0) as port,
    ):
        decoder = vf.VendorDecoder()
        poller = vf.VendorPoller()

        def cycle() -> float:
            started = time.perf_counter()
            for address in addresses:
                port.write(poller.poll(address))
                answer: object = vf.NEED_DATA
                while answer is vf.NEED_DATA:
                    decoder.receive_data(port.read(1) + port.read(port.in_waiting))
                    answer = decoder.next_event()
                if isinstance(answer, KeyPressed | RatingPressed):
                    poller.taken(answer)
            return time.perf_counter() - started

        idle = [cycle() for _ in range(_CYCLES)]
        busy = []
        for _ in range(_CYCLES):
            for address in addresses:
                bank.press(address, Key.NEXT)
            busy.append(cycle())
    figures["33-terminal poll cycle at 9600 baud, idle, ms (min / mean)"] = _cycle_ms(idle)
    figures["33-terminal poll cycle at 9600 baud, every terminal pressed, ms (min / mean)"] = (
        _cycle_ms(busy)
    )
    return figures


BENCHES: Final[tuple[tuple[str, Callable[[], dict[str, Any]]], ...]] = (
    ("escpos", bench_escpos),
    ("led", bench_led),
    ("modbus_terminal", bench_modbus_terminal),
    ("vendor_frame", bench_vendor_frame),
)


def run() -> dict[str, Any]:
    """Every benchmark of this package, as one flat dict for ``onedoor bench``."""
    figures: dict[str, Any] = {}
    for topic, bench in BENCHES:
        figures |= {f"{topic}: {name}": value for name, value in bench().items()}
    return figures


__all__ = [
    "BENCHES",
    "bench_escpos",
    "bench_led",
    "bench_modbus_terminal",
    "bench_vendor_frame",
    "run",
]
