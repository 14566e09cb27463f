"""Checksums used on the RS485 buses.

CRC-16/MODBUS (poly 0xA001 reflected, init 0xFFFF) guards both Modbus RTU and
the LED-screen frame; it goes on the wire low byte first.
"""

from __future__ import annotations


def _make_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_TABLE = _make_table()


def crc16_modbus(data: bytes | bytearray | memoryview) -> int:
    """CRC-16/MODBUS of ``data`` (check value for b"123456789" is 0x4B37)."""
    crc = 0xFFFF
    for byte in bytes(data):
        crc = (crc >> 8) ^ _TABLE[(crc ^ byte) & 0xFF]
    return crc


def crc16_modbus_bytes(data: bytes | bytearray | memoryview) -> bytes:
    """The CRC as it goes on the wire: two bytes, low byte first."""
    return crc16_modbus(data).to_bytes(2, "little")


def sum8(data: bytes | bytearray | memoryview) -> int:
    """Arithmetic sum modulo 256 (the vendor caller frame's checksum)."""
    return sum(bytes(data)) & 0xFF


__all__ = ["crc16_modbus", "crc16_modbus_bytes", "sum8"]
