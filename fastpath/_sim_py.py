"""The discrete-event hall simulator: the readable pure-Python engine.

:mod:`fastpath._sim_c` is its Cython twin with the same API and, for the same
seed, the same results to the millisecond; :mod:`fastpath.simulate` picks one
and adds the hall model (TOML, CSV, summaries). Read this file first.

The engine drives the dispatch core itself (:class:`fastpath._core_py.QueueCore`
or its Cython twin), so every "who is called next" decision is the hall's own
policy. What the engine adds is the world around it:

* arrivals per service: Poisson with a piecewise-constant rate (time-of-day
  profile), or a replayed list; each arrival is normal, priority or an
  appointment (booked time near the arrival; a check-in past the grace period
  becomes a walk-in, as in :meth:`fastpath.Dispatcher.issue`);
* service times per service: exponential, lognormal, fixed or empirical;
* windows open in shifts (a break is the gap between two shifts); a window
  finishes its ticket after closing but calls nobody new;
* no-shows: with probability *p* a called citizen is absent; the window waits
  ``no_show_timeout_ms`` then requeues the ticket once (key time = now) or
  drops it, as the hall's :class:`~fastpath.types.NoShowPolicy` says.

Staff behaviour that the policy does not decide is fixed here: when a window
frees it calls at once; an arriving ticket is called by the lowest-numbered
idle open window that serves its service.

Reproducibility, and common random numbers: every draw is a function of the
seed and of what it is for, never of the order of events. Each (service,
class) label has its own Poisson arrival stream (xoshiro256**, per run, or per
prediction replication, from :func:`arrival_seed`; rates from
:func:`arrival_tables`), so a label's arrivals are the same whenever they are
drawn: a prediction draws a walk-in label only while its group is empty, and
the rest when they can matter (:meth:`_Run.catch_up`). Each call of each
ticket has its own splitmix64 stream (:func:`ticket_state`) for its no-show
and its service time, so the same ticket takes as long whichever window calls
it and however many windows the hall has: two staffing plans, or a prediction
with and without a staffing move, are compared on the same simulated day.
Times are integer ms; exponential and normal draws use Marsaglia and Tsang's
ziggurat over tables built once here (both twins read the same tables), and
continuous draws use only IEEE double arithmetic and ``log``/``exp`` from the
C library, which both twins call, so both produce the same numbers bit for
bit. Events at the same millisecond run in the order (kind, window or label):
shift opens, closes, window ends, the replay, then arrivals.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
import threading
from array import array
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from fastpath._core_py import NO_TICKET
from fastpath._core_py import QueueCore as PyQueueCore
from fastpath.types import APPOINTMENT, NORMAL, PRIORITY

# --- tables shared with the Cython twin ---------------------------------------

# Service-time distributions: (kind, a, b, samples).
DIST_EXPONENTIAL = 0  # a = mean ms
DIST_LOGNORMAL = 1  # a = mu, b = sigma of the underlying normal (ms)
DIST_FIXED = 2  # a = ms
DIST_EMPIRICAL = 3  # samples = observed service times (ms), drawn uniformly

# Event kinds.
EV_OPEN = 0  # a window's shift starts
EV_CLOSE = 1  # a window's shift ends
EV_FREE = 2  # a window's service (or no-show wait) ends
EV_REPLAY = 3  # the next replayed arrival
EV_ARRIVAL = 4  # a label's next Poisson arrival (after window events and replays of its ms)

# Ticket outcomes in the per-ticket record.
OUT_UNSERVED = 0  # still waiting, or still at a window, when the run stopped
OUT_DONE = 1
OUT_NO_SHOW = 2  # absent at the call(s) and dropped
OUT_SERVING = 3  # at a window when the run stopped

NEVER = 1 << 62  # "no such time"
NO_ARRIVAL = (1 << 63) - 1  # no Poisson arrival pending: after every event
EVENT_SPAN_MS = (1 << 49) - 2  # events run at most this long after a run's start (17,800 years)
BUSY_UNKNOWN = -2  # a window serving someone from before the prediction started
TWO_POW_M53 = 1.0 / 9007199254740992.0

# The per-ticket records of a run (``record=True``), one array per column (of
# the type code in COLUMN_TYPES: times int64, services and windows int16 (the
# engines' event keys already cap both at 4,096), classes and outcomes int8),
# indexed by the ticket's serial (order of arrival). -1: not yet / never. "wait"
# is ms from the start of the wait (arrival, or the booked time of an
# appointment that checked in early: docs/STATISTICS.md) to the first call.
COLUMNS = ("arrival", "service", "klass", "key", "called", "start", "end", "window", "outcome",
           "wait")
COLUMN_TYPES = ("q", "h", "b", "q", "q", "q", "q", "h", "b", "q")


class Records(Mapping[str, "array[int]"]):
    """A run's per-ticket records: the ``COLUMNS`` by name, each an array indexed
    by ticket serial.

    The compiled engine keeps six columns as it runs and ``end`` as a 32-bit
    offset (26 bytes a ticket, not 58: the memory a first run must get from the
    kernel is most of its cost); ``derive`` builds each other column on its
    first read, once. The pure engine hands over all ten. Equal records compare
    equal whichever engine made them; a pickle carries all ten.
    """

    __slots__ = ("_derive", "_ready")

    def __init__(self, ready: dict[str, array[int]],
                 derive: Callable[[str], array[int]] | None = None) -> None:
        self._ready = ready
        self._derive = derive

    def __getitem__(self, name: str) -> array[int]:
        column = self._ready.get(name)
        if column is None:
            if self._derive is None or name not in COLUMNS:
                raise KeyError(name)
            column = self._ready.setdefault(name, self._derive(name))
        return column

    def __iter__(self) -> Iterator[str]:
        return iter(COLUMNS)

    def __len__(self) -> int:
        return len(COLUMNS)

    def __reduce__(self) -> tuple[Any, ...]:
        return (Records, ({name: self[name] for name in COLUMNS},))

    def __repr__(self) -> str:
        return f"Records({len(self[COLUMNS[0]])} tickets)"


_MASK = (1 << 64) - 1

# The engines' inputs (both twins take the same).
Shifts = Sequence[Sequence[tuple[int, int]]]  # per window: sorted (open ms, close ms)
Streams = Sequence[tuple[Sequence[int], Sequence[float], float, float]]
"""Per service: Poisson segment starts (ms), rates (per ms), p_priority, p_appointment."""
WaitingColumns = tuple[Sequence[int], Sequence[int], Sequence[int], Sequence[int], Sequence[int]]
"""Waiting tickets as columns: service, class, key ms, order, issued ms."""
ReplayColumns = tuple[Sequence[int], Sequence[int], Sequence[int], Sequence[int]]
"""Replayed arrivals as columns: time ms, service, class, booked ms (-1: none)."""
GOLDEN_GAMMA = 0x9E3779B97F4A7C15  # splitmix64's increment


# --- ziggurat tables (Marsaglia & Tsang 2000, 256 layers) ------------------------


def _ziggurat(
    f: Any, f_inverse: Any, r: float, v: float, bits: int,
) -> tuple[list[int], list[float], list[float]]:
    """Tables ``(k, w, f)`` of a 256-layer ziggurat under the decreasing density ``f``.

    Layer i >= 1 is the rectangle ``[0, x_i] x [f(x_i), f(x_{i-1})]`` with
    ``x_255 = r`` and ``x_0 = 0``; layer 0 is the base ``[0, r] x [0, f(r)]``
    plus the tail beyond ``r``, drawn as a rectangle of width ``v / f(r)``.
    Every layer has area ``v``. A draw takes a layer ``i`` and an integer
    ``m`` of ``bits`` random bits: ``x = m * w[i]`` is accepted at once when
    ``m < k[i]`` (then ``x < x_{i-1}``, under the curve); ``f`` holds ``f(x_i)``
    for the rare test of the wedge.
    """
    n = 256
    x = [0.0] * n
    x[n - 1] = r
    for i in range(n - 1, 1, -1):
        x[i - 1] = f_inverse(f(x[i]) + v / x[i])
    scale = float(1 << bits)
    base = v / f(r)
    w = [xi / scale for xi in x]
    w[0] = base / scale
    k = [0] * n
    k[0] = int(r / base * scale)
    for i in range(2, n):
        k[i] = int(x[i - 1] / x[i] * scale)
    return k, w, [f(xi) for xi in x]


ZIG_NORMAL_R = 3.6541528853610088  # where the normal's tail starts (256 layers)
ZIG_EXP_R = 7.69711747013104972  # where the exponential's tail starts (256 layers)
ZIG_NORMAL_K, ZIG_NORMAL_W, ZIG_NORMAL_F = _ziggurat(
    lambda x: math.exp(-0.5 * x * x), lambda y: math.sqrt(-2.0 * math.log(y)),
    ZIG_NORMAL_R, 0.0049286732339746519, 52)
ZIG_EXP_K, ZIG_EXP_W, ZIG_EXP_F = _ziggurat(
    lambda x: math.exp(-x), lambda y: -math.log(y), ZIG_EXP_R, 0.0039496598225815571993, 53)


# --- random numbers -------------------------------------------------------------


def mix64(z: int) -> int:
    """splitmix64's output function: a bijection of 64-bit words that mixes every bit."""
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


