"""What-if staffing: the smallest window plan that keeps every service's p90 wait within the SLA.

A *plan* is how many windows each window group of the hall model gets (a
group is one service mix: 一窗通办 comprehensive windows, specialist windows,
优先服务专窗...). A plan is judged by simulating the given arrivals
``replications`` times (different service-time draws) and pooling the waits:
it is feasible when, for every service, the p90 wait is within the SLA and
nobody is left unserved at closing.

The search, each step a batch of simulated days:

1. scale every group by one factor *f* (bisection) to the smallest feasible
   uniform plan;
2. greedily take away one window at a time from the group whose loss hurts
   least (smallest worst-service p90), while the plan stays feasible.

Greedy search is not guaranteed optimal; it is deterministic (fixed seeds) and
every plan it reports has been simulated.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fastpath.simulate import (
    HOUR_MS,
    Arrivals,
    HallModel,
    ModelError,
    ljust_display,
    percentile,
    simulate_day,
)

Progress = Callable[[int, int, str], None]  # (done, expected total, label)
UNSERVED = 1 << 40  # the wait counted for a ticket never called


@dataclass(frozen=True, slots=True)
class PlanResult:
    plan: tuple[int, ...]
    p90_ms: dict[str, int]  # per service, pooled over the replications
    unserved: int
    hourly_p90_ms: dict[int, int] = field(default_factory=dict)

    @property
    def windows(self) -> int:
        return sum(self.plan)

    @property
    def worst_p90_ms(self) -> int:
        return max(self.p90_ms.values(), default=0)

    def feasible(self, sla_ms: int) -> bool:
        return self.unserved == 0 and self.worst_p90_ms <= sla_ms


@dataclass(frozen=True, slots=True)
class StaffingResult:
    model: HallModel
    sla_ms: int
    current: PlanResult
    proposed: PlanResult | None  # None: even the largest plan tried misses the SLA
    evaluations: int


def evaluate_plan(model: HallModel, plan: Sequence[int], arrivals: Arrivals,
                  seeds: Sequence[int]) -> PlanResult:
    """Simulate ``plan`` once per seed on the same arrivals; pool the waits."""
    try:
        hall = model.with_plan(plan)
    except ModelError:  # e.g. no window left for a service: not a plan at all
        return PlanResult(tuple(plan), {m.service.id: UNSERVED for m in model.services},
                          len(arrivals))
    engine = hall.engine()
    per_service: list[list[int]] = [[] for _ in model.services]
    by_hour: dict[int, list[int]] = {}
    unserved = 0
    for seed in seeds:
        day = simulate_day(hall, seed, arrivals, engine=engine)
        for arrival, service, wait in zip(day.columns["arrival"], day.columns["service"],
                                          day.waits(), strict=True):
            if wait < 0:
                unserved += 1
                wait = UNSERVED
            per_service[service].append(wait)
            by_hour.setdefault(arrival // HOUR_MS, []).append(wait)
    p90 = {m.service.id: percentile(sorted(w), 90)
           for m, w in zip(model.services, per_service, strict=True)}
    hourly = {h: percentile(sorted(w), 90) for h, w in sorted(by_hour.items())}
    return PlanResult(tuple(plan), p90, unserved, hourly)


def scaled_plan(plan: Sequence[int], factor: float) -> tuple[int, ...]:
    return tuple(math.ceil(n * factor - 1e-9) for n in plan)


def find_plan(
    model: HallModel,
    arrivals: Arrivals,
    sla_minutes: float,
    *,
    replications: int = 3,
    seed: int = 1,
    progress: Progress | None = None,
    max_factor: float = 4.0,
) -> StaffingResult:
    """The smallest plan found whose every service keeps p90 wait <= SLA."""
    if sla_minutes <= 0:
        raise ModelError("the SLA must be > 0 minutes")
    if replications < 1:
        raise ModelError("replications must be >= 1")
    sla_ms = round(sla_minutes * 60_000)
    seeds = [seed + i for i in range(replications)]
    cache: dict[tuple[int, ...], PlanResult] = {}
    expected = 12 + 4 * len(model.groups)

    def judge(plan: Sequence[int], label: str) -> PlanResult:
        key = tuple(plan)
        if key not in cache:
            cache[key] = evaluate_plan(model, key, arrivals, seeds)
        if progress is not None:
            progress(len(cache), max(expected, len(cache) + 1), label)
        return cache[key]

    current = judge(model.plan, "current plan")
    # 1. the smallest uniformly scaled plan that is feasible
    hi = 1.0
    while not judge(scaled_plan(model.plan, hi), f"scale x{hi:g}").feasible(sla_ms):
        if hi >= max_factor:
            return StaffingResult(model, sla_ms, current, None, len(cache))
        hi *= 2.0
    lo = 0.0
    for _ in range(7):
        mid = (lo + hi) / 2.0
        if judge(scaled_plan(model.plan, mid), f"scale x{mid:.2f}").feasible(sla_ms):
            hi = mid
        else:
            lo = mid
    best = judge(scaled_plan(model.plan, hi), f"scale x{hi:.2f}")
    # 2. greedy: remove the window whose loss hurts least, while feasible
    while True:
        candidates = []
        for group, count in enumerate(best.plan):
            if count == 0:
                continue
            trial = list(best.plan)
            trial[group] -= 1
            result = judge(trial, f"{model.groups[group].name} -1")
            if result.feasible(sla_ms):
                candidates.append((result.worst_p90_ms, group, result))
        if not candidates:
            break
        best = min(candidates, key=lambda c: (c[0], c[1]))[2]
    if progress is not None:
        progress(len(cache), len(cache), "done")
    return StaffingResult(model, sla_ms, current, best, len(cache))


def format_table(result: StaffingResult) -> str:
    """The plan side by side with the current one, then p90 per service (minutes)."""
    model, current, proposed = result.model, result.current, result.proposed
    lines = [f"{model.name}  SLA p90 ≤ {result.sla_ms / 60_000:g} 分钟 (min)  "
             f"[{result.evaluations} plans simulated]", ""]
    head = (f"{ljust_display('窗口组 window group', 28)}{ljust_display('服务 services', 44)}"
            f"{'现有 now':>10}{'建议 plan':>10}")
    lines.append(head)
    lines.append("-" * len(head))
    for i, group in enumerate(model.groups):
        new = "—" if proposed is None else str(proposed.plan[i])
        services = ",".join(group.services)
        lines.append(f"{ljust_display(group.name, 28)}{ljust_display(services, 44)}"
                     f"{current.plan[i]:>10}{new:>10}")
    total_new = "—" if proposed is None else str(proposed.windows)
    lines.append(f"{ljust_display('合计 total', 72)}{current.windows:>10}{total_new:>10}")
    lines.append("")
    lines.append(f"{ljust_display('业务 service', 28)}{'p90 now':>16}{'p90 plan':>16}")
    for m in model.services:
        sid = m.service.id
        now = _minutes(current.p90_ms[sid])
        new = "—" if proposed is None else _minutes(proposed.p90_ms[sid])
        lines.append(f"{ljust_display(m.service.name_zh + ' ' + sid, 28)}{now:>16}{new:>16}")
    if current.unserved:
        lines.append(f"现有方案有 {current.unserved} 人闭馆时未办理 / unserved at closing "
                     "with the current plan")
    if proposed is None:
        lines.append("没有找到满足SLA的方案 / no plan up to 4x the current one meets the SLA")
    return "\n".join(lines)


def _minutes(ms: int) -> str:
    return "unserved" if ms >= UNSERVED else f"{ms / 60_000:.1f} min"


def plot_hourly(result: StaffingResult, path: str | Path) -> None:
    """PNG: p90 wait by hour of arrival, current plan against the proposed one (Pillow)."""
    from PIL import Image, ImageDraw, ImageFont

    width, height, left, right, top, bottom = 900, 500, 80, 30, 60, 60
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    font: ImageFont.ImageFont | ImageFont.FreeTypeFont = ImageFont.load_default()
    for candidate in ("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
                      "/usr/share/fonts/truetype/noto/NotoSansCJK-Regular.ttc"):
        if Path(candidate).exists():
            font = ImageFont.truetype(candidate, 16)
            break
    series = [("现有 current", result.current, (200, 60, 60))]
    if result.proposed is not None:
        series.append(("建议 proposed", result.proposed, (40, 110, 200)))
    hours = sorted({h for _, r, _ in series for h in r.hourly_p90_ms})
    if not hours:
        raise ModelError("no arrivals to plot")
    cap = 4 * result.sla_ms
    peak = max(min(v, cap) for _, r, _ in series for v in r.hourly_p90_ms.values())
    y_max = max(result.sla_ms * 1.25, peak * 1.1, 60_000)
    x0, x1, y0, y1 = left, width - right, height - bottom, top

    def x_of(hour: float) -> float:
        span = max(1, hours[-1] - hours[0])
        return x0 + (hour - hours[0]) / span * (x1 - x0)

    def y_of(ms: float) -> float:
        return y0 - min(ms, cap) / y_max * (y0 - y1)

    draw.rectangle((x0, y1, x1, y0), outline="black")
    for h in hours:
        draw.text((x_of(h) - 12, y0 + 8), f"{h:02d}:00", fill="black", font=font)
    steps = 5
    for i in range(steps + 1):
        ms = y_max * i / steps
        draw.line((x0 - 4, y_of(ms), x0, y_of(ms)), fill="black")
        draw.text((8, y_of(ms) - 8), f"{ms / 60_000:.0f}", fill="black", font=font)
    sla_y = y_of(result.sla_ms)
    draw.line((x0, sla_y, x1, sla_y), fill=(120, 120, 120), width=1)
    draw.text((x1 - 150, sla_y - 20), f"SLA {result.sla_ms / 60_000:g} min", fill="gray",
              font=font)
    draw.text((x0, 15), f"{result.model.name}: p90 等待 (分钟) / p90 wait (min) by hour",
              fill="black", font=font)
    for i, (label, plan, colour) in enumerate(series):
        points = [(x_of(h), y_of(plan.hourly_p90_ms[h])) for h in hours if h in plan.hourly_p90_ms]
        if len(points) > 1:
            draw.line(points, fill=colour, width=3)
        for px, py in points:
            draw.ellipse((px - 3, py - 3, px + 3, py + 3), fill=colour)
        legend = f"{label}: {plan.windows} windows"
        draw.text((x0 + 10 + 300 * i, y1 + 8), legend, fill=colour, font=font)
    image.save(path, format="PNG")


__all__ = [
    "PlanResult",
    "StaffingResult",
    "evaluate_plan",
    "find_plan",
    "format_table",
    "plot_hourly",
    "scaled_plan",
]
