"""Every fastpath test runs against both cores, the way yarl and frozenlist do it."""

from __future__ import annotations

import importlib
from typing import Any

import pytest

from fastpath import _core_py, _sim_py
from fastpath.extensions import no_extensions, require_extensions

NO_EXTENSIONS = no_extensions()
REQUIRE_EXTENSIONS = require_extensions()


def load_compiled(name: str) -> Any:
    """The compiled twin, or a skip (a failure when extensions are required)."""
    try:
        return importlib.import_module(name)
    except ImportError:
        if REQUIRE_EXTENSIONS:
            pytest.fail(f"{name} is not built but ONEDOOR_REQUIRE_EXTENSIONS=1")
        pytest.skip(f"{name} is not built")


IMPLEMENTATIONS = ["python"] if NO_EXTENSIONS else ["python", "cython"]


@pytest.fixture(params=IMPLEMENTATIONS)
def core_class(request: pytest.FixtureRequest) -> Any:
    if request.param == "python":
        return _core_py.QueueCore
    return load_compiled("fastpath._core_c").QueueCore


@pytest.fixture(params=IMPLEMENTATIONS)
def engine_class(request: pytest.FixtureRequest) -> Any:
    """The simulation engine of either twin."""
    if request.param == "python":
        return _sim_py.Engine
    return load_compiled("fastpath._sim_c").Engine
