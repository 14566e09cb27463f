"""Edge test fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from edge.devices.voice import make_clips


@pytest.fixture(autouse=True)
def _fresh_structlog() -> Iterator[None]:
    """CLI tests configure structlog onto pytest's captured stderr, closed after the test;
    later tests (and their daemons' tasks) must not log into that closed file."""
    yield
    structlog.reset_defaults()


@pytest.fixture(scope="session")
def clips_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The generated voice clips, made once for the simulated-hall tests."""
    directory = tmp_path_factory.mktemp("clips")
    make_clips(directory)
    return directory
