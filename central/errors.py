"""Errors of the central fleet manager.

::

    CentralError(Exception)
    ├── ConfigError(CentralError, ValueError)   a setting is missing, unknown or malformed
    ├── UnknownSite(CentralError, KeyError)     a site id that is not in the registry
    ├── UnknownAlarm(CentralError, KeyError)    an alarm id that does not exist
    └── SeedError(CentralError, ValueError)     the registry seed file is malformed

Bad MQTT payloads are not errors of this package: they raise
:class:`firmware_protocols.mqtt_topics.InvalidMessage`, which ingest counts and logs.
"""

from __future__ import annotations


class CentralError(Exception):
    """Base of every error raised by :mod:`central`."""


class ConfigError(CentralError, ValueError):
    """The configuration is invalid; the message names the setting."""


class UnknownSite(CentralError, KeyError):
    """The site id is not in the registry."""


class UnknownAlarm(CentralError, KeyError):
    """No alarm has this id."""


class SeedError(CentralError, ValueError):
    """The registry seed data is malformed; the message names the file and line."""


__all__ = ["CentralError", "ConfigError", "SeedError", "UnknownAlarm", "UnknownSite"]