class _Ziggurat:
    """Uniform, exponential and normal draws over a generator's ``next_u64``."""

    __slots__ = ()

    def next_u64(self) -> int:
        raise NotImplementedError

    def uniform(self) -> float:
        """A double in [0, 1) with 53 random bits."""
        return (self.next_u64() >> 11) * TWO_POW_M53

    def exponential(self) -> float:
        """An Exp(1) draw by the ziggurat: one 64-bit draw 99% of the time."""
        while True:
            u = self.next_u64()
            i = u & 0xFF
            m = u >> 11  # 53 bits
            x = m * ZIG_EXP_W[i]
            if m < ZIG_EXP_K[i]:
                return x
            if i == 0:  # the tail beyond r: r + Exp(1), memoryless
                return ZIG_EXP_R - math.log(1.0 - self.uniform())
            if (ZIG_EXP_F[i - 1] - ZIG_EXP_F[i]) * self.uniform() + ZIG_EXP_F[i] < math.exp(-x):
                return x

    def normal(self) -> float:
        """A N(0, 1) draw by the ziggurat: one 64-bit draw 99% of the time."""
        while True:
            u = self.next_u64()
            i = u & 0xFF
            negative = (u >> 8) & 1
            m = u >> 12  # 52 bits
            x = m * ZIG_NORMAL_W[i]
            if negative:
                x = -x
            if m < ZIG_NORMAL_K[i]:
                return x
            if i == 0:  # the tail beyond r (Marsaglia 1964)
                while True:
                    xx = -math.log(1.0 - self.uniform()) / ZIG_NORMAL_R
                    yy = -math.log(1.0 - self.uniform())
                    if yy + yy > xx * xx:
                        return -(ZIG_NORMAL_R + xx) if negative else ZIG_NORMAL_R + xx
            if (ZIG_NORMAL_F[i - 1] - ZIG_NORMAL_F[i]) * self.uniform() + ZIG_NORMAL_F[i] < \
                    math.exp(-0.5 * x * x):
                return x


class Xoshiro256(_Ziggurat):
    """xoshiro256** (Blackman & Vigna), seeded by splitmix64 like the reference code:
    the long streams (each arrival label's)."""

    __slots__ = ("_s",)

    def __init__(self, seed: int) -> None:
        if not 0 <= seed <= _MASK:
            raise ValueError("seed must be in [0, 2**64)")
        state = []
        x = seed
        for _ in range(4):
            x = (x + GOLDEN_GAMMA) & _MASK
            state.append(mix64(x))
        self._s = state

    def next_u64(self) -> int:
        s = self._s
        s0, s1, s2, s3 = s
        x = (s1 * 5) & _MASK
        result = ((((x << 7) | (x >> 57)) & _MASK) * 9) & _MASK
        t = (s1 << 17) & _MASK
        s2 ^= s0
        s3 ^= s1
        s1 ^= s2
        s0 ^= s3
        s2 ^= t
        s3 = ((s3 << 45) | (s3 >> 19)) & _MASK
        s[0], s[1], s[2], s[3] = s0, s1, s2, s3
        return result


class SplitMix64(_Ziggurat):
    """splitmix64 (Steele, Lea & Flood): the short streams of one ticket's call.

    Free to seed (the state is one word), so every call of every ticket gets its
    own: see :func:`ticket_state`.
    """

    __slots__ = ("_x",)

    def __init__(self, state: int) -> None:
        if not 0 <= state <= _MASK:
            raise ValueError("seed must be in [0, 2**64)")
        self._x = state

    def next_u64(self) -> int:
        self._x = (self._x + GOLDEN_GAMMA) & _MASK
        return mix64(self._x)


