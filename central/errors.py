"""Errors of the central fleet manager.

::

    CentralError(Exception)
    ├── ConfigError(CentralError, ValueError)       a setting is missing, unknown or malformed
    ├── SeedError(CentralError, ValueError)         the registry seed file is malformed
    ├── BackupError(CentralError)                   a backup or restore failed or was refused
    └── RequestError(CentralError)                  a refused request; carries its HTTP status
        ├── BadRequest(RequestError, ValueError)         400  e.g. a Host not allowed
        ├── AuthError(RequestError)                      401
        │   ├── Unauthenticated(AuthError)               401  no, unknown or revoked credentials
        │   └── Forbidden(AuthError)                     403  role too low, CSRF or cross-origin
        │       └── OutOfScope(Forbidden)                    a site or town not in the caller's
        ├── NotFound(RequestError, LookupError)          404
        │   ├── UnknownSite(NotFound, KeyError)              a site id not in the registry
        │   ├── UnknownAlarm(NotFound, KeyError)             an alarm id that does not exist
        │   ├── UnknownDevice(NotFound, KeyError)            no edge device of the site has this id
        │   ├── UnknownCommand(NotFound, KeyError)           a command id never issued
        │   ├── UnknownService(NotFound, KeyError)           a service code a site does not offer
        │   ├── UnknownWindow(NotFound, KeyError)            a window number a site does not have
        │   ├── UnknownToken(NotFound, KeyError)             no active token with this id
        │   ├── UnknownUser(NotFound, KeyError)              no account with this login name
        │   └── UnknownBadRating(NotFound, KeyError)         no 差评 case with this id
        ├── Conflict(RequestError)                       409  the state forbids it now
        ├── PayloadTooLarge(RequestError)                413  a body over http_max_body_bytes
        ├── InvalidRequest(RequestError, ValueError)     422  values the read model refuses
        │   ├── CommandRefused(InvalidRequest)               the MQTT contract refuses a command
        │   └── RegistryRefused(InvalidRequest)              registry changes with problems
        ├── TooManyRequests(RequestError)                429  over a limit; Retry-After
        └── Unavailable(RequestError)                    503  e.g. a read-only process

    and, beside the classes they concern:

    CentralError
    ├── central.mqtt_wire.MqttWireError(CentralError, ValueError)
    │       the broker sent bytes the central's MQTT reader cannot accept
    └── central.mqtt_client.SharedSubscriptionsUnavailable(CentralError, ConnectionError)
            the broker refused the ``$share/`` filters the central asked for

Every :class:`RequestError` becomes the JSON answer ``{"detail": str(error)}``
with its ``status_code`` and ``headers`` (one handler in :mod:`central.app`),
the way datasette's ``Base400`` errors do: the read model and the service raise
them, and neither the API nor the pages translate them by hand.

Bad MQTT payloads are not errors of this package: they raise
:class:`firmware_protocols.mqtt_topics.InvalidMessage`, which ingest counts and
logs. Programming errors stay built-ins (``TypeError``, ``ValueError`` for a
naive datetime given to a UTC column, ``NotImplementedError`` for a database
other than SQLite or PostgreSQL).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar


class CentralError(Exception):
    """Base of every error raised by :mod:`central`."""


class ConfigError(CentralError, ValueError):
    """The configuration is invalid; the message names the setting."""


class SeedError(CentralError, ValueError):
    """The registry seed data is malformed; the message names the file and line."""


class BackupError(CentralError):
    """A backup or restore failed (the tool's message) or was refused (a non-empty target)."""


class RequestError(CentralError):
    """A request the central refuses; ``status_code`` and ``headers`` make the HTTP answer."""

    status_code: ClassVar[int] = 400

    @property
    def headers(self) -> dict[str, str] | None:
        return None


class BadRequest(RequestError, ValueError):
    status_code = 400


class AuthError(RequestError):
    """Who is calling is not established (401) or may not do this (403)."""

    status_code = 401

    @property
    def headers(self) -> dict[str, str] | None:
        return {"WWW-Authenticate": "Bearer"} if self.status_code == 401 else None


class Unauthenticated(AuthError):
    """No credentials, or credentials that do not check out."""

    status_code = 401


class Forbidden(AuthError):
    """Authenticated (or not needed), but the request is not allowed."""

    status_code = 403


class OutOfScope(Forbidden):
    """The caller's account covers some towns only, and this site or town is not one of them
    (Chinese first: the dashboard shows the text)."""

    def __init__(self, what: str) -> None:
        super().__init__(f"不在您的管辖范围 / {what} is outside the towns of this account")


class NotFound(RequestError, LookupError):
    """Nothing has this id. ``str()`` is the message (not ``KeyError``'s quoted repr)."""

    status_code = 404
    what: ClassVar[str] = "object"

    def __init__(self, key: Any) -> None:
        super().__init__(key)
        self.key = key

    def __str__(self) -> str:
        return f"unknown {self.what} {self.key!r}"


class UnknownSite(NotFound, KeyError):
    """The site id is not in the registry."""

    what = "site"


class UnknownAlarm(NotFound, KeyError):
    """No alarm has this id."""

    what = "alarm"

    def __str__(self) -> str:
        return f"unknown alarm {self.key}"


class UnknownDevice(NotFound, KeyError):
    """No edge device of the site has this id (it never sent its state)."""

    what = "device"


class UnknownCommand(NotFound, KeyError):
    """No command has this id."""

    what = "command"

    def __str__(self) -> str:
        return f"unknown command {self.key}"


class UnknownService(NotFound, KeyError):
    """The site offers no service with this code."""

    what = "service"


class UnknownWindow(NotFound, KeyError):
    """The site has no window with this number."""

    what = "window"

    def __str__(self) -> str:
        return f"unknown window {self.key}"


class UnknownToken(NotFound, KeyError):
    """No active token has this id."""

    what = "token"

    def __str__(self) -> str:
        return f"no active token {self.key!r}"


class UnknownUser(NotFound, KeyError):
    """No account has this login name."""

    what = "user"


class UnknownBadRating(NotFound, KeyError):
    """No 差评 case has this id."""

    what = "差评 case"

    def __str__(self) -> str:
        return f"unknown 差评 case {self.key}"


class Conflict(RequestError):
    """The request is valid but the current state forbids it (a site id taken, an online
    site to retire without ``force``, rectifying a 差评 nobody contacted)."""

    status_code = 409


class PayloadTooLarge(RequestError):
    status_code = 413


class InvalidRequest(RequestError, ValueError):
    """Well-formed, but the values are refused (a reversed date range, an unknown metric)."""

    status_code = 422


class CommandRefused(InvalidRequest):
    """The command does not fit the MQTT contract; the message says which field and why."""


class RegistryRefused(InvalidRequest):
    """Registry changes that may not be made; ``problems`` lists every one (file, line,
    site, field), and the message shows them."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        shown = self.problems[:50]
        more = f"\n  ... and {len(self.problems) - 50} more" if len(self.problems) > 50 else ""
        super().__init__(f"registry change refused, {len(self.problems)} problem(s):\n  "
                         + "\n  ".join(shown) + more)  # fmt: skip


class TooManyRequests(RequestError):
    """Over a rate or count limit; ``retry_after_s`` says when to try again."""

    status_code = 429

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

    @property
    def headers(self) -> dict[str, str] | None:
        return {"Retry-After": str(max(1, math.ceil(self.retry_after_s)))}


class Unavailable(RequestError):
    status_code = 503


__all__ = [
    "AuthError",
    "BackupError",
    "BadRequest",
    "CentralError",
    "CommandRefused",
    "ConfigError",
    "Conflict",
    "Forbidden",
    "InvalidRequest",
    "NotFound",
    "OutOfScope",
    "PayloadTooLarge",
    "RegistryRefused",
    "RequestError",
    "SeedError",
    "TooManyRequests",
    "Unauthenticated",
    "Unavailable",
    "UnknownAlarm",
    "UnknownBadRating",
    "UnknownCommand",
    "UnknownService",
    "UnknownSite",
    "UnknownToken",
    "UnknownUser",
    "UnknownWindow",
]
