"""Edge test fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog


@pytest.fixture(autouse=True)
def _fresh_structlog() -> Iterator[None]:
    """CLI tests configure structlog onto pytest's captured stderr, closed after the test;
    later tests (and their daemons' tasks) must not log into that closed file."""
    yield
    structlog.reset_defaults()
