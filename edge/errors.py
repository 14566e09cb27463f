"""Errors of the edge daemon core (the device drivers keep their own in ``edge.devices``).

::

    EdgeError(Exception)
    ├── ConfigInvalid(EdgeError, ValueError)     a config file with problems; ``errors`` lists
    │                                            every one with its key path
    ├── JournalError(EdgeError)                  the SQLite journal cannot be used
    │   ├── ReplayDiverged(JournalError)         replaying today's events gave other numbers
    │   └── AckRefused(JournalError)             the central's ack is far beyond this journal
    ├── CommandRejected(EdgeError, ValueError)   a hall command that cannot run now;
    │                                            carries the HTTP ``status`` for the API
    ├── OutputRefused(EdgeError, ValueError)     text a hall device cannot show or say
    ├── CommandFailed(EdgeError)                 a remote (MQTT) command not carried out;
    │                                            its message goes into ``cmd_result.error``
    └── HttpError(EdgeError)                     a refused local HTTP request (bad JSON,
                                                 unknown path ...); carries ``status``, ``code``
"""

from __future__ import annotations

from collections.abc import Sequence


class EdgeError(Exception):
    """Base of every edge core error."""


class ConfigInvalid(EdgeError, ValueError):
    """The configuration has problems; ``errors`` holds ``"key.path: message"`` strings."""

    def __init__(self, source: str, errors: Sequence[str]) -> None:
        self.source = source
        self.errors = tuple(errors)
        lines = "\n".join(f"  {error}" for error in self.errors)
        super().__init__(f"{source}: {len(self.errors)} problem(s)\n{lines}")


class JournalError(EdgeError):
    """The event journal cannot be opened, read or written."""


class ReplayDiverged(JournalError):
    """Folding the journal did not reproduce what the journal says happened."""


class AckRefused(JournalError):
    """An ack too far above the journal's last seq to be a torn tail; nothing changed."""

    def __init__(self, ack: int, last_seq: int) -> None:
        super().__init__(f"ack {ack} is {ack - last_seq} above the journal's last seq "
                         f"{last_seq}: refused")
        self.ack = ack
        self.last_seq = last_seq


class CommandRejected(EdgeError, ValueError):
    """A hall command was refused; nothing was journaled and nothing changed."""

    def __init__(self, message: str, *, status: int = 409, code: str = "rejected") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class OutputRefused(EdgeError, ValueError):
    """Text no device of its kind can show or say (a notice outside the LED font)."""


class CommandFailed(EdgeError):
    """A command could not be carried out; the message goes into ``cmd_result.error``."""


class HttpError(EdgeError):
    """A local HTTP request refused with ``status`` and a short machine-readable ``code``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


__all__ = [
    "AckRefused", "CommandFailed", "CommandRejected", "ConfigInvalid", "EdgeError", "HttpError",
    "JournalError", "OutputRefused", "ReplayDiverged",
]
