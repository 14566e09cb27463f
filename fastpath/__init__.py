"""The ticket dispatcher and the queue simulator.

``fastpath.Dispatcher`` decides which ticket each window calls next, by the
policy of DESIGN.md. The hot part runs in a Cython extension when it is built
(``IMPLEMENTATION == "cython"``) and in its pure-Python twin otherwise
(``IMPLEMENTATION == "python"``, or forced with ``ONEDOOR_NO_EXTENSIONS=1``);
both give the same answers.
"""

from fastpath.core import IMPLEMENTATION
from fastpath.dispatcher import Dispatcher, WindowStatus
from fastpath.types import (
    ConfigError,
    DispatchError,
    InvalidTransition,
    NoCurrentTicket,
    NoShowPolicy,
    Policy,
    Service,
    Ticket,
    TicketClass,
    TicketState,
    UnknownService,
    UnknownTicket,
    UnknownWindow,
    WindowBusy,
    WindowClosed,
    WindowProfile,
    WindowState,
)

__all__ = [
    "IMPLEMENTATION",
    "ConfigError",
    "DispatchError",
    "Dispatcher",
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
    "WindowStatus",
]
