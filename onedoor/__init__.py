"""onedoor: queueing and fleet system for government service halls.

This package holds only what the four parts share: the ``onedoor`` command
line (:mod:`onedoor.cli`) and logging setup (:mod:`onedoor.log`). The parts
themselves live in the top-level packages ``fastpath``, ``firmware_protocols``,
``edge`` and ``central``.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("onedoor")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"



def software_token(version: str) -> str:
    """What a daemon of release ``version`` reports as its software (``state``, ``/status``),
    and what the central compares with the release a site should run."""
    return f"onedoor-{version}"


__all__ = ["__version__", "software_token"]
