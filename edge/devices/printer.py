"""The ticket printer: ESC/POS over a serial line (pyserial), status polled with DLE EOT.

One task (:meth:`PrinterDriver.run`) owns the port. It polls ``DLE EOT 1, 2,
4`` every ``poll_interval_s`` and turns the answers into the driver's health:
paper low is *degraded*; paper out, cover open, an error, no answer (twice
in a row: one lost answer is line noise) or no port are *offline*. Each
change reaches the daemon as a
:class:`~edge.devices.base.DeviceStatusChanged`.

``print_ticket`` hands the job to that task and waits for the answer:

* the printer is known to be offline → False at once (the daemon still issues
  the ticket and shows it on the hall screen);
* otherwise the task asks the status first (a printer that ran out of paper
  since the last poll gets no bytes: it would hold them and print the ticket
  hours later), writes the ticket, and asks again: paper out after the write
  means the ticket did not come out whole → False. (The printer keeps the rest
  of that ticket and prints it when paper is loaded, as real ones do; the
  daemon has shown the number on the hall screen meanwhile.)

Every step has a short timeout, so a printer that dies just before a ticket
costs the caller at most twice ``reply_timeout_s`` (asked twice) plus
``write_timeout_s``; one known to be offline costs nothing. A port that vanishes (USB
adapter unplugged) is reopened every ``reopen_interval_s``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import structlog

from firmware_protocols import escpos
from firmware_protocols.errors import ProtocolError
from firmware_protocols.escpos import (
    HEALTH_QUERIES,
    OfflineCause,
    PaperSensor,
    PrinterHealth,
    PrinterStatus,
    StatusRequest,
)

from .base import (
    DeviceConfigError,
    DeviceHealth,
    DeviceKind,
    DeviceTimeout,
    HealthState,
    HealthTracker,
    InputQueue,
    TicketPrint,
    stop_if_cancelled,
)
from .serial_port import AsyncSerial, SerialPortError
from .ticket import LARGE_PRINT_LAYOUT, NORMAL_LAYOUT, ticket_bytes

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class PrinterSettings:
    port: str
    baudrate: int = 9600
    rtscts: bool = False  # hardware flow control, when the cable carries it
    poll_interval_s: float = 5.0
    reply_timeout_s: float = 0.3
    write_timeout_s: float = 2.0
    reopen_interval_s: float = 5.0

    def __post_init__(self) -> None:
        for name in (
            "poll_interval_s",
            "reply_timeout_s",
            "write_timeout_s",
            "reopen_interval_s",
        ):
            if getattr(self, name) <= 0:
                raise DeviceConfigError(f"printer {name} must be > 0, got {getattr(self, name)}")
        if self.baudrate <= 0:
            raise DeviceConfigError(f"printer baudrate must be > 0, got {self.baudrate}")


class _NoReply(Exception):
    """The printer did not answer a status query in time (internal)."""


def describe(health: PrinterHealth) -> tuple[HealthState, str]:
    """The driver health for a folded printer status, worst condition first."""
    if health.paper_out:
        return HealthState.OFFLINE, "缺纸 paper out"
    if health.cover_open:
        return HealthState.OFFLINE, "纸仓盖打开 cover open"
    if health.error:
        return HealthState.OFFLINE, "打印机故障 printer error"
    if not health.online:
        return HealthState.OFFLINE, "打印机脱机 printer offline"
    if health.paper_low:
        return HealthState.DEGRADED, "纸将尽 paper low"
    return HealthState.OK, ""


@dataclass(slots=True)
class _Job:
    data: bytes
    number: str
    done: asyncio.Future[bool]


class PrinterDriver:
    """Implements :class:`~edge.devices.base.TicketPrinter`."""

    def __init__(
        self, settings: PrinterSettings, inputs: InputQueue, *, device_id: str = "printer"
    ) -> None:
        self._settings = settings
        self._port = AsyncSerial(settings.port, settings.baudrate, rtscts=settings.rtscts)
        self._health = HealthTracker(
            device_id, DeviceKind.PRINTER, inputs, initial=HealthState.OFFLINE, detail="not started"
        )
        self._jobs: asyncio.Queue[_Job] = asyncio.Queue()
        self.last_status: PrinterHealth | None = None
        self.printed = 0

    def health(self) -> DeviceHealth:
        return self._health.current

    # --- the daemon's side -----------------------------------------------------------------------
    async def print_ticket(self, ticket: TicketPrint) -> bool:
        """True once the printer took the whole ticket and still has paper; False otherwise."""
        layout = LARGE_PRINT_LAYOUT if ticket.large_print else NORMAL_LAYOUT
        data = ticket_bytes(ticket.content, layout)  # LocalProtocolError: caller's bug
        number = ticket.content.ticket_number
        if self._health.current.state is HealthState.OFFLINE:
            log.warning("printer.refused", number=number, reason=self._health.current.detail)
            return False
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._jobs.put_nowait(_Job(data, number, done))
        s = self._settings
        budget = 2 * s.reply_timeout_s + s.write_timeout_s + 1.0
        try:
            async with asyncio.timeout(budget):
                return await asyncio.shield(done)
        except TimeoutError:  # the port task is stuck or gone: do not keep the citizen waiting
            log.warning("printer.job_timeout", number=number)
            return False

    # --- the port task ---------------------------------------------------------------------------
    async def run(self) -> None:
        s = self._settings
        try:
            while True:
                stop_if_cancelled()
                if not self._port.is_open and not self._open():
                    self._fail_jobs()
                    await asyncio.sleep(s.reopen_interval_s)
                    continue
                await self._read_status()
                loop = asyncio.get_running_loop()
                next_poll = loop.time() + s.poll_interval_s
                while self._port.is_open and (left := next_poll - loop.time()) > 0:
                    try:
                        async with asyncio.timeout(left):
                            job = await self._jobs.get()
                    except TimeoutError:
                        break
                    result = await self._print(job)
                    if not job.done.done():
                        job.done.set_result(result)
        finally:
            self._port.close()
            self._fail_jobs()

    def _open(self) -> bool:
        try:
            self._port.open()
        except SerialPortError as exc:
            self._health.set(HealthState.OFFLINE, f"串口无法打开 {exc}"[:200])
            return False
        log.info("printer.port_open", port=self._settings.port)
        return True

    def _fail_jobs(self) -> None:
        while not self._jobs.empty():
            job = self._jobs.get_nowait()
            if not job.done.done():
                job.done.set_result(False)

    async def _query(self, request: StatusRequest) -> escpos.StatusReply:
        self._port.discard_input()  # a late answer to an earlier query must not be taken for this
        await self._port.write(escpos.encode_status_query(request), self._settings.reply_timeout_s)
        reply = await self._port.read(self._settings.reply_timeout_s, max_bytes=1)
        if not reply:
            raise _NoReply
        return escpos.parse_status_reply(request, reply)

    async def _query_health(self) -> list[escpos.StatusReply]:
        return [await self._query(request) for request in HEALTH_QUERIES]

    async def _read_status(self) -> PrinterHealth | None:
        """The folded status, or None (and health offline) when the printer does not answer."""
        try:
            try:
                replies = await self._query_health()
            except (_NoReply, DeviceTimeout):  # one lost answer is line noise: ask once more
                log.info("printer.status_retry", port=self._settings.port)
                replies = await self._query_health()
        except (_NoReply, DeviceTimeout):
            self._health.set(HealthState.OFFLINE, "打印机无响应 no status reply")
            return None
        except ProtocolError as exc:
            log.warning("printer.bad_status", error=str(exc))
            self._health.set(HealthState.OFFLINE, f"状态应答错误 bad status reply: {exc}"[:200])
            return None
        except SerialPortError as exc:
            self._health.set(HealthState.OFFLINE, f"串口断开 {exc}"[:200])
            return None
        printer, offline_cause, paper = replies
        assert isinstance(printer, PrinterStatus)
        assert isinstance(offline_cause, OfflineCause)
        assert isinstance(paper, PaperSensor)
        status = PrinterHealth.from_replies(printer, offline_cause, paper)
        self.last_status = status
        self._health.set(*describe(status))
        return status

    async def _print(self, job: _Job) -> bool:
        before = await self._read_status()
        if before is None or self._health.current.state is HealthState.OFFLINE:
            log.warning("printer.refused", number=job.number, reason=self._health.current.detail)
            return False
        try:
            await self._port.write(job.data, self._settings.write_timeout_s)
        except DeviceTimeout as exc:
            self._health.set(HealthState.OFFLINE, "打印机不收数据 write timed out")
            log.warning("printer.write_timeout", number=job.number, error=str(exc))
            return False
        except SerialPortError as exc:
            self._health.set(HealthState.OFFLINE, f"串口断开 {exc}"[:200])
            log.warning("printer.write_failed", number=job.number, error=str(exc))
            return False
        after = await self._read_status()
        if after is None or after.paper_out:
            log.warning("printer.incomplete", number=job.number)
            return False
        self.printed += 1
        log.info("printer.printed", number=job.number, bytes=len(job.data))
        return True


__all__ = ["PrinterDriver", "PrinterSettings", "describe"]
