"""Hall models, arrivals files and day summaries: what files say and what bad files get."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from fastpath.simulate import (
    EXAMPLES,
    ArrivalsError,
    ModelError,
    example_hall,
    format_clock,
    generate_arrivals,
    hall_from_dict,
    load_hall,
    parse_clock,
    percentile,
    read_arrivals,
    simulate_day,
    write_arrivals,
)
from fastpath.types import APPOINTMENT, MINUTE_MS, PRIORITY

HOUR = 60 * MINUTE_MS


def minimal() -> dict[str, Any]:
    return {
        "hall": {"name": "测试站", "opens": "09:00", "closes": "12:00"},
        "services": [{"id": "a", "prefix": "A", "name_zh": "甲", "visitors_per_day": 30,
                      "service_minutes": 5, "distribution": "fixed"}],
        "windows": [{"name": "w", "services": {"a": 1}}],
    }


def test_examples_match_design_numbers() -> None:
    city = example_hall("city_hall")
    assert city.n_windows == 220
    assert sum(m.visitors_per_day for m in city.services) == 7_000
    assert example_hall("comprehensive_hall").n_windows == 33
    assert example_hall("village_station").n_windows == 3
    for path in EXAMPLES.glob("*.toml"):
        assert load_hall(path).name


def test_generated_day_has_the_expected_volume_and_mix() -> None:
    city = example_hall("city_hall")
    arrivals = generate_arrivals(city, 1)
    assert 6_700 < len(arrivals) < 7_300  # Poisson(7000): ±3.6 σ
    assert list(arrivals.time_ms) == sorted(arrivals.time_ms)
    assert city.opens_ms <= arrivals.time_ms[0]
    assert arrivals.time_ms[-1] < city.arrivals_until_ms
    peak = sum(1 for t in arrivals.time_ms if 10 * HOUR <= t < 11 * HOUR)
    lunch = sum(1 for t in arrivals.time_ms if 12 * HOUR <= t < 13 * HOUR)
    assert peak > 2 * lunch  # the profile's 1.5 against 0.6
    assert PRIORITY in arrivals.klass
    assert APPOINTMENT in arrivals.klass
    assert generate_arrivals(city, 1) == arrivals
    assert generate_arrivals(city, 2) != arrivals
    assert len(generate_arrivals(city, 1, scale=0.5)) < 0.6 * len(arrivals)


def test_arrivals_csv_round_trip(tmp_path: Path) -> None:
    hall = example_hall("comprehensive_hall")
    arrivals = generate_arrivals(hall, 4)
    path = tmp_path / "arrivals.csv"
    write_arrivals(path, hall, arrivals)
    back = read_arrivals(path, hall)
    # The file keeps whole seconds.
    assert back.service == arrivals.service
    assert back.klass == arrivals.klass
    assert all(abs(a - b) < 1000 for a, b in zip(back.time_ms, arrivals.time_ms, strict=True))
    assert simulate_day(hall, 1, back).summary().tickets == len(arrivals)


@pytest.mark.parametrize(("line", "reason"), [
    ("25:00:00,shebao,normal,", "not a time"),
    ("09:00:00,nosuch,normal,", "unknown service"),
    ("09:00:00,shebao,vip,", "class must be"),
    ("09:00:00,shebao,appointment,", "needs booked"),
])
def test_bad_arrival_lines_name_the_line(tmp_path: Path, line: str, reason: str) -> None:
    hall = example_hall("comprehensive_hall")
    path = tmp_path / "a.csv"
    path.write_text(f"time,service,class,booked\n09:00:00,shebao,normal,\n{line}\n",
                    encoding="utf-8")
    with pytest.raises(ArrivalsError, match=reason) as info:
        read_arrivals(path, hall)
    assert info.value.line == 3
    assert str(path) in str(info.value)


def test_bad_arrivals_header_and_missing_file(tmp_path: Path) -> None:
    hall = example_hall("village_station")
    path = tmp_path / "a.csv"
    path.write_text("when,what\n", encoding="utf-8")
    with pytest.raises(ArrivalsError, match="header"):
        read_arrivals(path, hall)
    with pytest.raises(ModelError, match="cannot read"):
        read_arrivals(tmp_path / "missing.csv", hall)


def test_minimal_hall_and_exact_fixed_service_day() -> None:
    hall = hall_from_dict(minimal())
    assert hall.arrivals_until_ms == hall.closes_ms == 12 * HOUR
    day = simulate_day(hall, 3)
    summary = day.summary()
    assert summary.tickets == summary.done + summary.unserved
    # Fixed 5-minute service: every served ticket's end - start is exactly 5 minutes.
    c = day.columns
    assert all(e - s == 5 * MINUTE_MS for s, e in zip(c["start"], c["end"], strict=True)
               if s >= 0)


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d["hall"].update(opens="9am"), "not a time"),
    (lambda d: d["hall"].update(opens="13:00"), "opens < arrivals_until"),
    (lambda d: d["hall"].update(colour="red"), "unknown keys"),
    (lambda d: d["services"][0].update(visitors_per_day="many"), "wrong type"),
    (lambda d: d["services"][0].update(distribution="gamma"), "distribution must be"),
    (lambda d: d["services"][0].update(distribution="empirical"), "empirical"),
    (lambda d: d["services"][0].update(no_show=1.5), "within 0..1"),
    (lambda d: d["services"][0].update(prefix="a1"), "prefix"),
    (lambda d: d["services"].append(dict(d["services"][0])), "unique"),
    (lambda d: d["windows"][0].update(services={"b": 1}), "unknown service"),
    (lambda d: d["windows"][0].update(services={"a": 0}), "weight"),
    (lambda d: d["windows"][0].update(shifts=[["10:00", "11:00"], ["10:30", "12:00"]]),
     "overlap"),
    (lambda d: d["windows"][0].update(shifts=[["10:00"]]), "each shift"),
    (lambda d: d["windows"][0].update(count=0), "no window serves"),
    (lambda d: d.update(policy={"no_show": "maybe"}), "policy"),
    (lambda d: d.pop("windows"), "missing 'windows'"),
])
def test_bad_hall_files_are_refused_clearly(change: Any, message: str) -> None:
    data = minimal()
    change(data)
    with pytest.raises(ModelError, match=message):
        hall_from_dict(data)


def test_bad_toml_and_unknown_example(tmp_path: Path) -> None:
    path = tmp_path / "hall.toml"
    path.write_text("[hall\nname=1", encoding="utf-8")
    with pytest.raises(ModelError, match="not valid TOML"):
        load_hall(path)
    with pytest.raises(ModelError, match="cannot read"):
        load_hall(tmp_path / "none.toml")
    with pytest.raises(ModelError, match="known: city_hall"):
        example_hall("nope")


def test_empirical_service_times_from_history(tmp_path: Path) -> None:
    data = minimal()
    data["hall"]["history"] = "history.csv"
    data["services"][0]["distribution"] = "empirical"
    (tmp_path / "history.csv").write_text("service,seconds\na,60\na,120\n", encoding="utf-8")
    (tmp_path / "hall.toml").write_text(_to_toml(data), encoding="utf-8")
    hall = load_hall(tmp_path / "hall.toml")
    assert hall.services[0].samples_ms == (60_000, 120_000)
    c = simulate_day(hall, 2).columns
    assert {e - s for s, e in zip(c["start"], c["end"], strict=True) if s >= 0} <= \
        {60_000, 120_000}
    (tmp_path / "history.csv").write_text("service,seconds\na,-1\n", encoding="utf-8")
    with pytest.raises(ArrivalsError, match="seconds must be > 0"):
        load_hall(tmp_path / "hall.toml")


def _to_toml(data: dict[str, Any]) -> str:
    def value(v: Any) -> str:
        if isinstance(v, str):
            return f'"{v}"'
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        return str(v)
    lines = ["[hall]"] + [f"{k} = {value(v)}" for k, v in data["hall"].items()]
    for table in ("services", "windows"):
        for row in data[table]:
            lines.append(f"[[{table}]]")
            lines += [f"{k} = {value(v)}" for k, v in row.items()]
    text = "\n".join(lines) + "\n"
    tomllib.loads(text)
    return text


def test_clock_and_percentile_helpers() -> None:
    assert parse_clock("08:30", "x") == 8 * HOUR + 30 * MINUTE_MS
    assert parse_clock("24:00", "x") == 24 * HOUR
    assert format_clock(parse_clock("07:05:09", "x")) == "07:05:09"
    for bad in ("24:01", "7", "07:60", 730):
        with pytest.raises(ModelError):
            parse_clock(bad, "x")
    assert percentile([], 90) == 0
    assert percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 90) == 9
    assert percentile([5], 50) == 5


def test_summary_is_consistent_with_the_records() -> None:
    hall = example_hall("comprehensive_hall")
    day = simulate_day(hall, 8)
    summary = day.summary()
    waits = [w for w in day.waits() if w >= 0]
    assert summary.overall.called == len(waits)
    assert summary.overall.mean_ms == pytest.approx(sum(waits) / len(waits))
    assert summary.overall.p50_ms <= summary.overall.p90_ms <= summary.overall.p99_ms
    assert sum(s.tickets for s in summary.services.values()) == summary.tickets
    assert all(0.0 <= u <= 1.2 for u in summary.utilisation)
    sla = hall.services[2].service.sla_minutes * MINUTE_MS
    budongchan = [w for w, s in zip(day.waits(), day.columns["service"], strict=True) if s == 2]
    assert summary.services["budongchan"].over_sla == sum(1 for w in budongchan if w > sla)
    hourly = day.hourly_p90()
    assert min(hourly) >= 9
    assert max(hourly) <= 16


def test_appointment_wait_starts_at_the_later_of_check_in_and_booking(engine_class: Any) -> None:
    # docs/STATISTICS.md: a wait begins at max(issued, booked). One window, fixed
    # 10-minute services: a walk-in at 09:00 is served until 09:10; an appointment
    # booked for 09:00 checks in at 09:05 (within the grace period, so it keeps its
    # booked place) and is called at 09:10: it waited 5 minutes, not 10. One booked
    # for 09:20 that checks in at 09:08 waits from 09:20 (called 09:20 + 0).
    from fastpath.simulate import Arrivals, make_engine

    data = minimal()
    data["services"][0].update(visitors_per_day=0, service_minutes=10)
    hall = hall_from_dict(data)
    nine = 9 * HOUR
    arrivals = Arrivals((nine, nine + 5 * MINUTE_MS, nine + 8 * MINUTE_MS), (0, 0, 0),
                        (0, APPOINTMENT, APPOINTMENT), (-1, nine, nine + 20 * MINUTE_MS))
    engine = make_engine(hall, engine_class)
    day = simulate_day(hall, 1, arrivals, engine=engine)
    assert list(day.columns["called"]) == [nine, nine + 10 * MINUTE_MS, nine + 20 * MINUTE_MS]
    assert list(day.waits()) == [0, 5 * MINUTE_MS, 0]
    summary = day.summary()
    assert summary.services["a"].mean_ms == pytest.approx(5 * MINUTE_MS / 3)
    totals = engine.run(1, hall.opens_ms, hall.window_shifts(), [([], [], 0.0, 0.0)],
                        replay=arrivals.replay(), record=False)
    assert totals["wait_sum"] == [5 * MINUTE_MS]


def test_each_ticket_draws_the_same_whatever_the_plan(engine_class: Any) -> None:
    # Common random numbers: a ticket's arrival, service time and no-show are its
    # own, so two staffing plans are compared on the same day. With one shared
    # stream in event order, removing a window re-drew every service in the hall.
    from fastpath.simulate import make_engine

    hall = example_hall("comprehensive_hall")
    fewer = hall.with_plan([n - 2 if i == 0 else n for i, n in enumerate(hall.plan)])
    for arrivals in (None, generate_arrivals(hall, 6)):
        one = simulate_day(hall, 4, arrivals, engine=make_engine(hall, engine_class)).columns
        two = simulate_day(fewer, 4, arrivals, engine=make_engine(fewer, engine_class)).columns
        assert one["arrival"] == two["arrival"]
        assert one["klass"] == two["klass"]
        assert one["key"] == two["key"]
        assert one["called"] != two["called"]  # the plans did differ

        def served(cols: Any) -> dict[int, int]:
            return {i: e - s for i, (s, e, o) in enumerate(zip(cols["start"], cols["end"],
                                                               cols["outcome"], strict=True))
                    if s >= 0 and o == 1}

        first, second = served(one), served(two)
        both = first.keys() & second.keys()
        assert len(both) > 0.9 * len(first)
        assert all(first[i] == second[i] for i in both)
        # No-shows: the same tickets are absent at their first call.
        absent_one = {i for i, (c, s) in enumerate(zip(one["called"], one["start"], strict=True))
                      if c >= 0 and s != c}
        absent_two = {i for i, (c, s) in enumerate(zip(two["called"], two["start"], strict=True))
                      if c >= 0 and s != c}
        assert absent_one
        assert absent_one == absent_two


def test_both_engines_apply_the_policys_late_appointment_rule(engine_class: Any) -> None:
    """The engines inline Policy.appointment_late (their loop cannot call it) with the
    policy's own grace period: a check-in at the booked time plus the grace keeps its
    booking, one millisecond later is a walk-in, as the live dispatcher decides."""
    from fastpath.simulate import Arrivals, make_engine

    data = minimal()
    data["services"][0].update(visitors_per_day=0, service_minutes=1)
    data["policy"] = {"appointment_grace_minutes": 7}
    hall = hall_from_dict(data)
    policy = hall.policy
    assert policy.appointment_grace_ms == 7 * MINUTE_MS
    booked = 9 * HOUR + 10 * MINUTE_MS
    offsets = [-5 * MINUTE_MS, 0, policy.appointment_grace_ms - 1, policy.appointment_grace_ms,
               policy.appointment_grace_ms + 1, policy.appointment_grace_ms + MINUTE_MS]
    times = tuple(booked + offset for offset in offsets)
    arrivals = Arrivals(times, (0,) * len(times), (APPOINTMENT,) * len(times),
                        (booked,) * len(times))
    day = simulate_day(hall, 1, arrivals, engine=make_engine(hall, engine_class))
    kept = [klass == APPOINTMENT for klass in day.columns["klass"]]
    assert kept == [not policy.appointment_late(t, booked) for t in times]
    assert kept == [True, True, True, True, False, False]
