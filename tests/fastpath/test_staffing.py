"""The staffing search: common random numbers, confidence, fresh-seed validation, output."""

from __future__ import annotations

import io
import itertools
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from fastpath.cli import ProgressBar
from fastpath.simulate import (
    IMPLEMENTATION,
    Arrivals,
    ModelError,
    example_hall,
    generate_arrivals,
    hall_from_dict,
)
from fastpath.staffing import (
    P90_SHARE,
    axis_ticks,
    evaluate_plan,
    find_plan,
    format_table,
    plot_hourly,
)
from fastpath.types import MINUTE_MS

HOUR = 60 * MINUTE_MS
COMPILED_ONLY = pytest.mark.skipif(
    IMPLEMENTATION == "python",
    reason="hundreds of simulated days of a 33- to 220-window hall: a second compiled, "
           "minutes pure (the twins agree: test_sim_parity)")


def test_staffing_finds_a_smaller_plan_each_removal_judged_with_confidence(
        tmp_path: Path) -> None:
    hall = example_hall("comprehensive_hall")
    arrivals = generate_arrivals(hall, 2)
    seen: list[tuple[int, int, str]] = []
    result = find_plan(hall, arrivals, 20, replications=4, max_replications=8,
                       progress=lambda d, t, label: seen.append((d, t, label)))
    proposed = result.proposed
    assert proposed is not None
    assert proposed.windows < hall.n_windows
    assert proposed.verdict(result.confidence_level) == "meets"
    assert result.validated  # and on seeds the search never used
    assert result.validation is not None
    assert result.validation.meets_estimate
    assert not set(result.validation.seeds) & set(proposed.seeds)
    # Minimal: one window fewer in any group was judged, and judged to miss the SLA.
    judged = {step.plan: step for step in result.trace}
    for group, count in enumerate(proposed.plan):
        if count:
            fewer = list(proposed.plan)
            fewer[group] -= 1
            assert judged[tuple(fewer)].verdict == "misses"
    # Every judgement carries its confidence; a "meets" is at least the level asked.
    for step in result.trace:
        assert 0.0 <= step.confidence <= 1.0
        if step.verdict == "meets" and step.phase != "validation (fresh seeds)":
            assert step.confidence >= result.confidence_level
    # Progress: a total fixed at the start, steps that only go forward, ending "done".
    assert len({total for _, total, _ in seen}) == 1
    assert [d for d, _, _ in seen] == sorted(d for d, _, _ in seen)
    assert seen[-1] == (seen[-1][1], seen[-1][1], "done")
    table = format_table(result)
    assert "合计 total" in table
    assert "confidence" in table
    assert "fresh-seed validation: 通过 holds" in table
    with pytest.raises(ModelError, match="SLA"):
        find_plan(hall, arrivals, 0)
    with pytest.raises(ModelError, match="confidence"):
        find_plan(hall, arrivals, 20, confidence=0.4)


def test_plans_are_compared_on_the_same_days() -> None:
    # Common random numbers: a plan with one more window can only help, day by day,
    # where two plans on independent draws would cross often.
    hall = example_hall("comprehensive_hall")
    arrivals = generate_arrivals(hall, 3)
    seeds = list(range(1, 7))
    fewer = evaluate_plan(hall, [11, 4, 11, 3], arrivals, seeds, 15)
    more = evaluate_plan(hall, [12, 4, 11, 3], arrivals, seeds, 15)
    for sid in ("gongan", "shebao"):
        pairs = zip(fewer.per_replication_p90_ms[sid], more.per_replication_p90_ms[sid],
                    strict=True)
        assert all(b <= a for a, b in pairs)
    assert fewer.seeds == more.seeds == tuple(seeds)


@COMPILED_ONLY
def test_the_reform_66_windows_to_33_is_found_and_holds_on_fresh_seeds() -> None:
    # 一窗通办: the comprehensive hall staffed as if its 33 windows were still 66
    # department windows. The search must find a materially smaller plan (the reform
    # merged 66 into 33), and that plan must hold on seeds it never saw.
    hall = example_hall("comprehensive_hall")
    arrivals = generate_arrivals(hall, 2026)
    doubled = hall.with_plan([2 * n for n in hall.plan])
    assert doubled.n_windows == 66
    result = find_plan(doubled, arrivals, 15)
    assert result.proposed is not None
    assert result.proposed.windows <= 36
    assert result.proposed.confidence >= 0.9
    assert result.validated
    assert result.validation is not None
    for outcome in result.validation.services.values():
        assert outcome.over_share <= P90_SHARE
        assert outcome.p90_ms <= 15 * MINUTE_MS


