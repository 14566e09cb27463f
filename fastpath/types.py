"""Domain types and constants shared by both dispatcher implementations.

Everything that both the pure-Python core and the Cython core need lives here
once (yarl learnt the hard way that two copies of a constant drift apart).

Units: every time is an integer number of **milliseconds** (the caller picks
the epoch: Unix ms on the edge, ms since opening in the simulator), and every
weight is an integer, so both implementations compute the same scores bit for
bit on any CPU.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

# Ticket classes, as small ints because the cores index arrays with them.
NORMAL = 0
PRIORITY = 1  # 老弱病残孕军: elderly, sick, disabled, pregnant, military
APPOINTMENT = 2  # 预约: ordered by booked time
N_CLASSES = 3

# Upper bounds that keep ``weight * (100 + class_pct) * wait`` inside int64.
MAX_SERVICE_WEIGHT = 100
MAX_CLASS_WEIGHT_PCT = 10_000
MAX_TIME_MS = 1 << 42  # ~139 years of milliseconds
MINUTE_MS = 60_000

_PREFIX_RE = re.compile(r"^[A-Z]{1,2}$")


class TicketClass(enum.IntEnum):
    NORMAL = NORMAL
    PRIORITY = PRIORITY
    APPOINTMENT = APPOINTMENT

    @property
    def label(self) -> str:
        """The class as configs, the kiosk API and the MQTT contract spell it: ``"normal"``."""
        return self.name.lower()


CLASS_BY_LABEL: Final[Mapping[str, TicketClass]] = MappingProxyType(
    {klass.label: klass for klass in TicketClass})
"""``"normal"`` -> TicketClass.NORMAL: the one table from a class's name to the class."""


class TicketState(enum.Enum):
    WAITING = "waiting"
    CALLED = "called"
    SERVING = "serving"
    DONE = "done"
    NO_SHOW = "no_show"
    CANCELLED = "cancelled"


class WindowState(enum.Enum):
    CLOSED = "closed"  # nobody signed in
    OPEN = "open"
    PAUSED = "paused"  # 暂停: signed in, calls nobody new


class NoShowPolicy(enum.Enum):
    REQUEUE_ONCE = "requeue_once"  # back of its queue once, dropped the second time
    DROP = "drop"


# --- errors -----------------------------------------------------------------
#
#   DispatchError(ValueError)
#   ├── ConfigError             services / windows / policy that cannot work
#   ├── UnknownService(KeyError-like lookups)
#   ├── UnknownWindow
#   ├── UnknownTicket
#   ├── WindowClosed            calling at a signed-out or paused window
#   ├── WindowBusy              the window still holds a ticket
#   ├── NoCurrentTicket         recall/finish/no-show with nothing at the window
#   └── InvalidTransition       e.g. transferring a finished ticket
#
# Every operation validates before it changes anything, so a raised error
# always leaves the dispatcher exactly as it was.


class DispatchError(ValueError):
    """Base of every dispatcher error."""


class ConfigError(DispatchError):
    """The hall's services, windows or policy are inconsistent."""


class UnknownService(DispatchError):
    def __init__(self, service_id: str) -> None:
        super().__init__(f"unknown service {service_id!r}")
        self.service_id = service_id


class UnknownWindow(DispatchError):
    def __init__(self, window: int) -> None:
        super().__init__(f"unknown window {window}")
        self.window = window


class UnknownTicket(DispatchError):
    def __init__(self, number: str) -> None:
        super().__init__(f"unknown ticket {number!r}")
        self.number = number


class WindowClosed(DispatchError):
    def __init__(self, window: int, state: WindowState) -> None:
        super().__init__(f"window {window} is {state.value}, it cannot call")
        self.window = window
        self.state = state


class WindowBusy(DispatchError):
    def __init__(self, window: int, number: str) -> None:
        super().__init__(f"window {window} still holds ticket {number}; finish or transfer it")
        self.window = window
        self.number = number


class NoCurrentTicket(DispatchError):
    def __init__(self, window: int) -> None:
        super().__init__(f"window {window} holds no ticket")
        self.window = window


class InvalidTransition(DispatchError):
    def __init__(self, number: str, state: TicketState, action: str) -> None:
        super().__init__(f"ticket {number} is {state.value}: cannot {action}")
        self.number = number
        self.state = state
        self.action = action


# --- configuration ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Service:
    """A service the hall offers, e.g. 社保 with prefix A."""

    id: str
    prefix: str
    name_zh: str
    name_en: str = ""
    sla_minutes: int = 0  # 0: no SLA override for this service

    def __post_init__(self) -> None:
        if not self.id:
            raise ConfigError("service id must not be empty")
        if not _PREFIX_RE.match(self.prefix):
            raise ConfigError(
                f"service {self.id!r}: prefix {self.prefix!r} must be 1-2 capital letters A-Z"
            )
        if not 0 <= self.sla_minutes <= 24 * 60:
            raise ConfigError(f"service {self.id!r}: sla_minutes must be 0..1440")