def sample_service_ms(rng: _Ziggurat, kind: int, a: float, b: float,
                      samples: Sequence[int]) -> int:
    """One service time in ms (at least 1)."""
    if kind == DIST_EXPONENTIAL:
        value = int(a * rng.exponential() + 0.5)
    elif kind == DIST_LOGNORMAL:
        value = int(math.exp(a + b * rng.normal()) + 0.5)
    elif kind == DIST_FIXED:
        value = int(a + 0.5)
    else:
        n = len(samples)
        index = int(rng.uniform() * n)
        value = samples[index if index < n else n - 1]
    return value if value > 0 else 1


def no_show_probabilities(no_show_p: Sequence[float]) -> list[float]:
    """Per service, the probability that a called citizen is absent (both twins check it)."""
    out = []
    for p in no_show_p:
        p = float(p)
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"no-show probability {p} is not in [0, 1]")
        out.append(p)
    return out


def event_out_of_range(time_ms: int, base_ms: int) -> str:
    """The error of an event outside the span a run can order (both twins raise it)."""
    return (f"event at {time_ms} ms: before the run's start ({base_ms} ms) or more than "
            f"2**49 ms after it")


# --- arrivals: one Poisson stream per (service, class) label --------------------


def arrival_seed(seed: int, stream: int) -> int:
    """The seed of one arrival stream: splitmix64's output function over the pair.

    Each label of a run (stream ``label``) or of a prediction replication
    (stream ``replication * n_labels + label``) draws from a fresh stream, so a
    label's draws do not depend on when the others are drawn (a prediction
    draws a label's arrivals only when they can matter, see _Run.catch_up).
    """
    return mix64((seed + (stream + 1) * 0xD1B54A32D192ED03) & _MASK)


# --- each ticket's own draws ----------------------------------------------------
#
# Common random numbers. Each ticket draws its no-show and service time from a
# stream of its own, seeded by the run (or prediction replication) and the
# ticket's identity, never by the order of events: the same ticket takes as long
# whichever window calls it and whatever else the hall does, so two staffing
# plans (or a prediction with and without a move) are compared on the same day.
# A ticket's identity is what it is independently of any plan: its place in a
# replayed list, its place in its label's Poisson stream, its place in a
# prediction's waiting queue; a busy window's residual service is the window's.
ARRIVAL_ID = 1 << 40  # + count * labels + label: a label's count-th Poisson arrival
RESIDUAL_ID = 1 << 41  # + window: the service under way when a prediction starts
DRAW_SALT = 0x5851F42D4C957F2D  # keeps ticket streams apart from arrival streams


def draw_base(seed: int, replication: int) -> int:
    """The seed of a run's (or a prediction replication's) ticket draws."""
    return arrival_seed(seed ^ DRAW_SALT, replication)


def ticket_state(base: int, ticket_id: int, call: int) -> int:
    """The draws of one call of one ticket (``call`` 0, or 1 after a requeue).

    The state's top 53 bits, as a uniform in [0, 1), decide the no-show (absent
    when below the service's probability); a :class:`SplitMix64` from the state
    draws the service time.
    """
    return mix64((base + (2 * ticket_id + call + 1) * GOLDEN_GAMMA) & _MASK)


def arrival_tables(
    streams: Streams,
    start_ms: int, until_ms: int, skip: int = -1,
) -> tuple[list[int], list[float]]:
    """Each label's Poisson arrivals from ``start_ms`` to ``until_ms``.

    ``streams`` as in :meth:`Engine.run`; label ``service * 3 + class`` gets
    the service's rate times the class's share. The rates are piecewise
    constant: returns the segment starts (every service's cuts) and, label by
    label, each segment's mean gap (1 / rate, 0.0 when no one of that label
    arrives). Label ``skip`` has none (a prediction's own group, whose later
    arrivals queue behind the new ticket). Both twins read these tables.
    """
    n_labels = 3 * len(streams)
    cuts = {start_ms}
    for starts, rates, _p, _q in streams:
        if len(starts) != len(rates):
            raise ValueError("a stream needs one rate per segment start")
        cuts.update(t for t in starts if start_ms < t < until_ms)
    seg_starts = sorted(cuts) if start_ms < until_ms else []
    n_seg = len(seg_starts)
    means = [0.0] * (n_labels * n_seg)
    for seg, t in enumerate(seg_starts):
        for service, (starts, rates, p_priority, p_appointment) in enumerate(streams):
            index = bisect.bisect_right(starts, t) - 1
            rate = float(rates[index]) if index >= 0 else 0.0
            if rate > 0.0:
                p_normal = max(0.0, 1.0 - p_priority - p_appointment)
                for klass, share in ((NORMAL, p_normal), (PRIORITY, p_priority),
                                     (APPOINTMENT, p_appointment)):
                    label = service * 3 + klass
                    if rate * share > 0.0 and label != skip:
                        means[label * n_seg + seg] = 1.0 / (rate * share)
    return seg_starts, means


def expected_tickets(tables: tuple[list[int], list[float]], until_ms: int, max_arrivals: int,
                     replayed: int) -> int:
    """Room for a run's records: its expected arrivals plus 6 standard deviations.

    The compiled twin sizes its record arrays with it once, so they rarely move.
    """
    starts, means = tables
    n_seg = len(starts)
    mean = 0.0
    for seg in range(n_seg):
        length = (starts[seg + 1] if seg + 1 < n_seg else until_ms) - starts[seg]
        if length > 0:
            mean += sum(length / m for m in means[seg::n_seg] if m > 0.0)
    poisson = min(float(max_arrivals), mean + 6.0 * math.sqrt(mean), float(MAX_EXPECTED))
    return int(poisson) + replayed + 64


MAX_EXPECTED = 1 << 24  # records for more tickets than this grow as they come


# --- the engine -----------------------------------------------------------------


