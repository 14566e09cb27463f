"""The mark of one latched window-terminal input: the exactly-once contract's value.

A terminal driver (:mod:`edge.devices.terminals`) stamps each key press and rating
with an :class:`InputMark`; the journal (:mod:`edge.journal`) stores the mark in the
transaction of the input's effect; at start the daemon hands the stored marks back
to the driver, so an input the terminal still holds after a crash is known as
handled, acknowledged and not handed on again. The value lives here, below both,
so that neither the storage imports a device type nor the drivers the storage.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class InputMark:
    """Which latched terminal input a key press or rating answers.

    ``code`` is the input as the Modbus map encodes it (kind << 8 | key code or
    rating); ``boot`` the terminal's BOOT_ID (0 on the vendor bus, which has none).
    """

    device: str  # the driver's device id
    address: int  # the terminal's bus address
    sequence: int  # the terminal's input sequence
    code: int
    boot: int = 0


__all__ = ["InputMark"]
