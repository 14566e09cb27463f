"""``onedoor edge probe``: talk to each configured device once and say what answered.

For a new printer model, a replaced adapter or a hall that reports a device
fault, run it on the Pi with the daemon stopped (a port has one owner)::

    onedoor edge probe --config /etc/onedoor/site.toml [--device printer] [--json]

Per device: the port and line settings it used, whether it answered, what it
said about itself and the round trip of one exchange (measured, so a slow
adapter or a wrong baud rate shows at once):

* printer: ``GS I`` maker, model and firmware (printers without it say
  nothing: "identity not reported"), and the ``DLE EOT`` status as the driver
  reads it;
* LED screens: a PING to every configured address;
* window terminals: one poll of every configured terminal (Modbus: device type,
  firmware version and boot id from the poll block; vendor: its answer);
* ID card reader: the SAM's status and serial number, and whether a card is on it.

Nothing is changed on any device: no text is shown, no input acknowledged.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from edge.config import EdgeConfig
from firmware_protocols import escpos, led
from firmware_protocols import id_card as idc
from firmware_protocols import modbus_terminal as mt
from firmware_protocols import vendor_frame as vf
from firmware_protocols.decoding import Decoder
from firmware_protocols.errors import ProtocolError
from firmware_protocols.line import SerialTiming

from .base import DeviceError
from .printer import describe
from .printer_ports import UsbPrinterPort, printer_port
from .serial_port import AsyncSerial, ByteLink, exchange
from .terminals import ModbusBus, TerminalSettings, answer_address

PROBE_TIMEOUT_S = 0.5  # turnaround allowed each device, on top of the wire time
DEVICES = ("printer", "screens", "terminals", "id_card")

EventT = TypeVar("EventT")


@dataclass(slots=True)
class Answer:
    """One device on the port: whether it answered, in how long, and what it said."""

    name: str
    answered: bool
    round_trip_ms: float | None = None
    details: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class ProbeResult:
    device: str  # printer, screens, terminals, id_card
    port: str
    line: str  # "9600 8N1", "usb", "tcp"
    error: str = ""  # the port could not be used at all
    answers: list[Answer] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.error and bool(self.answers) and all(a.answered for a in self.answers)

    def as_dict(self) -> dict[str, Any]:
        return {
            "device": self.device, "port": self.port, "line": self.line, "ok": self.ok,
            "error": self.error,
            "answers": [{"name": a.name, "answered": a.answered,
                         "round_trip_ms": a.round_trip_ms, **a.details} for a in self.answers],
        }


async def _timed(ask: Awaitable[EventT | None]) -> tuple[EventT | None, float]:
    """The answer and its round trip in ms (the coroutine runs only once awaited here)."""
    started = time.perf_counter()
    reply = await ask
    return reply, round((time.perf_counter() - started) * 1000, 1)


def _anything(_: object) -> bool:
    return True


async def _ask(link: ByteLink, request: bytes, decoder: Decoder[EventT], reply_bytes: int,
               accept: Callable[[EventT], bool] = _anything) -> EventT | None:
    return await exchange(link, request, decoder, accept, reply_bytes=reply_bytes,
                          timeout=PROBE_TIMEOUT_S)


def _reply_to(request: led.LedRequest) -> Callable[[led.LedEvent], bool]:
    return lambda event: led.is_reply_to(event, request)


def _from_terminal(address: int) -> Callable[[vf.VendorEvent], bool]:
    return lambda event: answer_address(event) == address


def _line_label(link: ByteLink) -> str:
    if isinstance(link, AsyncSerial):
        return str(link.line)
    return "usb" if isinstance(link, UsbPrinterPort) else "tcp"


async def probe_printer(config: EdgeConfig) -> ProbeResult | None:
    section = config.devices.printer
    if section is None:
        return None
    link = printer_port(section.port, SerialTiming(section.baud))
    result = ProbeResult("printer", section.port, _line_label(link))
    await link.open()
    try:
        answer = Answer("printer", answered=False)
        for info in (escpos.PrinterInfo.MAKER, escpos.PrinterInfo.MODEL,
                     escpos.PrinterInfo.FIRMWARE):
            identity = await _ask(link, escpos.encode(escpos.PrinterIdQuery(info)),
                                  escpos.PrinterIdDecoder(), escpos.MAX_PRINTER_ID + 2)
            if isinstance(identity, escpos.PrinterId):
                answer.details[info.name.lower()] = identity.text
        if not answer.details:
            answer.details["identity"] = "not reported (GS I unsupported)"
        replies: list[escpos.StatusReply] = []
        for request in escpos.HEALTH_QUERIES:
            status: Decoder[escpos.StatusReply] = escpos.StatusReplyDecoder(request)
            asked = _ask(link, escpos.encode_status_query(request), status, 1)
            timed: tuple[escpos.StatusReply | None, float] = await _timed(asked)
            reply, took = timed
            if reply is None:
                break
            replies.append(reply)
            answer.round_trip_ms = answer.round_trip_ms or took
        if len(replies) == len(escpos.HEALTH_QUERIES):
            printer, cause, paper = replies
            assert isinstance(printer, escpos.PrinterStatus)
            assert isinstance(cause, escpos.OfflineCause)
            assert isinstance(paper, escpos.PaperSensor)
            state, detail = describe(escpos.PrinterHealth.from_replies(printer, cause, paper))
            answer.answered = True
            answer.details["status"] = f"{state.value} {detail}".strip()
        result.answers.append(answer)
    finally:
        link.close()
    return result


async def probe_screens(config: EdgeConfig) -> ProbeResult | None:
    section = config.devices.screens
    if section is None:
        return None
    line = SerialTiming(section.baud)
    link = AsyncSerial(section.port, line, rs485=section.rs485)
    result = ProbeResult("screens", section.port, str(line))
    addresses = [(f"窗口{w.number}", w.screen) for w in config.windows if w.screen is not None]
    if section.hall is not None:
        addresses.append(("大厅", section.hall))
    await link.open()
    try:
        for seq, (name, address) in enumerate(addresses):
            request = led.Ping(address, seq & 0xFF)
            decoder: Decoder[led.LedEvent] = led.LedDecoder()
            pinged = _ask(link, led.encode(request), decoder, led.REPLY_FRAME_MAX,
                          _reply_to(request))
            reply, took = await _timed(pinged)
            result.answers.append(Answer(f"{name} 0x{address:02x}", reply is not None,
                                         took if reply is not None else None))
    finally:
        link.close()
    return result


async def probe_terminals(config: EdgeConfig) -> ProbeResult | None:
    section = config.devices.terminals
    if section is None:
        return None
    terminals = {w.number: w.terminal for w in config.windows if w.terminal is not None}
    settings = TerminalSettings(section.port, terminals or {1: 1}, bus=section.kind,
                                baudrate=section.baud, parity=section.parity, rs485=section.rs485,
                                reply_timeout_s=PROBE_TIMEOUT_S)
    result = ProbeResult("terminals", section.port, f"{section.kind} {settings.line}")
    if section.kind == "modbus":
        bus = ModbusBus(section.port, settings.line, PROBE_TIMEOUT_S, rs485=section.rs485)
        await bus.open()
        try:
            for window, address in terminals.items():
                started = time.perf_counter()
                try:
                    registers = await bus.read_poll_block(address)
                except (DeviceError, ProtocolError):
                    result.answers.append(Answer(f"窗口{window} #{address}", False))
                    continue
                took = round((time.perf_counter() - started) * 1000, 1)
                kind, version, boot = registers[mt.DEVICE_TYPE], registers[mt.FIRMWARE_VERSION], \
                    registers[mt.BOOT_ID]
                result.answers.append(Answer(f"窗口{window} #{address}", True, took, {
                    "device_type": f"{kind:#06x}" + (" (onedoor terminal)"
                                                     if kind == mt.DEVICE_TYPE_WINDOW_TERMINAL
                                                     else " (not a onedoor terminal)"),
                    "firmware": f"{version >> 8}.{version & 0xFF}",
                    "boot_id": f"{boot:#06x}",
                }))
        finally:
            bus.close()
        return result
    link = AsyncSerial(section.port, settings.line, rs485=section.rs485)
    await link.open()
    try:
        for window, address in terminals.items():

            decoder: Decoder[vf.VendorEvent] = vf.VendorDecoder()
            # ack 0: acknowledges nothing, so a queued press stays for the daemon.
            polled = _ask(link, vf.encode(vf.Poll(address, 0)), decoder, vf.ANSWER_FRAME,
                          _from_terminal(address))
            reply, took = await _timed(polled)
            details = {} if reply is None else {"answer": type(reply).__name__}
            result.answers.append(Answer(f"窗口{window} #{address}", reply is not None,
                                         took if reply is not None else None, details))
    finally:
        link.close()
    return result


async def probe_id_card(config: EdgeConfig) -> ProbeResult | None:
    section = config.devices.id_card
    if section is None:
        return None
    line = SerialTiming(section.baud)
    link = AsyncSerial(section.port, line)
    result = ProbeResult("id_card", section.port, str(line))
    await link.open()
    try:
        def ask(command: idc.Command) -> Awaitable[idc.IdCardEvent | None]:
            decoder: Decoder[idc.IdCardEvent] = idc.IdCardDecoder()
            return _ask(link, idc.encode_request(command), decoder, 64)

        status, took = await _timed(ask(idc.Command.SAM_STATUS))
        answer = Answer("SAM", isinstance(status, idc.Response), took if status else None)
        if isinstance(status, idc.Response):
            answer.details["status"] = status.status.name
            sam_id = await ask(idc.Command.READ_SAM_ID)
            if isinstance(sam_id, idc.Response) and sam_id.ok:
                answer.details["sam_id"] = sam_id.data.hex()
            found = await ask(idc.Command.FIND_CARD)
            if isinstance(found, idc.Response):
                answer.details["card"] = "on the reader" if found.ok else "none"
        result.answers.append(answer)
    finally:
        link.close()
    return result


PROBES: dict[str, Callable[[EdgeConfig], Awaitable[ProbeResult | None]]] = {
    "printer": probe_printer,
    "screens": probe_screens,
    "terminals": probe_terminals,
    "id_card": probe_id_card,
}


async def probe(config: EdgeConfig, only: str | None = None) -> list[ProbeResult]:
    """Every configured device (or only one family), one after the other."""
    results = []
    for name, run in PROBES.items():
        if only is not None and name != only:
            continue
        try:
            result = await run(config)
        except (DeviceError, ProtocolError, OSError) as exc:
            section = getattr(config.devices, name)
            result = ProbeResult(name, section.port, "", error=f"{exc} "
                                 "(is the daemon running? it owns the port: stop it first)"
                                 if "lock" in str(exc).lower() else str(exc))
        if result is not None:
            results.append(result)
    return results


def format_results(results: list[ProbeResult]) -> str:
    """The results for a terminal, one line per device answer."""
    if not results:
        return "no device configured"
    lines = []
    for result in results:
        head = f"{result.device:<10} {result.port}  {result.line}"
        if result.error:
            lines.append(f"{head}  ERROR {result.error}")
            continue
        lines.append(f"{head}  {'ok' if result.ok else 'PROBLEM'}")
        for answer in result.answers:
            took = "" if answer.round_trip_ms is None else f"{answer.round_trip_ms} ms"
            said = "  ".join(f"{k}={v}" for k, v in answer.details.items())
            state = "answered" if answer.answered else "NO ANSWER"
            lines.append(f"    {answer.name:<16} {state:<9} {took:>9}  {said}".rstrip())
    return "\n".join(lines)


def run_probe(config: EdgeConfig, only: str | None = None) -> list[ProbeResult]:
    return asyncio.run(probe(config, only))


__all__ = ["DEVICES", "Answer", "ProbeResult", "format_results", "probe", "run_probe"]