class Engine:
    """One hall configuration, ready to simulate many days or predictions.

    ``windows``: per window ``(services [(service index, weight)], priority
    window, ratio cap)``, added to the core in this order. ``dists``: per
    service ``(kind, a, b, samples)`` (see ``DIST_*``). ``order_base``: per
    service ``number_order(prefix, 0)``, so a ticket's tie-break key is its
    ticket number as in the live dispatcher.
    """

    def __init__(
        self,
        sla_ms: Sequence[int],
        class_weight_pct: Sequence[int],
        order_base: Sequence[int],
        windows: Sequence[tuple[Sequence[tuple[int, int]], bool, int]],
        dists: Sequence[tuple[int, float, float, Sequence[int]]],
        no_show_p: Sequence[float],
        no_show_timeout_ms: int,
        requeue_once: bool,
        appointment_grace_ms: int,
        appointment_early_ms: int = 15 * 60_000,
        appointment_late_ms: int = 5 * 60_000,
        core_class: Any = None,
    ) -> None:
        n_services = len(sla_ms)
        if n_services == 0:
            raise ValueError("a hall needs at least one service")
        if not len(order_base) == len(dists) == len(no_show_p) == n_services:
            raise ValueError("sla_ms, order_base, dists and no_show_p need one entry per service")
        for kind, _a, _b, samples in dists:
            if kind not in (DIST_EXPONENTIAL, DIST_LOGNORMAL, DIST_FIXED, DIST_EMPIRICAL):
                raise ValueError(f"unknown distribution kind {kind}")
            if kind == DIST_EMPIRICAL and not samples:
                raise ValueError("an empirical distribution needs samples")
        self.n_services = n_services
        self.n_windows = len(windows)
        self._core = (core_class or PyQueueCore)(list(sla_ms), list(class_weight_pct))
        self._windows_of: list[list[int]] = [[] for _ in range(n_services)]
        for widx, (services, priority_window, ratio_cap) in enumerate(windows):
            self._core.add_window(list(services), priority_window, ratio_cap)
            for service, _weight in services:
                self._windows_of[service].append(widx)
        self._order_base = list(order_base)
        self._dists = [(k, float(a), float(b), list(s)) for k, a, b, s in dists]
        self._no_show_p = no_show_probabilities(no_show_p)
        self._no_show_timeout = int(no_show_timeout_ms)
        self._requeue_once = bool(requeue_once)
        self._grace = int(appointment_grace_ms)
        self._appt_early = int(appointment_early_ms)
        self._appt_late = int(appointment_late_ms)
        self._initial_streaks = [0] * self.n_windows
        self._lock = threading.Lock()  # one simulation at a time per engine

    # -- public entry points -------------------------------------------------------

    def run(
        self,
        seed: int,
        start_ms: int,
        shifts: Shifts,
        streams: Streams,
        arrivals_until_ms: int = NEVER,
        max_arrivals: int = NEVER,
        replay: ReplayColumns | None = None,
        record: bool = True,
        warmup: int = 0,
    ) -> dict[str, Any]:
        """Simulate from an empty hall at ``start_ms`` until nothing is left to happen.

        ``shifts``: per window, sorted ``(open_ms, close_ms)`` intervals.
        ``streams``: per service ``(segment starts ms, rates per ms, p_priority,
        p_appointment)``; a service with no segments has no Poisson arrivals.
        ``replay``: ``(times, services, classes, booked_ms or -1)`` sorted by time.
        ``warmup``: the first ``warmup`` tickets do not count in ``wait_sum``.
        Returns the totals (``wait_sum``, ``waited``, ``busy_ms``, ``n_tickets``,
        ``end_ms``) and, with ``record``, ``columns``: the per-ticket
        :class:`Records`.
        """
        if len(shifts) != self.n_windows or len(streams) != self.n_services:
            raise ValueError("shifts need one entry per window, streams one per service")
        with self._lock:
            run = _Run(self, seed, start_ms, record, warmup)
            if replay is not None and len(replay[0]) and replay[0][0] < start_ms:
                run.base = replay[0][0]  # replayed arrivals may come before the start
            run.arrivals_left = max_arrivals
            run.start_arrivals(arrival_tables(streams, start_ms, arrivals_until_ms),
                               arrivals_until_ms, seed, 0, lazy=False)
            for widx, intervals in enumerate(shifts):
                run.set_shifts(widx, intervals, start_ms)
            if replay is not None:
                run.set_replay(*replay)
            run.loop(NEVER)
            return run.result()

    def predict(
        self,
        seed: int,
        replications: int,
        now_ms: int,
        horizon_ms: int,
        shifts: Shifts,
        busy_service: Sequence[int],
        busy_since: Sequence[int],
        streaks: Sequence[int],
        waiting: WaitingColumns,
        counters: Sequence[int],
        streams: Streams,
        tagged: tuple[int, int, int, int],
        lazy_arrivals: bool = True,
    ) -> list[int]:
        """Waits (ms from ``now_ms`` to the call) of a ticket taken now, one per replication.

        The state at ``now_ms``: each window's ``shifts`` from now on (one
        that started at or before ``now_ms`` means "open now"),
        ``busy_service[w]``/``busy_since[w]`` (-1: idle), the ratio-cap
        ``streaks``, the ``waiting`` tickets ``(service, klass, key, order,
        issued)``, each service's ticket ``counters`` and the new ticket
        ``tagged = (service, klass, key, order)``. A replication in which it is
        not called within ``horizon_ms`` reports ``horizon_ms``.
        ``lazy_arrivals=False`` draws every walk-in as it comes instead of when
        it can matter (see :meth:`_Run.catch_up`): slower, for tests.
        """
        stop = now_ms + horizon_ms
        if not (0 <= tagged[0] < self.n_services and 0 <= tagged[1] < 3):
            raise IndexError("tagged ticket with service or class out of range")
        # Later arrivals in the new ticket's own (service, class) group queue behind
        # it, and only a group's head is ever compared, so until it is called they
        # change nothing: they are not drawn at all. (An appointment's group is
        # ordered by booked times, which may come before it.)
        own = tagged[0] * 3 + tagged[1] if tagged[1] != APPOINTMENT else -1
        tables = arrival_tables(streams, now_ms, stop, own)
        waits = []
        for run in self._from_state(seed, replications, now_ms, stop, shifts, busy_service,
                                    busy_since, streaks, waiting, counters, tables, tagged,
                                    lazy_arrivals):
            called = run.loop(stop)
            waits.append(horizon_ms if called < 0 else called - now_ms)
        return waits

    def forecast(
        self,
        seed: int,
        replications: int,
        now_ms: int,
        until_ms: int,
        count_until_ms: int,
        shifts: Shifts,
        busy_service: Sequence[int],
        busy_since: Sequence[int],
        streaks: Sequence[int],
        waiting: WaitingColumns,
        counters: Sequence[int],
        streams: Streams,
    ) -> dict[str, array[int]]:
        """Every ticket's wait from a hall state, replication by replication.

        The state as in :meth:`predict` (without a new ticket); the hall runs until
        ``until_ms`` with arrivals from ``streams``. The tickets counted are those
        waiting at ``now_ms`` and those arriving before ``count_until_ms``. Returns
        arrays with one entry per counted ticket and replication: ``replication``,
        ``service``, ``wait`` (ms from the start of its wait to its first call, or,
        for one not called by ``until_ms``, to ``until_ms``), ``called`` (1, or 0
        for those) and ``place``: for a ticket waiting at ``now_ms`` called in the
        run, its place in the queue order (key, order) of ``waiting``, else -1
        (an arrival, or not called). The called ones come in the order they were
        called, then the others service by service, shortest wait first.
        """
        tables = arrival_tables(streams, now_ms, until_ms)
        out: dict[str, array[int]] = {name: array(code) for name, code in (
            ("replication", "i"), ("service", "i"), ("wait", "q"), ("called", "b"),
            ("place", "i"))}
        for run in self._from_state(seed, replications, now_ms, until_ms, shifts, busy_service,
                                    busy_since, streaks, waiting, counters, tables, None, False,
                                    (out, count_until_ms)):
            run.loop(until_ms)
            run.count_never_called(until_ms)
        return out

    def _from_state(
        self, seed: int, replications: int, now_ms: int, stop: int,
        shifts: Shifts, busy_service: Sequence[int],
        busy_since: Sequence[int], streaks: Sequence[int],
        waiting: WaitingColumns,
        counters: Sequence[int], tables: tuple[list[int], list[float]],
        tagged: tuple[int, int, int, int] | None, lazy_arrivals: bool,
        counting: tuple[dict[str, array[int]], int] | None = None,
    ) -> Iterator[_Run]:
        """Each replication of a run from a hall state, set up and ready to loop.

        With ``tagged``, a prediction: the new ticket is queued last. With
        ``counting`` (records, count until), a forecast. The engine's lock is held
        until the last replication has been taken.
        """
        n_windows = self.n_windows
        if not len(shifts) == len(busy_service) == len(busy_since) == len(streaks) == n_windows:
            raise ValueError("window state needs one entry per window")
        if replications < 0:
            raise ValueError("replications must be >= 0")
        if len(counters) != self.n_services:
            raise ValueError("counters need one entry per service")
        w_service, w_klass, w_key, w_order, w_issued = waiting
        if any(not (0 <= s < self.n_services and 0 <= k < 3)
               for s, k in zip(w_service, w_klass, strict=True)):
            raise IndexError("waiting ticket with service or class out of range")
        if any(s >= self.n_services for s in busy_service):
            raise IndexError("busy_service out of range")
        with self._lock:
            run = _Run(self, seed, now_ms, False, 0)
            # Queue order (key, order) so that every push is an append to its group.
            queued = sorted(range(len(w_service)), key=lambda i: (w_key[i], w_order[i]))
            for rep in range(replications):
                # First what every replication shares (the compiled twin builds it
                # once and restores it), then the random parts, in this order.
                run.reset(now_ms, streaks)
                run.horizon = stop
                run.counter = list(counters)
                # A waiting ticket's identity is its place in the queue (see ticket_state).
                for place, i in enumerate(queued):
                    run.add_ticket(w_service[i], w_klass[i], w_key[i], w_order[i], w_issued[i],
                                   place)
                if tagged is not None:
                    run.target = run.add_ticket(tagged[0], tagged[1], tagged[2], tagged[3],
                                                now_ms, len(queued))
                for widx in range(n_windows):
                    run.start_shifts(widx, shifts[widx])
                run.draws = draw_base(seed, rep)
                run.replication = rep
                if counting is not None:
                    run.counted, run.count_until = counting
                    run.n_waiting = len(queued)
                run.start_arrivals(tables, stop, seed, rep, lazy=lazy_arrivals)
                for widx in range(n_windows):
                    run.set_predicted_window(widx, busy_service[widx], busy_since[widx])
                for widx in range(n_windows):  # open idle windows call at once, in order
                    if run.w_open[widx] and run.w_current[widx] == NO_TICKET:
                        run.try_call(widx)
                yield run


