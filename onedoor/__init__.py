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

__all__ = ["__version__"]
