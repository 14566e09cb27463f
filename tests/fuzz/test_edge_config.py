"""Fuzz the edge config loader (``edge.config``) with mutated TOML.

Property: whatever the file says, :func:`edge.config.parse_config` and
:func:`edge.config.load_config` return an ``EdgeConfig`` or raise
:class:`edge.errors.ConfigInvalid` (the documented error, every problem with
its key path). Mutations start from the shipped examples: structured (a value
replaced by any TOML value, a key deleted or added, a window duplicated) and
textual (lines deleted, duplicated, edited; characters typed).
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.config import EdgeConfig, load_config, parse_config
from edge.errors import ConfigInvalid
from tests.fuzz import strategies as fs
from tests.fuzz.harness import (
    base_config_text,
    edge_example_texts,
    fuzz_settings,
    known_findings_rejected,
)
from tests.fuzz.harness import test_timeout as fuzz_timeout

pytestmark = pytest.mark.timeout(fuzz_timeout())

EXAMPLES = [*edge_example_texts(), base_config_text()]
EXAMPLE_DIR = Path(__file__).resolve().parents[2] / "edge" / "examples"

mutated_configs = st.one_of(
    *(fs.mutated_toml_doc(tomllib.loads(text)) for text in EXAMPLES),
    *(fs.mutated_toml_text(text) for text in EXAMPLES),
)


def _refusal(load: Callable[[], EdgeConfig]) -> ConfigInvalid | None:
    """None when ``load`` gives a config, the ``ConfigInvalid`` when it refuses."""
    try:
        with known_findings_rejected():
            assert isinstance(load(), EdgeConfig)
    except ConfigInvalid as exc:
        return exc
    return None


def _assert_every_problem_has_a_key_path(refusal: ConfigInvalid | None) -> None:
    if refusal is None:
        return
    assert refusal.errors, "ConfigInvalid without a single problem"
    for problem in refusal.errors:  # "key.path: message"
        path, _, message = problem.partition(": ")
        assert path, problem
        assert message, problem


@fuzz_settings(0.5)
@given(text=mutated_configs, check_files=st.booleans())
def test_mutated_config_is_loaded_or_refused_with_key_paths(text: str, check_files: bool) -> None:
    refusal = _refusal(
        lambda: parse_config(
            text, source="fuzz.toml", base_dir=EXAMPLE_DIR, check_files=check_files
        )
    )
    _assert_every_problem_has_a_key_path(refusal)


@fuzz_settings(0.2)
@given(
    data=st.one_of(
        st.binary(max_size=300),
        st.sampled_from(EXAMPLES).map(str.encode).flatmap(lambda base: fs.mutated(st.just(base))),
    )
)
def test_config_file_of_any_bytes_is_loaded_or_refused(
    data: bytes, tmp_path_factory: pytest.TempPathFactory
) -> None:
    path = tmp_path_factory.mktemp("config") / "site.toml"
    path.write_bytes(data)
    _assert_every_problem_has_a_key_path(_refusal(lambda: load_config(path, check_files=False)))


def test_examples_load() -> None:
    """The seeds are valid configs, so every mutation is one step from a real file."""
    for text in EXAMPLES:
        assert isinstance(parse_config(text, base_dir=EXAMPLE_DIR, check_files=False), EdgeConfig)
