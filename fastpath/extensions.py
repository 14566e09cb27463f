"""The extension selector: the compiled module when it is built, else its pure twin.

One helper for every Cython module of ``fastpath`` (the queue core and the
simulation engine), as yarl's ``_quoting.py`` does it:

* ``ONEDOOR_NO_EXTENSIONS=1`` forces the pure-Python twin;
* ``ONEDOOR_REQUIRE_EXTENSIONS=1`` turns a missing compiled module into an
  ImportError instead of a silent fallback (``make test`` sets it);
* otherwise a module that is not compiled here falls back to the twin, which
  gives the same answers.

Callers keep ``if TYPE_CHECKING:`` imports of the pure twin so type checkers
always see the pure one.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

NO_EXTENSIONS_VARIABLE = "ONEDOOR_NO_EXTENSIONS"
REQUIRE_EXTENSIONS_VARIABLE = "ONEDOOR_REQUIRE_EXTENSIONS"


def no_extensions() -> bool:
    """True when the environment forces the pure-Python twins."""
    return bool(os.environ.get(NO_EXTENSIONS_VARIABLE))


def require_extensions() -> bool:
    """True when the environment forbids falling back to the pure twins."""
    return bool(os.environ.get(REQUIRE_EXTENSIONS_VARIABLE)) and not no_extensions()


def load_twin(compiled: str, pure: str) -> tuple[ModuleType, str]:
    """The module to use and its implementation name, ``"cython"`` or ``"python"``."""
    if no_extensions():
        return importlib.import_module(pure), "python"
    try:
        return importlib.import_module(compiled), "cython"
    except ImportError as exc:
        if require_extensions():
            raise ImportError(
                f"{compiled} is not built but {REQUIRE_EXTENSIONS_VARIABLE}=1 "
                f"(build it with `make build`, or unset the variable to use {pure})",
                name=compiled,
            ) from exc
        return importlib.import_module(pure), "python"


__all__ = [
    "NO_EXTENSIONS_VARIABLE",
    "REQUIRE_EXTENSIONS_VARIABLE",
    "load_twin",
    "no_extensions",
    "require_extensions",
]
