"""Serial line settings and the time bytes take on the wire with them (pure values).

A character on an asynchronous serial line is a start bit, the data bits, a
parity bit unless the parity is none, and the stop bits: 10 bits for 8N1, 11
for 8E1 (the Modbus serial-line default) or 8N2. The drivers use this to wait
as long as a frame really takes (``edge.devices.serial_port``); the simulators
use it to take that long (``firmware_protocols.simulators.serial_link``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

Parity = Literal["N", "E", "O"]
PARITIES: Final[tuple[Parity, ...]] = ("N", "E", "O")
MODBUS_GAP_FIXED_ABOVE: Final = 19200  # baud; above it t3.5 is fixed at 1.75 ms
MODBUS_GAP_FIXED_S: Final = 0.00175


@dataclass(frozen=True, slots=True)
class SerialTiming:
    """One UART's settings: baud rate, parity (N/E/O), stop bits, data bits."""

    baud: int
    parity: Parity = "N"
    stop_bits: int = 1
    data_bits: int = 8

    def __post_init__(self) -> None:
        if self.baud <= 0:
            raise ValueError(f"baud must be positive, got {self.baud}")
        if self.parity not in PARITIES or self.stop_bits not in (1, 2):
            raise ValueError(f"unsupported framing {self.framing}")
        if not 5 <= self.data_bits <= 8:
            raise ValueError(f"data bits must be 5..8, got {self.data_bits}")

    @property
    def framing(self) -> str:
        """``"8N1"``, ``"8E1"``, ``"8N2"``..."""
        return f"{self.data_bits}{self.parity}{self.stop_bits}"

    @property
    def bits_per_char(self) -> int:
        return 1 + self.data_bits + (self.parity != "N") + self.stop_bits

    @property
    def char_seconds(self) -> float:
        return self.bits_per_char / self.baud

    def transmit_seconds(self, n_bytes: int) -> float:
        """Time to clock ``n_bytes`` out of a UART at these settings, back to back."""
        return n_bytes * self.char_seconds

    def frame_gap_seconds(self) -> float:
        """Modbus RTU t3.5; fixed at 1.75 ms above 19200 baud, as the spec says."""
        if self.baud > MODBUS_GAP_FIXED_ABOVE:
            return MODBUS_GAP_FIXED_S
        return 3.5 * self.char_seconds

    def __str__(self) -> str:
        return f"{self.baud} {self.framing}"


__all__ = ["PARITIES", "Parity", "SerialTiming"]
