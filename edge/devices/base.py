"""The contract between the hall daemon and its device drivers.

Every driver is an asyncio object that owns its port: ``await driver.run()``
is a long-running task (the daemon's TaskGroup names and supervises it) and
``driver.health()`` answers at once with a :class:`DeviceHealth`.

What devices *report* arrives as typed, frozen values on the one
``asyncio.Queue[DeviceInput]`` the daemon hands to each driver:

* :class:`KeyPress`      a window keypad key (next, recall, transfer, ...)
* :class:`Rating`        a citizen's 好差评 on the rating pad, 1..5
* :class:`RatingReason`  a follow-up reason chosen on the pad after a 差评
* :class:`TicketButton`  a GPIO 取号 button
* :class:`HelpButton`    a 呼叫帮办 button; ``long_press`` = staff acknowledgement
* :class:`IdCardRead`    a 二代身份证 was read at the kiosk (personal data: never logged)
* :class:`DeviceStatusChanged`  a driver's health changed (paper out, screen silent...)

What the daemon *asks* of devices goes through the small protocols below
(:class:`TicketPrinter`, :class:`ScreenBoard`, :class:`TerminalBus`,
:class:`Announcer`, :class:`GpioPanel`); each driver module implements one.

Errors::

    DeviceError(Exception)
    ├── DeviceConfigError(DeviceError, ValueError)  a driver was configured wrongly
    ├── DeviceTimeout(DeviceError, TimeoutError)    a device did not answer in time
    ├── serial_port.SerialPortError(DeviceError, OSError)  port missing or gone
    └── voice.VoiceError(DeviceError)               clips cannot be made, loaded or played

Text a device cannot show (not GB2312, too long) raises the codec's
``LocalProtocolError`` (a ValueError) at the call, before anything is queued.

Output methods do not raise for a device that is merely offline: they return
(``print_ticket`` returns False) and the driver reports it through its health.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import structlog

from edge.input_mark import InputMark
from fastpath.types import TicketClass
from firmware_protocols.id_card import IdCardText

from .ticket import TicketContent

log = structlog.get_logger(__name__)


# --- errors --------------------------------------------------------------------------------------
class DeviceError(Exception):
    """Base of every device-driver error."""


class DeviceConfigError(DeviceError, ValueError):
    """A driver was given settings it cannot work with (bad port, unknown window, ...)."""


class DeviceTimeout(DeviceError, TimeoutError):
    """A device did not answer within its timeout."""


# --- health --------------------------------------------------------------------------------------
class HealthState(enum.StrEnum):
    OK = "ok"
    DEGRADED = "degraded"  # working, but needs attention (paper low, one terminal dead)
    OFFLINE = "offline"  # cannot do its job (paper out, port gone, screen silent)


class DeviceKind(enum.StrEnum):
    PRINTER = "printer"
    SCREEN = "screen"
    TERMINAL = "terminal"
    GPIO = "gpio"
    VOICE = "voice"
    ID_CARD = "id_card"


@dataclass(frozen=True, slots=True)
class DeviceHealth:
    device_id: str  # as named in the site config: "printer", "screen.hall", "terminal.3"
    kind: DeviceKind
    state: HealthState
    detail: str = ""  # short, human: "缺纸 paper out", "no ack from address 2"


# --- inputs: device -> daemon --------------------------------------------------------------------
class WindowKey(enum.StrEnum):
    """The keypad functions the hall state understands (digit entry is the driver's job)."""

    NEXT = "next"
    RECALL = "recall"
    TRANSFER = "transfer"
    NO_SHOW = "no_show"
    PAUSE = "pause"
    RESUME = "resume"
    FINISH = "finish"
    SIGN_IN = "sign_in"
    SIGN_OUT = "sign_out"
    HELP_ACK = "help_ack"
    CASE = "case"  # 办件: the business system's case number, typed on the keypad


@dataclass(frozen=True, slots=True)
class KeyPress:
    """A staff key at a window. ``staff_id`` comes with sign_in, ``to_service`` with transfer,
    ``case_no`` (办件编号) with case.

    Both are the digits typed on the keypad before (or after, then 确认) the key;
    the daemon maps them to a staff member and a service. ``mark``: the terminal
    input it came from (None from other sources; :class:`~edge.input_mark.InputMark`
    says how it makes a press count once over a crash); not part of equality.
    """

    window: int
    key: WindowKey
    staff_id: str | None = None
    to_service: str | None = None
    case_no: str | None = None
    mark: InputMark | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Rating:
    """A citizen's rating at a window: 5 = 非常满意 … 1 = 非常不满意."""

    window: int
    value: int
    mark: InputMark | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not 1 <= self.value <= 5:
            raise ValueError(f"rating must be 1..5, got {self.value}")


@dataclass(frozen=True, slots=True)
class RatingReason:
    """After a 差评 the citizen chose follow-up reason number ``reason`` (1-based, as the
    site config's ``ratings.reasons`` list them) on the window's rating pad."""

    window: int
    reason: int
    mark: InputMark | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class TicketButton:
    """A 取号 button was pressed: issue a ticket for ``service_id`` in class ``klass``."""

    service_id: str
    klass: TicketClass = TicketClass.NORMAL


@dataclass(frozen=True, slots=True)
class HelpButton:
    """A 呼叫帮办 button: a short press asks for help, a long press is staff acknowledging."""

    button_id: str
    long_press: bool = False


@dataclass(frozen=True, slots=True)
class IdCardRead:
    """A resident ID card was read (``edge.id_card_kiosk`` decides whether it takes a ticket).

    The text holds the name and ID number in clear: it lives in memory only, and its
    ``repr`` withholds it, so a log line that names the input leaks nothing.
    """

    reader: str  # the driver's device id
    card: IdCardText


@dataclass(frozen=True, slots=True)
class DeviceStatusChanged:
    health: DeviceHealth


DeviceInput = (KeyPress | Rating | RatingReason | TicketButton | HelpButton | IdCardRead
               | DeviceStatusChanged)
TerminalInput = KeyPress | Rating | RatingReason
"""The inputs of a window terminal: each carries the mark of its latched input."""
InputQueue = asyncio.Queue[DeviceInput]


# --- outputs: daemon -> device -------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class TicketPrint:
    """One ticket to print; ``large_print`` selects the 老人版 layout."""

    content: TicketContent
    large_print: bool = False


@dataclass(frozen=True, slots=True)
class HallCounts:
    """Today's figures on the hall screen: 当天办件量 and 办结率."""

    cases_today: int  # 当天办件量: tickets served to an end today
    completed_today: int  # of which 办结 (finished, not no-show / transferred)

    def __post_init__(self) -> None:
        if not 0 <= self.completed_today <= self.cases_today:
            raise ValueError(
                f"completed_today must be 0..cases_today ({self.cases_today}), "
                f"got {self.completed_today}"
            )

    @property
    def completion_rate_pct(self) -> float | None:
        """办结率 in percent, None before the first case of the day."""
        if self.cases_today == 0:
            return None
        return 100.0 * self.completed_today / self.cases_today


@runtime_checkable
class Device(Protocol):
    """What the daemon supervises: one long-running task and a health snapshot."""

    async def run(self) -> None: ...

    def health(self) -> DeviceHealth: ...


class TicketPrinter(Device, Protocol):
    async def print_ticket(self, ticket: TicketPrint) -> bool:
        """True once the printer took the whole ticket; False quickly if it could not."""
        ...


class ScreenBoard(Device, Protocol):
    def check_text(self, text: str) -> None:
        """Raise ValueError when one line of these screens cannot show ``text`` (not in
        the LED font, too long); changes nothing. The daemon checks each part of the
        hall screen with it, so one bad part is refused alone."""
        ...

    def show_window(self, window: int, text: str) -> None:
        """Show ``text`` (usually the current number) on ``window``'s LED bar."""
        ...

    def show_hall(
        self, lines: Sequence[str], counts: HallCounts, notices: Sequence[str] = ()
    ) -> None:
        """Scroll the latest calls, today's counts and notices on the hall screen."""
        ...


class TerminalBus(Device, Protocol):
    def set_window_text(self, window: int, text: str) -> None:
        """Show ``text`` on the window terminal's own small LED."""
        ...

    def request_rating(self, window: int, seconds: int) -> None:
        """Light the window's rating pad for ``seconds`` (after finish); 0 cancels."""
        ...

    @property
    def polls(self) -> int:
        """Polls made so far: the daemon's watchdog checks that the bus keeps polling."""
        ...

    def restore_inputs(self, marks: Iterable[InputMark]) -> None:
        """Before :meth:`run`: the inputs the journal holds as handled. From then on an
        input is acknowledged to its terminal only after :meth:`input_handled`."""
        ...

    def input_handled(self, mark: InputMark) -> None:
        """The input's effect is journaled (or it had none): acknowledge it."""
        ...


class Announcer(Device, Protocol):
    def announce(self, number: str, window: int, spoken: str | None = None) -> None:
        """Queue "请 A012 号 到 3 号窗口 办理" (played twice); never cuts another off.
        ``spoken`` says this sentence instead (a call by name)."""
        ...

    def announce_text(self, text: str, repeat: int = 1) -> None:
        """Queue free text, said ``repeat`` times, after every ticket call waiting.
        Raises ValueError for text it cannot say and when too much text waits."""
        ...


class GpioPanel(Device, Protocol):
    def set_led(self, name: str, on: bool) -> None: ...

    def buzz(self, ms: int) -> None: ...

    def close(self) -> None:
        """Release the pins (after :meth:`run` ended); the serial drivers close their
        port themselves when their task ends."""
        ...


# --- helpers for drivers -------------------------------------------------------------------------
def stop_if_cancelled() -> None:
    """Raise CancelledError if this task was asked to stop but carried on.

    On Python 3.11 ``asyncio.wait_for`` can swallow a cancellation that races
    with its inner future finishing (fixed in 3.12). Our code uses
    ``asyncio.timeout`` instead, but libraries (pymodbus) still use
    ``wait_for``; driver loops call this every turn so shutdown never hangs.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class HealthTracker:
    """Holds one device's health and posts :class:`DeviceStatusChanged` when it changes."""

    def __init__(
        self,
        device_id: str,
        kind: DeviceKind,
        inputs: InputQueue,
        *,
        initial: HealthState = HealthState.OK,
        detail: str = "",
    ) -> None:
        self._inputs = inputs
        self._health = DeviceHealth(device_id, kind, initial, detail)

    @property
    def current(self) -> DeviceHealth:
        return self._health

    def set(self, state: HealthState, detail: str = "") -> None:
        """Record the new state; report it only when state or detail actually changed."""
        new = DeviceHealth(self._health.device_id, self._health.kind, state, detail)
        if new == self._health:
            return
        self._health = new
        log.info(
            "device.health",
            device=new.device_id,
            kind=str(new.kind),
            state=str(new.state),
            detail=detail,
        )
        self._inputs.put_nowait(DeviceStatusChanged(new))


__all__ = [
    "Announcer",
    "Device",
    "DeviceConfigError",
    "DeviceError",
    "DeviceHealth",
    "DeviceInput",
    "DeviceKind",
    "DeviceStatusChanged",
    "DeviceTimeout",
    "GpioPanel",
    "HallCounts",
    "HealthState",
    "HealthTracker",
    "HelpButton",
    "IdCardRead",
    "InputMark",
    "InputQueue",
    "KeyPress",
    "Rating",
    "RatingReason",
    "ScreenBoard",
    "TerminalBus",
    "TerminalInput",
    "TicketButton",
    "TicketPrint",
    "TicketPrinter",
    "WindowKey",
    "stop_if_cancelled",
]