class _Run:
    """The mutable state of one simulated day (or one prediction replication)."""

    def __init__(self, engine: Engine, seed: int, start_ms: int, record: bool,
                 warmup: int) -> None:
        self.e = engine
        if not 0 <= seed <= _MASK:
            raise ValueError("seed must be in [0, 2**64)")
        self.draws = draw_base(seed, 0)  # see ticket_state
        self.core = engine._core
        self.record = record
        self.warmup = warmup
        n_w, n_s = engine.n_windows, engine.n_services
        self.wait_sum = [0] * n_s
        self.waited = [0] * n_s
        self.busy_ms = [0] * n_w
        self.columns: dict[str, list[int]] = {name: [] for name in COLUMNS}
        self.reset(start_ms, engine._initial_streaks)

    def reset(self, now_ms: int, streaks: Sequence[int]) -> None:
        core = self.core
        for service in range(self.e.n_services):  # leftovers of the previous run
            for tid in core.queued(service):
                core.remove(tid)
        for widx, streak in enumerate(streaks):
            core.record_call(widx, NORMAL)
            for _ in range(streak):
                core.record_call(widx, PRIORITY)
        n_w, n_s = self.e.n_windows, self.e.n_services
        self.now = now_ms
        self.base = now_ms  # no event before it, none more than EVENT_SPAN_MS after it
        self.heap: list[tuple[int, int, int]] = []
        # Ticket slots (the core's tids), recycled through a free list.
        self.t_service: list[int] = []
        self.t_klass: list[int] = []
        self.t_key: list[int] = []
        self.t_order: list[int] = []
        self.t_serial: list[int] = []
        self.t_requeued: list[bool] = []
        self.t_arrival: list[int] = []
        self.t_id: list[int] = []  # the ticket's identity for its draws (ticket_state)
        self.target = NO_TICKET
        self.target_called = -1
        self.free: list[int] = []
        self.serial = 0
        self.counter = [0] * n_s
        # Windows.
        self.w_open = [False] * n_w
        self.w_current = [NO_TICKET] * n_w  # slot, BUSY_UNKNOWN or NO_TICKET
        self.w_absent = [False] * n_w
        self.w_since = [0] * n_w
        self.w_shifts: list[list[tuple[int, int]]] = [[] for _ in range(n_w)]
        self.w_shift = [0] * n_w
        # Arrivals, label by label (service * 3 + class): the tables of
        # arrival_tables, each label's stream (generator, segment, time, arrivals
        # drawn) and its next arrival, drawn ahead (ms, booked time, identity),
        # whether that is scheduled, and whether the label is lazy (see catch_up).
        n_labels = 3 * n_s
        self.tables: tuple[list[int], list[float]] = ([], [])
        self.arrivals_until = NEVER
        self.l_rng = [Xoshiro256(0)] * n_labels
        self.l_seg = [0] * n_labels
        self.l_time = [0.0] * n_labels
        self.l_count = [0] * n_labels
        self.l_next = [NO_ARRIVAL] * n_labels
        self.l_booked = [-1] * n_labels
        self.l_id = [0] * n_labels
        self.l_scheduled = [False] * n_labels
        self.l_lazy = [False] * n_labels
        self.queued = [0] * n_labels  # tickets queued per (service, class) group
        self.horizon = NEVER  # prediction: events after it never run, so are not scheduled
        # A forecast's records (see Engine.forecast): the tickets arriving before
        # count_until are counted, into these arrays.
        self.counted: dict[str, array[int]] | None = None
        self.count_until = NEVER
        self.n_waiting = 0  # tickets waiting at the start: identities 0 .. n_waiting - 1
        self.replication = 0
        self.arrivals_left = NEVER
        self.replay: tuple[Sequence[int], ...] = ((), (), (), ())
        self.replay_next = 0

    # -- set-up ------------------------------------------------------------------

    def schedule(self, time_ms: int, kind: int, arg: int) -> None:
        # Events run in the order (time, kind, window or label): at the same
        # millisecond shift opens, then closes, then window ends, then the
        # replay, then arrivals; windows in the hall's order. A window (a label)
        # has at most one pending event of a kind.
        if not 0 <= time_ms - self.base <= EVENT_SPAN_MS:
            raise OverflowError(event_out_of_range(time_ms, self.base))
        heapq.heappush(self.heap, (time_ms, kind, arg))

    def start_arrivals(self, tables: tuple[list[int], list[float]], arrivals_until_ms: int,
                       seed: int, replication: int, lazy: bool) -> None:
        """Start each label's stream of :func:`arrival_tables` at its first segment.

        ``lazy`` (predictions): a walk-in label (normal or priority) is drawn
        only while its group is empty; see :meth:`catch_up`.
        """
        self.tables = tables
        self.arrivals_until = arrivals_until_ms
        starts, means = tables
        n_seg, n_labels = len(starts), 3 * self.e.n_services
        for label in range(n_labels):
            self.l_scheduled[label] = False
            self.l_lazy[label] = lazy and label % 3 != APPOINTMENT
            self.l_next[label] = NO_ARRIVAL
            if any(m > 0.0 for m in means[label * n_seg:(label + 1) * n_seg]):
                self.l_rng[label] = Xoshiro256(arrival_seed(seed, replication * n_labels + label))
                self.l_seg[label] = 0
                self.l_time[label] = float(starts[0])
                self.l_count[label] = 0
                self.label_next(label)
        for label in range(n_labels):
            self.sync_label(label)

    def label_next(self, label: int) -> None:
        """Draw the label's next arrival: its time (memoryless across segments), booked time."""
        starts, means = self.tables
        n = len(starts)
        rng, seg, t = self.l_rng[label], self.l_seg[label], self.l_time[label]
        row = label * n
        while True:
            seg_end = float(starts[seg + 1]) if seg + 1 < n else float(self.arrivals_until)
            mean = means[row + seg]
            if mean > 0.0:
                candidate = t + rng.exponential() * mean
                if candidate < seg_end:
                    break
            if seg + 1 >= n:
                self.l_next[label] = NO_ARRIVAL
                return
            seg += 1
            t = float(starts[seg])
        self.l_seg[label], self.l_time[label] = seg, candidate
        self.l_next[label] = now = int(candidate)
        self.l_id[label] = ARRIVAL_ID + self.l_count[label] * 3 * self.e.n_services + label
        self.l_count[label] += 1
        if label % 3 == APPOINTMENT:  # booked within [now - late, now + early)
            span = self.e._appt_early + self.e._appt_late
            self.l_booked[label] = max(0, now + int(rng.uniform() * span) - self.e._appt_late)

    def sync_label(self, label: int) -> None:
        """Schedule the label's next arrival, unless it is lazy and its group not empty."""
        if (not self.l_scheduled[label] and self.l_next[label] != NO_ARRIVAL
                and self.arrivals_left > 0
                and (not self.l_lazy[label] or self.queued[label] == 0)):
            self.schedule(self.l_next[label], EV_ARRIVAL, label)
            self.l_scheduled[label] = True

    def catch_up(self, label: int) -> None:
        """Queue a lazy label's arrivals before now, which were not drawn yet.

        A walk-in's key is its arrival time, so while its group has tickets it
        queues behind them, and only a group's head is ever compared: until the
        group empties (or a ticket must be queued among them: a requeue, a late
        appointment) its arrivals change nothing, and a prediction that ends
        first never draws them. Its arrivals at now come after the window
        events of now, as scheduled arrivals do.
        """
        if not self.l_lazy[label] or self.l_scheduled[label]:
            return
        service, klass = divmod(label, 3)
        while self.l_next[label] < self.now:
            time_ms, ticket_id = self.l_next[label], self.l_id[label]
            self.label_next(label)
            self.add_ticket(service, klass, time_ms, self.take_number(service), time_ms,
                            ticket_id)

    def take_number(self, service: int) -> int:
        """The next ticket of the service: its order (number_order of its number)."""
        self.counter[service] += 1
        return self.e._order_base[service] + self.counter[service]

    def set_shifts(self, widx: int, intervals: Sequence[tuple[int, int]], start_ms: int) -> None:
        self.w_shifts[widx] = [(int(a), int(b)) for a, b in intervals]
        self.w_shift[widx] = 0
        self.schedule_next_open(widx, start_ms)

    def start_shifts(self, widx: int, intervals: Sequence[tuple[int, int]]) -> None:
        """Prediction: a window whose shift is on now is open at once (no OPEN event)."""
        now = self.now
        self.w_shifts[widx] = shifts = [(int(a), int(b)) for a, b in intervals]
        i = 0
        while i < len(shifts) and shifts[i][1] <= now:
            i += 1
        self.w_shift[widx] = i
        if i < len(shifts) and shifts[i][0] <= now:
            self.w_open[widx] = True
            if shifts[i][1] <= self.horizon:
                self.schedule(shifts[i][1], EV_CLOSE, widx)
        elif i < len(shifts):
            self.schedule(shifts[i][0], EV_OPEN, widx)

    def schedule_next_open(self, widx: int, now_ms: int) -> None:
        shifts = self.w_shifts[widx]
        i = self.w_shift[widx]
        while i < len(shifts) and shifts[i][1] <= now_ms:
            i += 1
        self.w_shift[widx] = i
        if i < len(shifts):
            opens = shifts[i][0]
            self.schedule(opens if opens > now_ms else now_ms, EV_OPEN, widx)

    def set_replay(self, times: Sequence[int], services: Sequence[int], klasses: Sequence[int],
                   booked: Sequence[int]) -> None:
        if not len(times) == len(services) == len(klasses) == len(booked):
            raise ValueError("replay columns must have the same length")
        if any(a > b for a, b in itertools.pairwise(times)):
            raise ValueError("replay times must be sorted")
        self.replay = (times, services, klasses, booked)
        self.replay_next = 0
        if len(times):
            self.schedule(int(times[0]), EV_REPLAY, 0)

    def set_predicted_window(self, widx: int, busy_service: int, busy_since: int) -> None:
        now = self.now
        if busy_service >= 0:
            # Residual service: a draw conditioned on lasting past what has elapsed.
            kind, a, b, samples = self.e._dists[busy_service]
            rng = SplitMix64(ticket_state(self.draws, RESIDUAL_ID + widx, 0))
            elapsed = now - busy_since
            end = -1
            for _ in range(16):
                length = sample_service_ms(rng, kind, a, b, samples)
                if length > elapsed:
                    end = busy_since + length
                    break
            if end < 0:  # far in the tail: assume it ends within a fresh draw
                end = now + sample_service_ms(rng, kind, a, b, samples)
            self.w_current[widx] = BUSY_UNKNOWN
            self.w_since[widx] = now
            self.schedule(end, EV_FREE, widx)

    # -- tickets -------------------------------------------------------------------

    def add_ticket(self, service: int, klass: int, key: int, order: int, arrival: int,
                   ticket_id: int) -> int:
        if self.free:
            slot = self.free.pop()
            self.t_service[slot], self.t_klass[slot] = service, klass
            self.t_key[slot], self.t_order[slot] = key, order
            self.t_serial[slot], self.t_requeued[slot] = self.serial, False
            self.t_arrival[slot], self.t_id[slot] = arrival, ticket_id
        else:
            slot = len(self.t_service)
            self.t_service.append(service)
            self.t_klass.append(klass)
            self.t_key.append(key)
            self.t_order.append(order)
            self.t_serial.append(self.serial)
            self.t_requeued.append(False)
            self.t_arrival.append(arrival)
            self.t_id.append(ticket_id)
        if self.record:
            cols = self.columns
            for name, value in (("arrival", arrival), ("service", service), ("klass", klass),
                                ("key", key), ("called", -1), ("start", -1), ("end", -1),
                                ("window", -1), ("outcome", OUT_UNSERVED), ("wait", -1)):
                cols[name].append(value)
        self.serial += 1
        self.core.push(slot, service, klass, key, order)
        self.queued[service * 3 + klass] += 1
        return slot

    def arrive(self, service: int, klass: int, booked: int, ticket_id: int) -> None:
        """A citizen takes a ticket now; an idle window serving the service calls it."""
        now = self.now
        key = now
        if klass == APPOINTMENT:
            # Policy.appointment_late(now, booked), inlined as in the compiled twin (whose
            # loop runs without the GIL and cannot call it); its one constant, the grace
            # period, comes from the policy (make_engine), and a test holds both twins to
            # the rule at its boundary.
            if booked < 0 or now > booked + self.e._grace:
                klass = NORMAL  # late check-in: a walk-in (Dispatcher.issue)
            else:
                key = booked
        order = self.take_number(service)
        self.catch_up(service * 3 + klass)  # a late appointment queues among the walk-ins
        self.add_ticket(service, klass, key, order, now, ticket_id)
        self.offer(service)

    def offer(self, service: int) -> None:
        # An idle open window has no candidate waiting (it would have called
        # it), so the new ticket is the only one it can call.
        for widx in self.e._windows_of[service]:
            if self.w_open[widx] and self.w_current[widx] == NO_TICKET:
                self.try_call(widx)
                return

    def try_call(self, widx: int) -> int:
        """The window calls by the policy; returns the slot called or -1."""
        core = self.core
        now = self.now
        slot: int = core.select(widx, now)
        if slot == NO_TICKET:
            return NO_TICKET
        core.remove(slot)
        klass = self.t_klass[slot]
        core.record_call(widx, klass)
        service = self.t_service[slot]
        group = service * 3 + klass
        self.queued[group] -= 1
        if not self.queued[group]:  # the group is empty: its later walk-ins come forward
            self.catch_up(group)
            self.sync_label(group)
        serial = self.t_serial[slot]
        first_call = not self.t_requeued[slot]
        if slot == self.target:
            self.target_called = now
        waited = 0
        if first_call:
            # A wait begins at the check-in, or at the booked time of an
            # appointment that checked in early (docs/STATISTICS.md).
            start = self.t_arrival[slot]
            if klass == APPOINTMENT and self.t_key[slot] > start:
                start = self.t_key[slot]
            waited = max(0, now - start)
            if serial >= self.warmup:
                self.wait_sum[service] += waited
                self.waited[service] += 1
            if self.counted is not None and self.t_arrival[slot] < self.count_until:
                ident = self.t_id[slot]
                self.count(service, waited, 1, ident if ident < self.n_waiting else -1)
        e = self.e
        # This call's own draws: absent or not, then how long (see ticket_state).
        state = ticket_state(self.draws, self.t_id[slot], 0 if first_call else 1)
        p = e._no_show_p[service]
        absent = p > 0.0 and (state >> 11) * TWO_POW_M53 < p
        if absent:
            end = now + e._no_show_timeout
        else:
            kind, a, b, samples = e._dists[service]
            end = now + sample_service_ms(SplitMix64(state), kind, a, b, samples)
        if self.record:
            cols = self.columns
            if first_call:
                cols["called"][serial] = now
                cols["wait"][serial] = waited
            cols["window"][serial] = widx
            if not absent:
                cols["start"][serial] = now
            cols["outcome"][serial] = OUT_SERVING
        self.w_current[widx] = slot
        self.w_absent[widx] = absent
        self.w_since[widx] = now
        self.schedule(end, EV_FREE, widx)
        return slot

    def count(self, service: int, wait: int, called: int, place: int) -> None:
        """A forecast's record of one counted ticket (``place``: see Engine.forecast)."""
        assert self.counted is not None
        for name, value in (("replication", self.replication), ("service", service),
                            ("wait", wait), ("called", called), ("place", place)):
            self.counted[name].append(value)

    def count_never_called(self, until_ms: int) -> None:
        """The counted tickets still waiting, service by service, shortest wait first."""
        for service in range(self.e.n_services):
            waits = []
            for slot in self.core.queued(service):
                if not self.t_requeued[slot] and self.t_arrival[slot] < self.count_until:
                    start = self.t_arrival[slot]
                    if self.t_klass[slot] == APPOINTMENT and self.t_key[slot] > start:
                        start = self.t_key[slot]
                    waits.append(max(0, until_ms - start))
            for wait in sorted(waits):
                self.count(service, wait, 0, -1)

    def release(self, slot: int, outcome: int) -> None:
        if self.record:
            serial = self.t_serial[slot]
            self.columns["outcome"][serial] = outcome
            self.columns["end"][serial] = self.now
        self.free.append(slot)

    # -- the event loop ------------------------------------------------------------

    def loop(self, stop_ms: int) -> int:
        """Run events up to ``stop_ms``, or until the ``target`` slot is called.

        Returns the target's call time, or -1.
        """
        heap = self.heap
        while self.target_called < 0:
            if not heap or heap[0][0] > stop_ms:
                break
            time_ms, kind, arg = heapq.heappop(heap)
            if kind == EV_ARRIVAL:
                self.l_scheduled[arg] = False
                if self.arrivals_left <= 0:  # max_arrivals reached: the rest never come
                    continue
                self.now = time_ms
                self.on_arrival(arg)
                continue
            self.now = time_ms
            if kind == EV_FREE:
                self.on_free(arg)
            elif kind == EV_OPEN:
                self.on_open(arg)
            elif kind == EV_CLOSE:
                self.on_close(arg)
            else:
                self.on_replay(arg)
        return self.target_called

    def on_free(self, widx: int) -> None:
        slot = self.w_current[widx]
        self.busy_ms[widx] += self.now - self.w_since[widx]
        self.w_current[widx] = NO_TICKET
        if slot >= 0:
            if not self.w_absent[widx]:
                self.release(slot, OUT_DONE)
            elif self.e._requeue_once and not self.t_requeued[slot]:
                self.t_requeued[slot] = True
                self.t_key[slot] = self.now
                group = self.t_service[slot] * 3 + self.t_klass[slot]
                self.catch_up(group)  # the walk-ins that came meanwhile go first
                self.core.push(slot, self.t_service[slot], self.t_klass[slot], self.now,
                               self.t_order[slot])
                self.queued[group] += 1
                if self.record:
                    self.columns["outcome"][self.t_serial[slot]] = OUT_UNSERVED
                if self.w_open[widx]:
                    self.try_call(widx)
                if slot in self.core:
                    self.offer(self.t_service[slot])
                return
            else:
                self.release(slot, OUT_NO_SHOW)
        if self.w_open[widx]:
            self.try_call(widx)

    def on_open(self, widx: int) -> None:
        self.w_open[widx] = True
        closes = self.w_shifts[widx][self.w_shift[widx]][1]
        if closes <= self.horizon:
            self.schedule(closes, EV_CLOSE, widx)
        if self.w_current[widx] == NO_TICKET:
            self.try_call(widx)

    def on_close(self, widx: int) -> None:
        self.w_open[widx] = False
        if self.w_shifts[widx]:
            self.w_shift[widx] += 1
            self.schedule_next_open(widx, self.now)

    def on_arrival(self, label: int) -> None:
        self.arrivals_left -= 1
        booked, ticket_id = self.l_booked[label], self.l_id[label]
        self.label_next(label)
        self.arrive(label // 3, label % 3, booked, ticket_id)
        self.sync_label(label)

    def on_replay(self, index: int) -> None:
        times, services, klasses, booked = self.replay
        self.arrive(int(services[index]), int(klasses[index]), int(booked[index]), index)
        if index + 1 < len(times):
            self.schedule(int(times[index + 1]), EV_REPLAY, index + 1)

    def result(self) -> dict[str, Any]:
        return {
            "n_tickets": self.serial,
            "end_ms": self.now,
            "wait_sum": list(self.wait_sum),
            "waited": list(self.waited),
            "busy_ms": list(self.busy_ms),
            "columns": (Records({name: array(code, self.columns[name])
                                 for name, code in zip(COLUMNS, COLUMN_TYPES, strict=True)})
                        if self.record else None),
        }


__all__ = [
    "ARRIVAL_ID",
    "COLUMNS",
    "COLUMN_TYPES",
    "DIST_EMPIRICAL",
    "DIST_EXPONENTIAL",
    "DIST_FIXED",
    "DIST_LOGNORMAL",
    "NEVER",
    "NO_ARRIVAL",
    "OUT_DONE",
    "OUT_NO_SHOW",
    "OUT_SERVING",
    "OUT_UNSERVED",
    "RESIDUAL_ID",
    "Engine",
    "Records",
    "ReplayColumns",
    "Shifts",
    "SplitMix64",
    "Streams",
    "WaitingColumns",
    "Xoshiro256",
    "arrival_seed",
    "arrival_tables",
    "draw_base",
    "mix64",
    "no_show_probabilities",
    "sample_service_ms",
    "ticket_state",
]