@COMPILED_ONLY
def test_the_city_hall_gives_up_its_idle_tax_windows() -> None:
    # The 220-window city hall: the tax windows idle at p90 0.0, so the plan must shrink
    # there (a search on shared random numbers separates plans a window apart).
    hall = example_hall("city_hall")
    arrivals = generate_arrivals(hall, 1)
    result = find_plan(hall, arrivals, 20, replications=6, max_replications=12)
    assert result.proposed is not None
    tax = [g.name for g in hall.groups].index("税务")
    assert result.proposed.plan[tax] <= hall.plan[tax] // 2
    assert result.proposed.windows <= 0.9 * hall.n_windows
    assert result.validated


def test_impossible_sla_reports_no_plan() -> None:
    hall = hall_from_dict({
        "hall": {"name": "t", "opens": "09:00", "closes": "17:00"},
        "services": [{"id": "a", "prefix": "A", "name_zh": "甲", "visitors_per_day": 0,
                      "service_minutes": 30, "distribution": "fixed"}],
        "windows": [{"name": "w", "count": 2, "services": {"a": 1}}],
    })
    burst = Arrivals(tuple(10 * HOUR + i for i in range(40)), (0,) * 40, (0,) * 40, (-1,) * 40)
    result = find_plan(hall, burst, 1, replications=2, max_replications=2, max_factor=2)
    assert result.proposed is None
    assert "no plan" in format_table(result)


def test_progress_bar_writes_lines_without_carriage_returns_off_a_terminal() -> None:
    stream = io.StringIO()  # a file or a pipe: no terminal to redraw on
    bar = ProgressBar(stream)
    for done, label in [(0, "current plan"), (1, "scale x0.5"), (1, "still scaling"),
                        (2, "scale x0.75"), (4, "done")]:
        bar(done, 4, label)
    text = stream.getvalue()
    assert "\r" not in text
    assert text.splitlines() == ["[0/4] current plan", "[1/4] scale x0.5", "[2/4] scale x0.75",
                                 "[4/4] done"]

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    ProgressBar(terminal)(1, 4, "scale x0.5")
    assert terminal.getvalue().startswith("\r[")


def test_axis_ticks_are_exact_round_values() -> None:
    # Labels rounded from fifths of an arbitrary top drew "4, 8, 11" at 3.75, 7.5, 11.25.
    assert axis_ticks(18.75) == [0, 5, 10, 15, 20]
    assert axis_ticks(60) == [0, 10, 20, 30, 40, 50, 60]
    assert axis_ticks(0.9) == [0, 0.2, 0.4, 0.6, 0.8, 1.0]
    for top in (1.0, 3.3, 7.7, 12.0, 25.0, 44.0, 180.0):
        ticks = axis_ticks(top)
        assert ticks[0] == 0
        assert ticks[-1] >= top
        assert len(ticks) <= 7
        step = ticks[1]
        assert all(abs(b - a - step) < 1e-9 for a, b in itertools.pairwise(ticks))


def test_plot_draws_the_whole_day_sla_apart_from_the_hourly_lines(tmp_path: Path) -> None:
    hall = example_hall("village_station")
    arrivals = generate_arrivals(hall, 2)
    result = find_plan(hall, arrivals, 10, replications=2, max_replications=2)
    out = tmp_path / "plot.png"
    layout = plot_hourly(result, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Every y label is the value at its tick.
    assert [label for _, label, _ in layout.y_ticks] == [f"{v:g}" for v, _, _ in layout.y_ticks]
    # The SLA is a whole-day p90 target: drawn in the whole-day column only.
    x0, x1, _ = layout.sla_line
    assert layout.day_area[0] <= x0 < x1 <= layout.day_area[1]
    assert x0 > layout.hourly_area[1]
    assert len(layout.whole_day_points) == 2
    # And in the pixels: no grey SLA line across the hourly area.
    image = Image.open(out).convert("RGB")
    _width, height = image.size
    pixels: Any = image.load()
    left, right = (int(v) for v in layout.hourly_area)
    for y in range(height):
        grey = sum(1 for x in range(left, right) if pixels[x, y] == (120, 120, 120))
        assert grey < (right - left) // 4, y
