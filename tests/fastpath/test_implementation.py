"""Which core is in use, and the switch that forces the pure one."""

from __future__ import annotations

import os
import subprocess
import sys
from array import array
from typing import Any

import pytest

import fastpath
from tests.fastpath.conftest import NO_EXTENSIONS, REQUIRE_EXTENSIONS


def test_compiled_core_loaded_when_required() -> None:
    # `make test` sets ONEDOOR_REQUIRE_EXTENSIONS=1: a silent fallback to the
    # slow twin must fail the build, not pass unnoticed.
    if NO_EXTENSIONS:
        assert fastpath.IMPLEMENTATION == "python"
    elif REQUIRE_EXTENSIONS:
        assert fastpath.IMPLEMENTATION == "cython"
    else:
        assert fastpath.IMPLEMENTATION in ("cython", "python")


def test_no_extensions_variable_forces_the_pure_twin() -> None:
    env = {**os.environ, "ONEDOOR_NO_EXTENSIONS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", "import fastpath; print(fastpath.IMPLEMENTATION)"],
        env=env, capture_output=True, text=True, check=True,
    )
    assert out.stdout.strip() == "python"


def test_core_api_basics(core_class: Any) -> None:
    core = core_class([0, 60_000], [0, 100, 300])
    w0 = core.add_window([(0, 1), (1, 2)], False, 0)
    w1 = core.add_window([(1, 1)], True, 2)
    assert (w0, w1, core.n_windows) == (0, 1, 2)
    core.push(5, 0, 0, 1_000, 10)
    core.push(7, 1, 1, 2_000, 20)
    core.push(9, 1, 0, 1_500, 30)
    assert len(core) == 3
    assert 7 in core
    assert 6 not in core
    assert core.waiting(1) == 2
    assert core.queued(1) == [9, 7]
    assert core.select(w0, 3_000) == 7   # 2 x 200 x 1000 beats 2 x 100 x 1500
    assert core.select(w1, 3_000) == 7   # priority window
    out = array("q", [0, 0])
    core.select_many(array("q", [0, 1]), array("q", [3_000, 3_000]), out)
    assert list(out) == [7, 7]
    core.remove(7)
    assert core.select(w1, 3_000) == 9
    with pytest.raises(KeyError):
        core.remove(7)
    with pytest.raises(ValueError, match="already queued"):
        core.push(9, 0, 0, 0, 0)
    with pytest.raises(IndexError):
        core.push(11, 2, 0, 0, 0)
    with pytest.raises(IndexError):
        core.select(5, 0)
    with pytest.raises(IndexError):
        core.add_window([(3, 1)], False, 0)
    core.record_call(w1, 1)
    core.record_call(w1, 1)
    assert core.priority_streak(w1) == 2
    core.record_call(w1, 2)  # an appointment neither counts nor resets
    assert core.priority_streak(w1) == 2
    core.record_call(w1, 0)
    assert core.priority_streak(w1) == 0


def test_core_keeps_order_through_many_pushes_and_pops(core_class: Any) -> None:
    # Exercise the Cython growth paths: left-grow, compaction, realloc, middle inserts.
    core = core_class([0], [0, 0, 0])
    w = core.add_window([(0, 1)], False, 0)
    expected = []
    for tid in range(500):
        key = (tid * 7919) % 1000
        core.push(tid, 0, 0, key, tid)
        expected.append((key, tid))
        if tid % 3 == 0:
            head = core.select(w, 10_000)
            oldest = min(expected)
            assert head == oldest[1]
            core.remove(head)
            expected.remove(oldest)
    assert core.queued(0) == [tid for _key, tid in sorted(expected)]


def test_one_selector_falls_back_or_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    from fastpath import _core_py
    from fastpath.extensions import load_twin

    monkeypatch.delenv("ONEDOOR_NO_EXTENSIONS", raising=False)
    monkeypatch.delenv("ONEDOOR_REQUIRE_EXTENSIONS", raising=False)
    assert load_twin("fastpath._absent_c", "fastpath._core_py") == (_core_py, "python")
    monkeypatch.setenv("ONEDOOR_REQUIRE_EXTENSIONS", "1")
    with pytest.raises(ImportError, match="_absent_c is not built"):
        load_twin("fastpath._absent_c", "fastpath._core_py")
    monkeypatch.setenv("ONEDOOR_NO_EXTENSIONS", "1")  # forcing the twin wins
    assert load_twin("fastpath._core_c", "fastpath._core_py") == (_core_py, "python")
