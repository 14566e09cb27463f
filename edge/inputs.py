"""What the devices report, turned into hall commands, each terminal input exactly once.

:class:`InputHandler` takes the drivers' typed inputs off the daemon's one queue
(:mod:`edge.devices.base`) in order. A window terminal's key press, rating or
差评 reason carries its :class:`~edge.input_mark.InputMark`; the handler passes it to the hall
command, which journals it with the command's events (one transaction), and
records it on its own when the input had no effect or was refused. Only then is
the terminal acknowledged (:meth:`edge.device_set.DeviceSet.input_handled`). An
input delivered twice (a reload rebuilt the driver while its read waited here)
is known as handled and only acknowledged again. Any other error leaves the
input unrecorded: after a restart the terminal hands it on again.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

import structlog

from edge.device_set import DeviceSet
from edge.devices.base import (
    DeviceInput,
    DeviceStatusChanged,
    HelpButton,
    IdCardRead,
    InputQueue,
    KeyPress,
    Rating,
    RatingReason,
    TerminalInput,
    TicketButton,
    WindowKey,
)
from edge.errors import CommandRejected
from edge.hall import Hall
from edge.input_mark import InputMark
from edge.kiosk import TicketDesk
from edge.outputs import HallOutputs

log = structlog.get_logger(__name__)

TICK_S = 1.0
# Test fault injection (tests/edge/test_crash_terminals.py), never set in service: with
# this variable set the daemon dies (os._exit) right after a window-terminal input's
# effect is journaled, before the terminal can be acknowledged.
TEST_FAULT_EXIT_AFTER_INPUT_ENV = "ONEDOOR_TEST_FAULT_EXIT_AFTER_TERMINAL_INPUT"


class InputHandler:
    """Runs the device inputs against the hall (module docstring)."""

    def __init__(self, hall: Hall, devices: DeviceSet, outputs: HallOutputs,
                 desk: TicketDesk) -> None:
        self._hall = hall
        self._devices = devices
        self._outputs = outputs
        self._desk = desk

    async def run(self, queue: InputQueue, beat: Callable[[], None]) -> None:
        """The inputs task: one input at a time, checking in at least every second."""
        while True:
            beat()
            try:
                # asyncio.timeout, not wait_for: on 3.11 wait_for can drop a dequeued item
                # or swallow a cancellation when they race with the timeout.
                async with asyncio.timeout(TICK_S):
                    item = await queue.get()
            except TimeoutError:
                continue
            try:
                self.handle(item)
            except CommandRejected as exc:
                log.warning("input.rejected", input=repr(item), reason=str(exc))

    def handle(self, item: DeviceInput) -> None:
        hall = self._hall
        match item:
            case KeyPress() | Rating() | RatingReason() if item.mark is not None:
                self._terminal_input(item, item.mark)
            case KeyPress() | Rating() | RatingReason():
                self._effect(item, None)
            case TicketButton():
                self._desk.press(item)
            case IdCardRead():
                self._desk.card(item)
            case HelpButton():
                if item.long_press:
                    hall.help_long_press(item.button_id)
                else:
                    hall.help_request(item.button_id)
            case DeviceStatusChanged():
                hall.device_status(self._devices.record_health(item.health))

    def _terminal_input(self, item: TerminalInput, mark: InputMark) -> None:
        journal = self._hall.journal
        if journal.was_handled(mark):  # delivered twice: once only
            log.info("terminal.input_repeated", device=mark.device, address=mark.address,
                     sequence=mark.sequence)
            self._acknowledge(mark)
            return
        try:
            self._effect(item, mark)
        except CommandRejected:
            journal.record_input(mark)  # refused: handled all the same
            raise
        else:
            if not journal.was_handled(mark):  # no effect to journal (nobody waiting)
                journal.record_input(mark)
        finally:
            self._acknowledge(mark)

    def _acknowledge(self, mark: InputMark) -> None:
        """The input's effect is journaled: now its terminal may be acknowledged."""
        if os.environ.get(TEST_FAULT_EXIT_AFTER_INPUT_ENV) == "1":
            log.warning("test_fault.exit_after_input", mark=repr(mark))
            os._exit(86)
        self._devices.input_handled(mark)

    def _effect(self, item: TerminalInput, mark: InputMark | None) -> None:
        if isinstance(item, KeyPress):
            self._key(item, mark)
        elif isinstance(item, Rating):
            self._hall.rate(item.window, item.value, mark=mark)
        else:
            self._hall.rate_reason(item.window, item.reason, mark=mark)

    def _key(self, press: KeyPress, mark: InputMark | None) -> None:
        hall = self._hall
        window = press.window
        match press.key:
            case WindowKey.NEXT:
                if hall.call_next(window, mark=mark) is None:
                    self._outputs.show_window(window, "无人等候")
            case WindowKey.RECALL:
                hall.recall(window, mark=mark)
            case WindowKey.TRANSFER:
                hall.transfer(window, self._service_from_keypad(press.to_service), mark=mark)
            case WindowKey.NO_SHOW:
                hall.no_show(window, mark=mark)
            case WindowKey.PAUSE:
                hall.pause(window, mark=mark)
            case WindowKey.RESUME:
                hall.resume(window, mark=mark)
            case WindowKey.FINISH:
                hall.finish(window, mark=mark)
            case WindowKey.SIGN_IN:
                hall.sign_in(window, press.staff_id, mark=mark)
            case WindowKey.SIGN_OUT:
                hall.sign_out(window, mark=mark)
            case WindowKey.HELP_ACK:
                hall.help_ack_from_window(window, mark=mark)
            case WindowKey.CASE:
                hall.open_case(window, press.case_no, source="keypad", mark=mark)

    def _service_from_keypad(self, typed: str | None) -> str | None:
        """Staff type a service id or its position in the config (1-based)."""
        if typed is None:
            return None
        services = self._hall.config.services
        if typed.isdigit() and 1 <= int(typed) <= len(services):
            return services[int(typed) - 1].id
        return typed


__all__ = ["TEST_FAULT_EXIT_AFTER_INPUT_ENV", "InputHandler"]
