"""Pick the queue core: the Cython module when it is built, else the pure twin.

``ONEDOOR_NO_EXTENSIONS=1`` forces the pure-Python twin (as yarl's
``YARL_NO_EXTENSIONS``); type checkers always see the pure one.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

NO_EXTENSIONS = bool(os.environ.get("ONEDOOR_NO_EXTENSIONS"))

if TYPE_CHECKING or NO_EXTENSIONS:
    from fastpath._core_py import NO_TICKET, QueueCore

    IMPLEMENTATION = "python"
else:
    try:
        from fastpath._core_c import NO_TICKET, QueueCore

        IMPLEMENTATION = "cython"
    except ImportError:  # not compiled here: the twin gives the same answers
        from fastpath._core_py import NO_TICKET, QueueCore

        IMPLEMENTATION = "python"

__all__ = ["IMPLEMENTATION", "NO_TICKET", "QueueCore"]
