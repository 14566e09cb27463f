"""The ticket dispatcher and the queue simulator.

``fastpath.Dispatcher`` decides which ticket each window calls next, by the
policy of docs/ARCHITECTURE.md ("The dispatch policy"). The hot part runs in a
Cython extension when it is built
(``IMPLEMENTATION == "cython"``) and in its pure-Python twin otherwise
(``IMPLEMENTATION == "python"``, or forced with ``ONEDOOR_NO_EXTENSIONS=1``);
both give the same answers.

``fastpath.simulate`` is the queue simulator over the same policy (its engine
is compiled too: ``SIM_IMPLEMENTATION``), ``fastpath.predict`` the wait
prediction, ``fastpath.staffing`` the what-if staffing search and
``fastpath.advice`` the live staffing advice (a breach seen coming within the
hour, and the move that prevents it).
"""

from fastpath.core import IMPLEMENTATION
from fastpath.dispatcher import Dispatcher, WindowStatus
from fastpath.predict import HallState, Prediction, predict_wait
from fastpath.simulate import IMPLEMENTATION as SIM_IMPLEMENTATION
from fastpath.simulate import HallModel, ModelError, load_hall, simulate_day
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
    "SIM_IMPLEMENTATION",
    "ConfigError",
    "DispatchError",
    "Dispatcher",
    "HallModel",
    "HallState",
    "InvalidTransition",
    "ModelError",
    "NoCurrentTicket",
    "NoShowPolicy",
    "Policy",
    "Prediction",
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
    "load_hall",
    "predict_wait",
    "simulate_day",
]
