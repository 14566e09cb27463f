"""The ticket printer: ESC/POS over USB, the network or a serial line; status by DLE EOT.

One task (:meth:`PrinterDriver.run`) owns the port (``edge.devices.printer_ports``
picks the transport from the configured ``port``). It polls ``DLE EOT 1, 2,
4`` every ``poll_interval_s`` and turns the answers into the driver's health:
paper low is *degraded*; paper out, cover open, an error, no answer (twice
in a row: one lost answer is line noise) or no port are *offline*. Each
change reaches the daemon as a :class:`~edge.devices.base.DeviceStatusChanged`.

``print_ticket`` hands the job to that task and waits for the answer:

* the printer is known to be offline → False at once (the daemon still issues
  the ticket and shows it on the hall screen);
* otherwise the task asks the status first (a printer that ran out of paper
  since the last poll gets no bytes: it would hold them and print the ticket
  hours later), writes the ticket, and asks again: paper out after the write
  means the ticket did not come out whole → False. (The printer keeps the rest
  of that ticket and prints it when paper is loaded, as real ones do; the
  daemon has shown the number on the hall screen meanwhile.)

A status answer is one byte that does not say which query it answers, so the
exchange is kept in step with the wire: a query goes out only once the ticket
before it has left the line (a 342-byte ticket is 356 ms at 9600 baud 8N1;
:func:`~edge.devices.serial_port.exchange` waits for it), what is already in
the input is dropped first, and after a query that got no answer the port
stays quiet for one more reply timeout, so a late answer is dropped instead of
being read as the answer to the next query (which would shift every answer
after it by one and make the health flap).

Every step has a timeout that counts the wire time, so a printer that dies just
before a ticket costs the caller a few reply timeouts plus ``write_timeout_s``;
one known to be offline costs nothing. A port that vanishes (USB unplugged,
network printer switched off) is opened again every ``reopen_interval_s``.
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
from firmware_protocols.line import SerialTiming

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
from .printer_ports import printer_port
from .serial_port import ByteLink, SerialPortError, exchange
from .ticket import LARGE_PRINT_LAYOUT, NORMAL_LAYOUT, ticket_bytes

log = structlog.get_logger(__name__)

DEFAULT_BAUD = 9600  # 8N1: what most serial thermal printers ship with
_QUERY_BYTES = 3  # DLE EOT n


@dataclass(frozen=True, slots=True)
class PrinterSettings:
    port: str  # /dev/usb/lp0, tcp://host:9100, or a serial device (see printer_ports)
    baudrate: int = DEFAULT_BAUD  # serial only
    rtscts: bool = False  # hardware flow control, when the cable carries it
    poll_interval_s: float = 5.0
    reply_timeout_s: float = 0.3  # the printer's turnaround, on top of the wire time
    write_timeout_s: float = 2.0  # beyond the ticket's own wire time
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

    @property
    def line(self) -> SerialTiming:
        return SerialTiming(self.baudrate)


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
    budget_s: float  # the longest this job may keep the port


class PrinterDriver:
    """Implements :class:`~edge.devices.base.TicketPrinter`."""

    def __init__(
        self,
        settings: PrinterSettings,
        inputs: InputQueue,
        *,
        device_id: str = "printer",
        port: ByteLink | None = None,
    ) -> None:
        self._settings = settings
        self._port = port if port is not None else printer_port(
            settings.port, settings.line, rtscts=settings.rtscts
        )
        self._health = HealthTracker(
            device_id, DeviceKind.PRINTER, inputs, initial=HealthState.OFFLINE, detail="not started"
        )
        self._jobs: asyncio.Queue[_Job] = asyncio.Queue()
        self._unfinished: list[_Job] = []  # queued or printing
        self.printed = 0

    def health(self) -> DeviceHealth:
        return self._health.current

    @property
    def port(self) -> ByteLink:
        return self._port

    # --- the daemon's side -----------------------------------------------------------------------
    def _status_budget(self) -> float:
        """The longest one status check takes: every query twice, a quiet wait between."""
        s = self._settings
        one = s.reply_timeout_s + self._port.wire_seconds(_QUERY_BYTES + 1)
        return 2 * len(HEALTH_QUERIES) * one + s.reply_timeout_s

    async def print_ticket(self, ticket: TicketPrint) -> bool:
        """True once the printer took the whole ticket and still has paper; False otherwise."""
        layout = LARGE_PRINT_LAYOUT if ticket.large_print else NORMAL_LAYOUT
        data = ticket_bytes(ticket.content, layout)  # LocalProtocolError: caller's bug
        number = ticket.content.ticket_number
        if self._health.current.state is HealthState.OFFLINE:
            log.warning("printer.refused", number=number, reason=self._health.current.detail)
            return False
        s = self._settings
        budget = (2 * self._status_budget() + self._port.wire_seconds(len(data))
                  + s.write_timeout_s)
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        job = _Job(data, number, done, budget)
        # Tickets back to back wait for the ones before them: their time counts too.
        wait = sum(j.budget_s for j in self._unfinished) + budget + 1.0
        self._unfinished.append(job)
        self._jobs.put_nowait(job)
        try:
            async with asyncio.timeout(wait):
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
                if not self._port.is_open and not await self._open():
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
                    try:
                        result = await self._print(job)
                    finally:
                        self._finished(job)
                    if not job.done.done():
                        job.done.set_result(result)
        finally:
            self._port.close()
            self._fail_jobs()

    async def _open(self) -> bool:
        try:
            await self._port.open()
        except SerialPortError as exc:
            self._health.set(HealthState.OFFLINE, f"端口无法打开 {exc}"[:200])
            return False
        log.info("printer.port_open", port=self._port.name)
        return True

    def _finished(self, job: _Job) -> None:
        if job in self._unfinished:
            self._unfinished.remove(job)

    def _fail_jobs(self) -> None:
        while not self._jobs.empty():
            job = self._jobs.get_nowait()
            self._finished(job)
            if not job.done.done():
                job.done.set_result(False)

    async def _query(self, request: StatusRequest) -> escpos.StatusReply:
        s = self._settings
        reply: escpos.StatusReply | None = await exchange(
            self._port,
            escpos.encode_status_query(request),
            escpos.StatusReplyDecoder(request),
            reply_bytes=1,
            timeout=s.reply_timeout_s,
            write_timeout=s.write_timeout_s,
            on_error=self._bad_reply,
        )
        if reply is None:
            raise _NoReply
        return reply

    @staticmethod
    def _bad_reply(exc: ProtocolError) -> None:
        raise exc  # a garbled status byte is not trusted: the whole check fails

    async def _query_health(self) -> list[escpos.StatusReply]:
        return [await self._query(request) for request in HEALTH_QUERIES]

    async def _read_status(self) -> PrinterHealth | None:
        """The folded status, or None (and health offline) when the printer does not answer."""
        try:
            try:
                replies = await self._query_health()
            except (_NoReply, DeviceTimeout):  # one lost answer is line noise: ask once more
                log.info("printer.status_retry", port=self._port.name)
                # Quiet first: a late answer to the lost query must not pass for the next one.
                await asyncio.sleep(self._settings.reply_timeout_s)
                replies = await self._query_health()
        except (_NoReply, DeviceTimeout):
            self._health.set(HealthState.OFFLINE, "打印机无响应 no status reply")
            return None
        except ProtocolError as exc:
            log.warning("printer.bad_status", error=str(exc))
            self._health.set(HealthState.OFFLINE, f"状态应答错误 bad status reply: {exc}"[:200])
            return None
        except SerialPortError as exc:
            self._health.set(HealthState.OFFLINE, f"端口断开 {exc}"[:200])
            return None
        printer, offline_cause, paper = replies
        assert isinstance(printer, PrinterStatus)
        assert isinstance(offline_cause, OfflineCause)
        assert isinstance(paper, PaperSensor)
        status = PrinterHealth.from_replies(printer, offline_cause, paper)
        self._health.set(*describe(status))
        return status

    async def _print(self, job: _Job) -> bool:
        before = await self._read_status()
        if before is None or self._health.current.state is HealthState.OFFLINE:
            log.warning("printer.refused", number=job.number, reason=self._health.current.detail)
            return False
        s = self._settings
        try:
            await self._port.write(job.data, s.write_timeout_s + self._port.wire_seconds(
                len(job.data)))
            await self._port.drain(s.write_timeout_s)  # on the wire before the next query
        except DeviceTimeout as exc:
            self._health.set(HealthState.OFFLINE, "打印机不收数据 write timed out")
            log.warning("printer.write_timeout", number=job.number, error=str(exc))
            return False
        except SerialPortError as exc:
            self._health.set(HealthState.OFFLINE, f"端口断开 {exc}"[:200])
            log.warning("printer.write_failed", number=job.number, error=str(exc))
            return False
        after = await self._read_status()
        if after is None or after.paper_out:
            log.warning("printer.incomplete", number=job.number)
            return False
        self.printed += 1
        log.info("printer.printed", number=job.number, bytes=len(job.data))
        return True


__all__ = ["DEFAULT_BAUD", "PrinterDriver", "PrinterSettings", "describe"]
