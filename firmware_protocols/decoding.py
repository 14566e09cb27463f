"""What every sans-IO decoder in :mod:`firmware_protocols` shares.

A decoder takes bytes with ``receive_data(bytes)`` and hands out one event per
``next_event()`` call, or :data:`NEED_DATA` when the bytes it holds do not yet
make a whole frame (as h11 does). Every codec returns this one marker, and
callers test it one way: ``if event is NEED_DATA``.

:class:`Decoder` is that shape as a protocol, so I/O code that waits for a
reply (``edge.devices.serial_port``) can drive any of them.
"""

from __future__ import annotations

import enum
from typing import Final, Literal, Protocol, TypeVar


class _NeedData(enum.Enum):
    NEED_DATA = enum.auto()

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = _NeedData.NEED_DATA
"""Returned by ``next_event()`` when more bytes are needed."""
NeedData = Literal[_NeedData.NEED_DATA]

EventT_co = TypeVar("EventT_co", covariant=True)


class Decoder(Protocol[EventT_co]):
    """``receive_data`` then ``next_event`` until :data:`NEED_DATA`; errors are the codec's
    :class:`~firmware_protocols.errors.ProtocolError`, raised after the bad bytes are gone."""

    def receive_data(self, data: bytes) -> None: ...

    def next_event(self) -> EventT_co | NeedData: ...


__all__ = ["NEED_DATA", "Decoder", "NeedData"]