@dataclass(frozen=True, slots=True)
class WindowProfile:
    """What a window serves: service id → weight, priority window flag, ratio cap.

    ``ratio_cap`` N > 0: after N consecutive priority-class calls at this
    window, the next call takes a normal ticket if one waits (0: no cap).
    """

    number: int
    services: Mapping[str, int]
    priority_window: bool = False  # 优先服务专窗
    ratio_cap: int = 0

    def __post_init__(self) -> None:
        if self.number < 1:
            raise ConfigError(f"window number must be >= 1, got {self.number}")
        if not self.services:
            raise ConfigError(f"window {self.number} serves no service")
        for service_id, weight in self.services.items():
            if not 1 <= weight <= MAX_SERVICE_WEIGHT:
                raise ConfigError(
                    f"window {self.number}: weight of {service_id!r} must be "
                    f"1..{MAX_SERVICE_WEIGHT}, got {weight}"
                )
        if self.ratio_cap < 0:
            raise ConfigError(f"window {self.number}: ratio_cap must be >= 0")


@dataclass(frozen=True, slots=True)
class Policy:
    """Hall-wide dispatch settings.

    Class weights are in percent: ``priority_weight_pct=100`` means a priority
    ticket's wait counts (1 + 1.00) = 2 times (the ageing of ``fastpath/_core_py.py``).
    """

    priority_weight_pct: int = 100
    appointment_weight_pct: int = 300
    appointment_grace_minutes: int = 10
    no_show: NoShowPolicy = NoShowPolicy.REQUEUE_ONCE
    number_width: int = 3

    def __post_init__(self) -> None:
        for name in ("priority_weight_pct", "appointment_weight_pct"):
            value = getattr(self, name)
            if not 0 <= value <= MAX_CLASS_WEIGHT_PCT:
                raise ConfigError(f"{name} must be 0..{MAX_CLASS_WEIGHT_PCT}, got {value}")
        if not 0 <= self.appointment_grace_minutes <= 24 * 60:
            raise ConfigError("appointment_grace_minutes must be 0..1440")
        if not 1 <= self.number_width <= 6:
            raise ConfigError("number_width must be 1..6")

    def class_weights_pct(self) -> tuple[int, int, int]:
        return (0, self.priority_weight_pct, self.appointment_weight_pct)

    @property
    def appointment_grace_ms(self) -> int:
        """The grace period of :meth:`appointment_late`, the one constant of the rule
        (the simulator engines take it from here)."""
        return self.appointment_grace_minutes * MINUTE_MS

    def appointment_late(self, now_ms: int, booked_ms: int) -> bool:
        """A booked citizen checking in at ``now_ms`` is past the grace period: the
        ticket becomes a walk-in (normal class, queued from now)."""
        return now_ms > booked_ms + self.appointment_grace_ms


# --- tickets ----------------------------------------------------------------


def number_order(prefix: str, counter: int) -> int:
    """Sort key of a ticket number: the order of the string "A012" as an int.

    Prefixes sort as strings ("A" < "AB" < "B"), then the counter; the cores
    break ties with it, so the tie-break is the ticket number itself.
    """
    first = ord(prefix[0]) - 64
    second = ord(prefix[1]) - 64 if len(prefix) > 1 else 0
    return ((first * 27 + second) << 32) | counter


@dataclass(frozen=True, slots=True)
class Ticket:
    """A snapshot of one ticket; the dispatcher hands out fresh ones."""

    number: str
    service_id: str
    klass: TicketClass
    issued_ms: int
    key_ms: int  # what the queue orders by: arrival, or booked time for appointments
    state: TicketState
    window: int | None = None
    recalls: int = 0
    requeued: bool = False
    transfers: int = 0
    late_appointment: bool = False  # booked, but checked in past the grace period
    called_ms: int | None = None
    served_ms: int | None = None
    finished_ms: int | None = None


__all__ = [
    "APPOINTMENT",
    "CLASS_BY_LABEL",
    "MINUTE_MS",
    "NORMAL",
    "N_CLASSES",
    "PRIORITY",
    "ConfigError",
    "DispatchError",
    "InvalidTransition",
    "NoCurrentTicket",
    "NoShowPolicy",
    "Policy",
    "Service",
    "Ticket",
    "TicketClass",
    "TicketState",
    "UnknownService",
    "UnknownTicket",
    "UnknownWindow",
    "WindowBusy",
    "WindowClosed",
    "WindowProfile",
    "WindowState",
    "number_order",
]
