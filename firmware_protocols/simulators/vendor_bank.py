"""A bank of vendor-frame window terminals (caller keypads and rating pads) on one pty.

Each terminal follows :mod:`firmware_protocols.vendor_frame`: its reports wait
in a :class:`~firmware_protocols.vendor_frame.TerminalReports` queue, a POLL is
answered with the oldest one (after applying the POLL's ack) or IDLE, and the
display commands (CALL_DISPLAY, RECALL_DISPLAY, RATING_REQUEST, LED_TEXT) are
answered with ACK. Like real terminals, the bank answers nothing at all for a
frame it cannot decode (bad checksum, unknown function, text outside GB2312),
for a frame that is itself an answer, and for a dead or absent address: the
host times out. It counts what it ignored in :attr:`VendorTerminalBank.bad_frames`.

Scripting beyond :class:`~.terminal_bank.TerminalBank`:
:meth:`VendorTerminalBank.keypad_display` (what CALL_DISPLAY / RECALL_DISPLAY
put on the keypad's own display) and :meth:`VendorTerminalBank.pending_reports`.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable
from dataclasses import dataclass

from firmware_protocols import vendor_frame as vf
from firmware_protocols.errors import ProtocolError
from firmware_protocols.simulators.serial_link import PtyLink, SerialTiming
from firmware_protocols.simulators.terminal_bank import SimulatedTerminal, TerminalBank
from firmware_protocols.terminal_events import Key, RequestRating, ShowText


@dataclass(frozen=True, slots=True)
class KeypadDisplay:
    """The keypad's own small display: the ticket being called and the queue length."""

    ticket: str
    waiting: int | None  # None after RECALL_DISPLAY (it flashes the ticket only)


class VendorTerminal(SimulatedTerminal):
    def __init__(self, address: int) -> None:
        super().__init__(address)
        self.reports = vf.TerminalReports(address)
        self.display: KeypadDisplay | None = None

    def press(self, key: Key) -> int | None:
        return self.reports.press(key)

    def latch_rating(self, value: int) -> int | None:
        return self.reports.rate(value)

    def latch_reason(self, reason: int) -> int | None:
        return self.reports.choose_reason(reason)

    def reboot(self) -> None:
        self.reports = vf.TerminalReports(self.address)
        self.display = None
        self.led_text = ""
        self._rating_deadline = None

    def handle(self, frame: vf.HostFrame) -> vf.TerminalFrame:
        """Carry out one host frame addressed to this terminal; the answer to send."""
        if isinstance(frame, vf.Poll):
            status = vf.STATUS_RATING_PENDING if self.rating_pending else 0
            return self.reports.answer_poll(frame, status)
        if isinstance(frame, vf.CallDisplay):
            self.display = KeypadDisplay(frame.ticket, frame.waiting)
            function = vf.Function.CALL_DISPLAY
        elif isinstance(frame, vf.RecallDisplay):
            self.display = KeypadDisplay(frame.ticket, None)
            function = vf.Function.RECALL_DISPLAY
        elif isinstance(frame, RequestRating):
            self.request_rating(frame.timeout_seconds)
            function = vf.Function.RATING_REQUEST
        else:
            self.led_text = frame.text
            function = vf.Function.LED_TEXT
        return vf.Ack(self.address, function)


def _frame_address(frame: vf.HostFrame) -> int:
    return frame.window_address if isinstance(frame, RequestRating | ShowText) else frame.address


class VendorTerminalBank(TerminalBank[VendorTerminal]):
    """N vendor-frame terminals on one pty; see the module docstring."""

    def __init__(
        self,
        link: PtyLink,
        addresses: Iterable[int],
        *,
        dead: Iterable[int] = (),
        reply_delay: float = 0.0,
        timing: SerialTiming | None = None,
    ) -> None:
        super().__init__(link, addresses, dead=dead, reply_delay=reply_delay, timing=timing)
        self.bad_frames = 0
        self._decoder = vf.VendorDecoder()
        self._inbox: asyncio.Queue[bytes] | None = None
        self._worker: asyncio.Task[None] | None = None

    def _new_terminal(self, address: int) -> VendorTerminal:
        return VendorTerminal(address)

    def keypad_display(self, address: int) -> KeypadDisplay | None:
        with self._lock:
            return self._terminal(address).display

    def pending_reports(self, address: int) -> int:
        with self._lock:
            return self._terminal(address).reports.pending

    # --- bus side ----------------------------------------------------------------------------

    def _on_readable(self) -> None:
        try:
            data = self.link.heard_by_device(os.read(self.link.fileno(), 4096), self.timing)
        except OSError:
            return
        if data and self._inbox is not None:
            self._inbox.put_nowait(data)

    async def _serve(self) -> None:
        """Decode what the host sends and answer frame by frame (half duplex: one at a time)."""
        assert self._inbox is not None
        while True:
            data = await self._inbox.get()
            self._decoder.receive_data(data)
            while True:
                try:
                    frame = self._decoder.next_event()
                except ProtocolError:
                    self.bad_frames += 1
                    continue
                if frame is vf.NEED_DATA:
                    break
                await self._answer(frame)

    async def _answer(self, frame: vf.VendorEvent) -> None:
        host_frames = vf.Poll | vf.CallDisplay | vf.RecallDisplay | RequestRating | ShowText
        if not isinstance(frame, host_frames):
            self.bad_frames += 1  # an answer frame on the bus: not for a terminal
            return
        request_bytes = len(vf.encode(frame))
        with self._lock:
            terminal = self._live(_frame_address(frame))
            if terminal is None:
                return
            answer = vf.encode(terminal.handle(frame))
        await self._reply_wait(request_bytes, len(answer))
        if not self.link.closed:
            self.link.write(self.link.heard_by_host(answer, self.timing))

    async def _open(self) -> None:
        self._inbox = asyncio.Queue()
        self._worker = asyncio.create_task(self._serve(), name="vendor-bank")
        asyncio.get_running_loop().add_reader(self.link.fileno(), self._on_readable)

    async def _close(self) -> None:
        if not self.link.closed:
            asyncio.get_running_loop().remove_reader(self.link.fileno())
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        self._worker = self._inbox = None


__all__ = ["KeypadDisplay", "VendorTerminal", "VendorTerminalBank"]
