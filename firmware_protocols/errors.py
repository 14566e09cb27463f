"""The error tree shared by every codec in :mod:`firmware_protocols`.

::

    ProtocolError(ValueError)
    ├── LocalProtocolError    we were asked to build bytes we must not send
    │                         (text outside GB2312, a field out of range, ...)
    └── RemoteProtocolError   a device or peer sent bytes we cannot accept
        └── ChecksumError     a complete frame whose CRC/checksum is wrong

Decoders raise only these (never IndexError, UnicodeDecodeError, ...), so a
driver can catch ``ProtocolError``, count it, and keep serving.
"""

from __future__ import annotations


class ProtocolError(ValueError):
    """Base of every codec error."""


class LocalProtocolError(ProtocolError):
    """We were asked to encode something the protocol cannot carry."""


class RemoteProtocolError(ProtocolError):
    """The bytes received from a device or peer are malformed."""


class ChecksumError(RemoteProtocolError):
    """A complete frame arrived but its checksum does not match."""

    def __init__(self, message: str, *, expected: int, actual: int) -> None:
        super().__init__(f"{message}: expected {expected:#06x}, got {actual:#06x}")
        self.expected = expected
        self.actual = actual


__all__ = ["ChecksumError", "LocalProtocolError", "ProtocolError", "RemoteProtocolError"]
