"""Pick the queue core: the Cython module when it is built, else the pure twin.

The choice (and the ``ONEDOOR_NO_EXTENSIONS`` / ``ONEDOOR_REQUIRE_EXTENSIONS``
switches) is :func:`fastpath.extensions.load_twin`; type checkers always see
the pure one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastpath.extensions import load_twin

_core, IMPLEMENTATION = load_twin("fastpath._core_c", "fastpath._core_py")

if TYPE_CHECKING:
    from fastpath._core_py import NO_TICKET, QueueCore
else:
    NO_TICKET = _core.NO_TICKET
    QueueCore = _core.QueueCore

__all__ = ["IMPLEMENTATION", "NO_TICKET", "QueueCore"]
