# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Cython twin of :mod:`fastpath._sim_py`: same API, same results for the same seed.

Read the pure-Python module first: it states the model. Here the run state
lives in C arrays inside the engine, the event queue is a binary heap of
structs ordered by (time, sequence), and the dispatch decisions are the
Cython queue core's ``c_select`` called directly. An engine runs one
simulation at a time (it is not re-entrant).
"""

from array import array

cimport cython
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from libc.math cimport cos, exp, log, sqrt
from libc.stdint cimport int32_t, int64_t, uint64_t
from libc.string cimport memcpy, memset

from fastpath._core_c cimport QueueCore

from fastpath._sim_py import (
    BUSY_UNKNOWN as _BUSY_UNKNOWN,
    COLUMNS,
    DIST_EMPIRICAL as _DIST_EMPIRICAL,
    DIST_EXPONENTIAL as _DIST_EXPONENTIAL,
    DIST_FIXED as _DIST_FIXED,
    DIST_LOGNORMAL as _DIST_LOGNORMAL,
    EV_CLOSE as _EV_CLOSE,
    EV_FREE as _EV_FREE,
    EV_OPEN as _EV_OPEN,
    EV_REPLAY as _EV_REPLAY,
    EV_STREAM as _EV_STREAM,
    NEVER as _NEVER,
    OUT_DONE as _OUT_DONE,
    OUT_NO_SHOW as _OUT_NO_SHOW,
    OUT_SERVING as _OUT_SERVING,
    OUT_UNSERVED as _OUT_UNSERVED,
    TWO_PI as _TWO_PI,
)
from fastpath.types import APPOINTMENT as _APPOINTMENT
from fastpath.types import NORMAL as _NORMAL
from fastpath.types import PRIORITY as _PRIORITY

cdef enum:
    DIST_EXPONENTIAL = 0
    DIST_LOGNORMAL = 1
    DIST_FIXED = 2
    DIST_EMPIRICAL = 3
    EV_OPEN = 0
    EV_CLOSE = 1
    EV_FREE = 2
    EV_STREAM = 3
    EV_REPLAY = 4
    OUT_UNSERVED = 0
    OUT_DONE = 1
    OUT_NO_SHOW = 2
    OUT_SERVING = 3
    C_NORMAL = 0
    C_PRIORITY = 1
    C_APPOINTMENT = 2

cdef int64_t NEVER = _NEVER
cdef int64_t NO_TICKET = -1
cdef int64_t BUSY_UNKNOWN = _BUSY_UNKNOWN
cdef double TWO_PI = _TWO_PI
cdef double TWO_POW_M53 = 1.0 / 9007199254740992.0

# The shared tables must agree with the C enums above.
assert (_DIST_EXPONENTIAL, _DIST_LOGNORMAL, _DIST_FIXED, _DIST_EMPIRICAL) == (0, 1, 2, 3)
assert (_EV_OPEN, _EV_CLOSE, _EV_FREE, _EV_STREAM, _EV_REPLAY) == (0, 1, 2, 3, 4)
assert (_OUT_UNSERVED, _OUT_DONE, _OUT_NO_SHOW, _OUT_SERVING) == (0, 1, 2, 3)
assert (_NORMAL, _PRIORITY, _APPOINTMENT) == (0, 1, 2)


cdef struct Event:
    int64_t time
    int64_t seq
    int32_t kind
    int32_t arg


cdef inline bint _earlier(Event *a, Event *b) noexcept nogil:
    return a.time < b.time or (a.time == b.time and a.seq < b.seq)


cdef inline uint64_t _rotl(uint64_t x, int k) noexcept nogil:
    return (x << k) | (x >> (64 - k))


cdef void *_grow(void *ptr, Py_ssize_t *cap, Py_ssize_t need, size_t item) except NULL:
    """Realloc ``ptr`` to hold at least ``need`` items (doubling)."""
    cdef Py_ssize_t new_cap
    cdef void *grown
    if need <= cap[0] and ptr != NULL:
        return ptr
    new_cap = max(16, cap[0] * 2)
    while new_cap < need:
        new_cap *= 2
    grown = PyMem_Realloc(ptr, new_cap * item)
    if grown == NULL:
        raise MemoryError()
    cap[0] = new_cap
    return grown


cdef void *_resize(void *ptr, Py_ssize_t n, size_t item) except NULL:
    """Realloc ``ptr`` to exactly ``max(1, n)`` items."""
    cdef void *grown = PyMem_Realloc(ptr, max(1, n) * item)
    if grown == NULL:
        raise MemoryError()
    return grown


@cython.final
cdef class Xoshiro256:
    """xoshiro256** with splitmix64 seeding: the pure twin's generator in C."""

    cdef uint64_t s[4]

    def __init__(self, seed):
        if not 0 <= seed < (1 << 64):
            raise ValueError("seed must be in [0, 2**64)")
        self.seed(seed)

    cdef void seed(self, uint64_t x) noexcept nogil:
        cdef int i
        cdef uint64_t z
        for i in range(4):
            x += 0x9E3779B97F4A7C15ULL
            z = x
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL
            self.s[i] = z ^ (z >> 31)

    cdef inline uint64_t c_next(self) noexcept nogil:
        cdef uint64_t result = _rotl(self.s[1] * 5, 7) * 9
        cdef uint64_t t = self.s[1] << 17
        self.s[2] ^= self.s[0]
        self.s[3] ^= self.s[1]
        self.s[1] ^= self.s[2]
        self.s[0] ^= self.s[3]
        self.s[2] ^= t
        self.s[3] = _rotl(self.s[3], 45)
        return result

    cdef inline double c_uniform(self) noexcept nogil:
        return <double> (self.c_next() >> 11) * TWO_POW_M53

    cdef inline double c_exponential(self) noexcept nogil:
        return -log(1.0 - self.c_uniform())

    cdef inline double c_normal(self) noexcept nogil:
        cdef double radius = sqrt(-2.0 * log(1.0 - self.c_uniform()))
        return radius * cos(TWO_PI * self.c_uniform())

    def next_u64(self):
        return self.c_next()

    def uniform(self):
        return self.c_uniform()

    def exponential(self):
        return self.c_exponential()

    def normal(self):
        return self.c_normal()


@cython.final
cdef class Engine:
    """See :class:`fastpath._sim_py.Engine`; ``core_class`` is not offered here."""

    cdef QueueCore core
    cdef Xoshiro256 rng
    cdef readonly Py_ssize_t n_services
    cdef readonly Py_ssize_t n_windows
    # configuration
    cdef int64_t *wo_start          # windows serving service s: wo_list[wo_start[s]:wo_start[s+1]]
    cdef int32_t *wo_list
    cdef int64_t *ws_start          # services of window w: ws_list[ws_start[w]:ws_start[w+1]]
    cdef int32_t *ws_list
    cdef int64_t *idle_count        # per service: idle open windows serving it (speed only)
    cdef char *w_idle
    cdef int64_t *order_base
    cdef int32_t *d_kind
    cdef double *d_a
    cdef double *d_b
    cdef int64_t *emp_start
    cdef int64_t *emp_vals
    cdef double *no_show_p
    cdef int64_t no_show_timeout
    cdef bint requeue_once
    cdef int64_t grace
    cdef int64_t appt_early
    cdef int64_t appt_late
    # event heap
    cdef Event *heap
    cdef Py_ssize_t heap_n
    cdef Py_ssize_t heap_cap
    cdef int64_t seq
    cdef int64_t now
    # ticket slots
    cdef int32_t *t_service
    cdef int32_t *t_klass
    cdef int64_t *t_key
    cdef int64_t *t_order
    cdef int64_t *t_serial
    cdef int64_t *t_arrival
    cdef char *t_requeued
    cdef Py_ssize_t t_n
    cdef Py_ssize_t t_cap
    cdef int32_t *free_list
    cdef Py_ssize_t free_n
    cdef Py_ssize_t free_cap
    cdef int64_t serial
    cdef int64_t *counter
    cdef int64_t target
    cdef int64_t target_called
    # record
    cdef bint record
    cdef int64_t warmup
    cdef int64_t *cols[9]
    cdef Py_ssize_t col_cap
    cdef int64_t *wait_sum
    cdef int64_t *waited
    cdef int64_t *busy_ms
    # windows
    cdef char *w_open
    cdef int64_t *w_current
    cdef char *w_absent
    cdef int64_t *w_since
    cdef int64_t *sh_start          # shifts of window w: sh_open/close[sh_start[w]:sh_start[w+1]]
    cdef int64_t *sh_open
    cdef int64_t *sh_close
    cdef int64_t *w_shift
    # arrivals
    cdef int64_t *st_start          # segments of service s: seg_*[st_start[s]:st_start[s+1]]
    cdef int64_t *seg_starts
    cdef double *seg_rates
    cdef double *p_priority
    cdef double *p_appointment
    cdef int64_t *s_seg
    cdef double *s_time
    cdef int64_t arrivals_until
    cdef int64_t horizon            # prediction: events after it never run, so are not scheduled
    cdef int64_t arrivals_left
    cdef int64_t *rp_time
    cdef int64_t *rp_service
    cdef int64_t *rp_klass
    cdef int64_t *rp_booked
    cdef Py_ssize_t rp_n

    def __cinit__(self):
        # Every pointer starts NULL (Cython zeroes the object), so __dealloc__ is safe.
        self.rng = Xoshiro256(0)

    def __init__(self, sla_ms, class_weight_pct, order_base, windows, dists, no_show_p,
                 int64_t no_show_timeout_ms, bint requeue_once, int64_t appointment_grace_ms,
                 int64_t appointment_early_ms=15 * 60_000,
                 int64_t appointment_late_ms=5 * 60_000, core_class=None):
        cdef Py_ssize_t s, w, i, n_s = len(sla_ms), n_w = len(windows), total
        if core_class is not None:
            raise ValueError("the compiled engine always drives the compiled core")
        if n_s == 0:
            raise ValueError("a hall needs at least one service")
        if not len(order_base) == len(dists) == len(no_show_p) == n_s:
            raise ValueError("sla_ms, order_base, dists and no_show_p need one entry per service")
        for kind, _a, _b, samples in dists:
            if kind not in (DIST_EXPONENTIAL, DIST_LOGNORMAL, DIST_FIXED, DIST_EMPIRICAL):
                raise ValueError(f"unknown distribution kind {kind}")
            if kind == DIST_EMPIRICAL and not samples:
                raise ValueError("an empirical distribution needs samples")
        self.n_services = n_s
        self.n_windows = n_w
        self.core = QueueCore(list(sla_ms), list(class_weight_pct))
        windows_of = [[] for _ in range(n_s)]
        for w, (services, priority_window, ratio_cap) in enumerate(windows):
            self.core.add_window(list(services), priority_window, ratio_cap)
            for service, _weight in services:
                windows_of[service].append(w)
        self.wo_start = self._alloc_i64(n_s + 1)
        self.wo_list = <int32_t *> self._alloc(max(1, sum(map(len, windows_of))), sizeof(int32_t))
        total = 0
        for s in range(n_s):
            self.wo_start[s] = total
            for w in windows_of[s]:
                self.wo_list[total] = w
                total += 1
        self.wo_start[n_s] = total
        self.ws_start = self._alloc_i64(n_w + 1)
        self.ws_list = <int32_t *> self._alloc(max(1, total), sizeof(int32_t))
        total = 0
        for w, (services, _priority_window, _ratio_cap) in enumerate(windows):
            self.ws_start[w] = total
            for service, _weight in services:
                self.ws_list[total] = service
                total += 1
        self.ws_start[n_w] = total
        self.idle_count = self._alloc_i64(n_s)
        self.w_idle = <char *> self._alloc(n_w, 1)
        self.order_base = self._alloc_i64(n_s)
        self.d_kind = <int32_t *> self._alloc(n_s, sizeof(int32_t))
        self.d_a = <double *> self._alloc(n_s, sizeof(double))
        self.d_b = <double *> self._alloc(n_s, sizeof(double))
        self.no_show_p = <double *> self._alloc(n_s, sizeof(double))
        self.emp_start = self._alloc_i64(n_s + 1)
        self.emp_vals = self._alloc_i64(max(1, sum(len(d[3]) for d in dists)))
        total = 0
        for s in range(n_s):
            kind, a, b, samples = dists[s]
            self.order_base[s] = order_base[s]
            self.d_kind[s] = kind
            self.d_a[s] = a
            self.d_b[s] = b
            self.no_show_p[s] = no_show_p[s]
            self.emp_start[s] = total
            for i in range(len(samples)):
                self.emp_vals[total] = samples[i]
                total += 1
        self.emp_start[n_s] = total
        self.no_show_timeout = no_show_timeout_ms
        self.requeue_once = requeue_once
        self.grace = appointment_grace_ms
        self.appt_early = appointment_early_ms
        self.appt_late = appointment_late_ms
        self.counter = self._alloc_i64(n_s)
        self.wait_sum = self._alloc_i64(n_s)
        self.waited = self._alloc_i64(n_s)
        self.busy_ms = self._alloc_i64(n_w)
        self.w_open = <char *> self._alloc(n_w, 1)
        self.w_current = self._alloc_i64(n_w)
        self.w_absent = <char *> self._alloc(n_w, 1)
        self.w_since = self._alloc_i64(n_w)
        self.sh_start = self._alloc_i64(n_w + 1)
        self.w_shift = self._alloc_i64(n_w)
        self.st_start = self._alloc_i64(n_s + 1)
        self.p_priority = <double *> self._alloc(n_s, sizeof(double))
        self.p_appointment = <double *> self._alloc(n_s, sizeof(double))
        self.s_seg = self._alloc_i64(n_s)
        self.s_time = <double *> self._alloc(n_s, sizeof(double))

    cdef void *_alloc(self, Py_ssize_t n, size_t item) except NULL:
        cdef void *ptr = PyMem_Malloc(max(1, n) * item)
        if ptr == NULL:
            raise MemoryError()
        memset(ptr, 0, max(1, n) * item)
        return ptr

    cdef int64_t *_alloc_i64(self, Py_ssize_t n) except NULL:
        return <int64_t *> self._alloc(n, sizeof(int64_t))

    def __dealloc__(self):
        cdef int i
        PyMem_Free(self.wo_start); PyMem_Free(self.wo_list); PyMem_Free(self.order_base)
        PyMem_Free(self.ws_start); PyMem_Free(self.ws_list); PyMem_Free(self.idle_count)
        PyMem_Free(self.w_idle)
        PyMem_Free(self.d_kind); PyMem_Free(self.d_a); PyMem_Free(self.d_b)
        PyMem_Free(self.emp_start); PyMem_Free(self.emp_vals); PyMem_Free(self.no_show_p)
        PyMem_Free(self.heap)
        PyMem_Free(self.t_service); PyMem_Free(self.t_klass); PyMem_Free(self.t_key)
        PyMem_Free(self.t_order); PyMem_Free(self.t_serial); PyMem_Free(self.t_arrival)
        PyMem_Free(self.t_requeued); PyMem_Free(self.free_list); PyMem_Free(self.counter)
        for i in range(9):
            PyMem_Free(self.cols[i])
        PyMem_Free(self.wait_sum); PyMem_Free(self.waited); PyMem_Free(self.busy_ms)
        PyMem_Free(self.w_open); PyMem_Free(self.w_current); PyMem_Free(self.w_absent)
        PyMem_Free(self.w_since); PyMem_Free(self.sh_start); PyMem_Free(self.sh_open)
        PyMem_Free(self.sh_close); PyMem_Free(self.w_shift); PyMem_Free(self.st_start)
        PyMem_Free(self.seg_starts); PyMem_Free(self.seg_rates); PyMem_Free(self.p_priority)
        PyMem_Free(self.p_appointment); PyMem_Free(self.s_seg); PyMem_Free(self.s_time)
        PyMem_Free(self.rp_time); PyMem_Free(self.rp_service); PyMem_Free(self.rp_klass)
        PyMem_Free(self.rp_booked)

    # -- public entry points -------------------------------------------------------

    def run(self, seed, int64_t start_ms, shifts, streams, int64_t arrivals_until_ms=NEVER,
            int64_t max_arrivals=NEVER, replay=None, bint record=True, int64_t warmup=0):
        """See :meth:`fastpath._sim_py.Engine.run`."""
        cdef Py_ssize_t w
        if len(shifts) != self.n_windows or len(streams) != self.n_services:
            raise ValueError("shifts need one entry per window, streams one per service")
        self._start(seed, start_ms, record, warmup)
        self._reset(start_ms, [0] * self.n_windows)
        self._load_streams(streams)
        self._load_shifts(shifts)
        self._set_streams(arrivals_until_ms, max_arrivals, NULL)
        for w in range(self.n_windows):
            self.w_shift[w] = self.sh_start[w]
            self._schedule_next_open(w, start_ms)
        if replay is not None:
            self._set_replay(replay[0], replay[1], replay[2], replay[3])
        self._loop(NEVER)
        return self._result()

    def predict(self, seed, Py_ssize_t replications, int64_t now_ms, int64_t horizon_ms,
                shifts, busy_service, busy_since, streaks, waiting, counters, streams,
                tagged):
        """See :meth:`fastpath._sim_py.Engine.predict`."""
        cdef Py_ssize_t n_w = self.n_windows, rep, i, w, n_wait
        cdef int64_t stop = now_ms + horizon_ms, called
        if not (len(shifts) == len(busy_service) == len(busy_since) == len(streaks) == n_w):
            raise ValueError("window state needs one entry per window")
        w_service, w_klass, w_key, w_order, w_issued = waiting
        queued = sorted(range(len(w_service)), key=lambda j: (w_key[j], w_order[j]))
        n_wait = len(queued)
        # Copy the state into C arrays once; each replication reads only these.
        cdef int64_t[:] q_service = array("q", [w_service[j] for j in queued])
        cdef int64_t[:] q_klass = array("q", [w_klass[j] for j in queued])
        cdef int64_t[:] q_key = array("q", [w_key[j] for j in queued])
        cdef int64_t[:] q_order = array("q", [w_order[j] for j in queued])
        cdef int64_t[:] q_issued = array("q", [w_issued[j] for j in queued])
        cdef int64_t[:] v_bsvc = array("q", busy_service)
        cdef int64_t[:] v_bsince = array("q", busy_since)
        cdef int64_t[:] v_streak = array("q", streaks)
        cdef int64_t[:] v_counter = array("q", counters)
        cdef int64_t tag_service = tagged[0], tag_klass = tagged[1]
        cdef int64_t tag_key = tagged[2], tag_order = tagged[3]
        if len(counters) != self.n_services:
            raise ValueError("counters need one entry per service")
        for i in range(n_wait):
            if not (0 <= q_service[i] < self.n_services and 0 <= q_klass[i] < 3):
                raise IndexError("waiting ticket with service or class out of range")
        if not (0 <= tag_service < self.n_services and 0 <= tag_klass < 3):
            raise IndexError("tagged ticket with service or class out of range")
        for w in range(n_w):
            if v_bsvc[w] >= self.n_services:
                raise IndexError("busy_service out of range")
        self._start(seed, now_ms, False, 0)
        self._load_streams(streams)
        self._load_shifts(shifts)
        waits = array("q", bytes(8 * replications))
        cdef int64_t[:] out = waits
        for rep in range(replications):
            self._reset_c(now_ms, &v_streak[0] if n_w else NULL)
            self.horizon = stop
            self._set_streams(stop, NEVER, &v_counter[0])
            for i in range(n_wait):
                self._add_ticket(q_service[i], q_klass[i], q_key[i], q_order[i], q_issued[i])
            self.target = self._add_ticket(tag_service, tag_klass, tag_key, tag_order, now_ms)
            for w in range(n_w):
                self._set_predicted_window(w, v_bsvc[w], v_bsince[w])
                self._start_shifts(w)
            for w in range(n_w):  # open idle windows call at once, in order
                if self.w_open[w] and self.w_current[w] == NO_TICKET:
                    self._try_call(w)
            called = self._loop(stop)
            out[rep] = horizon_ms if called < 0 else called - now_ms
        return list(waits)

    # -- set-up ------------------------------------------------------------------

    cdef int _start(self, seed, int64_t now_ms, bint record, int64_t warmup) except -1:
        if not 0 <= seed < (1 << 64):
            raise ValueError("seed must be in [0, 2**64)")
        self.rng.seed(<uint64_t> seed)
        self.record = record
        self.warmup = warmup
        memset(self.wait_sum, 0, self.n_services * sizeof(int64_t))
        memset(self.waited, 0, self.n_services * sizeof(int64_t))
        memset(self.busy_ms, 0, self.n_windows * sizeof(int64_t))
        self.now = now_ms
        return 0

    cdef int _reset(self, int64_t now_ms, streaks) except -1:
        cdef int64_t[:] values = array("q", streaks)
        return self._reset_c(now_ms, &values[0] if self.n_windows else NULL)

    cdef int _reset_c(self, int64_t now_ms, int64_t *streaks) except -1:
        cdef Py_ssize_t i, w
        cdef int64_t k
        for i in range(self.t_n):  # leftovers of the previous run
            if i < self.core._tcap and self.core._tgroup[i] >= 0:
                self.core.c_remove(i)
        for w in range(self.n_windows):
            self.core.c_record_call(w, C_NORMAL)
            for k in range(streaks[w]):
                self.core.c_record_call(w, C_PRIORITY)
        self.now = now_ms
        self.heap_n = 0
        self.seq = 0
        self.t_n = 0
        self.free_n = 0
        self.serial = 0
        self.target = NO_TICKET
        self.target_called = -1
        memset(self.counter, 0, self.n_services * sizeof(int64_t))
        memset(self.w_open, 0, self.n_windows)
        memset(self.w_idle, 0, self.n_windows)
        memset(self.idle_count, 0, self.n_services * sizeof(int64_t))
        memset(self.w_absent, 0, self.n_windows)
        memset(self.w_since, 0, self.n_windows * sizeof(int64_t))
        for w in range(self.n_windows):
            self.w_current[w] = NO_TICKET
        self.rp_n = 0
        self.horizon = NEVER
        return 0

    cdef int _load_streams(self, streams) except -1:
        cdef Py_ssize_t s, total = 0, i
        for s in range(self.n_services):
            starts, rates, p_pri, p_app = streams[s]
            if len(starts) != len(rates):
                raise ValueError("a stream needs one rate per segment start")
            total += len(starts)
        self.seg_starts = <int64_t *> _resize(self.seg_starts, total, sizeof(int64_t))
        self.seg_rates = <double *> _resize(self.seg_rates, total, sizeof(double))
        total = 0
        for s in range(self.n_services):
            starts, rates, p_pri, p_app = streams[s]
            self.st_start[s] = total
            for i in range(len(starts)):
                self.seg_starts[total] = starts[i]
                self.seg_rates[total] = rates[i]
                total += 1
            self.p_priority[s] = p_pri
            self.p_appointment[s] = p_app
        self.st_start[self.n_services] = total
        return 0

    cdef int _load_shifts(self, shifts) except -1:
        cdef Py_ssize_t w, total = 0
        for w in range(self.n_windows):
            total += len(shifts[w])
        self.sh_open = <int64_t *> _resize(self.sh_open, total, sizeof(int64_t))
        self.sh_close = <int64_t *> _resize(self.sh_close, total, sizeof(int64_t))
        total = 0
        for w in range(self.n_windows):
            self.sh_start[w] = total
            for opens, closes in shifts[w]:
                self.sh_open[total] = opens
                self.sh_close[total] = closes
                total += 1
        self.sh_start[self.n_windows] = total
        return 0

    cdef int _set_streams(self, int64_t arrivals_until, int64_t max_arrivals,
                          int64_t *counters) except -1:
        cdef Py_ssize_t s, seg, first, last
        cdef double t
        self.arrivals_until = arrivals_until
        self.arrivals_left = max_arrivals
        if counters != NULL:
            memcpy(self.counter, counters, self.n_services * sizeof(int64_t))
        for s in range(self.n_services):
            first = self.st_start[s]
            last = self.st_start[s + 1]
            if first == last:
                continue
            seg = first
            t = <double> self.now
            if t < self.seg_starts[first]:
                t = <double> self.seg_starts[first]
            while seg + 1 < last and self.seg_starts[seg + 1] <= t:
                seg += 1
            self.s_seg[s] = seg
            self.s_time[s] = t
            self._next_stream_arrival(s)
        return 0

    cdef int _next_stream_arrival(self, Py_ssize_t s) except -1:
        cdef Py_ssize_t seg = self.s_seg[s], last = self.st_start[s + 1]
        cdef double t = self.s_time[s], seg_end, rate, candidate
        while True:
            if seg + 1 < last:
                seg_end = <double> self.seg_starts[seg + 1]
            else:
                seg_end = <double> self.arrivals_until
            rate = self.seg_rates[seg]
            if rate > 0.0:
                candidate = t + self.rng.c_exponential() / rate
                if candidate < seg_end:
                    self.s_seg[s] = seg
                    self.s_time[s] = candidate
                    self._schedule(<int64_t> candidate, EV_STREAM, s)
                    return 0
            if seg + 1 >= last:
                return 0
            seg += 1
            t = <double> self.seg_starts[seg]

    cdef int _start_shifts(self, Py_ssize_t w) except -1:
        cdef Py_ssize_t i = self.sh_start[w], last = self.sh_start[w + 1]
        while i < last and self.sh_close[i] <= self.now:
            i += 1
        self.w_shift[w] = i
        if i < last and self.sh_open[i] <= self.now:
            self.w_open[w] = 1
            if self.sh_close[i] <= self.horizon:
                self._schedule(self.sh_close[i], EV_CLOSE, w)
            self._refresh_idle(w)
        elif i < last:
            self._schedule(self.sh_open[i], EV_OPEN, w)
        return 0

    cdef int _schedule_next_open(self, Py_ssize_t w, int64_t now_ms) except -1:
        cdef Py_ssize_t i = self.w_shift[w], last = self.sh_start[w + 1]
        while i < last and self.sh_close[i] <= now_ms:
            i += 1
        self.w_shift[w] = i
        if i < last:
            self._schedule(self.sh_open[i] if self.sh_open[i] > now_ms else now_ms, EV_OPEN, w)
        return 0

    cdef int _set_replay(self, times, services, klasses, booked) except -1:
        cdef Py_ssize_t i, n = len(times)
        if not n == len(services) == len(klasses) == len(booked):
            raise ValueError("replay columns must have the same length")
        if any(times[i] > times[i + 1] for i in range(n - 1)):
            raise ValueError("replay times must be sorted")
        self.rp_time = <int64_t *> _resize(self.rp_time, n, sizeof(int64_t))
        self.rp_service = <int64_t *> _resize(self.rp_service, n, sizeof(int64_t))
        self.rp_klass = <int64_t *> _resize(self.rp_klass, n, sizeof(int64_t))
        self.rp_booked = <int64_t *> _resize(self.rp_booked, n, sizeof(int64_t))
        for i in range(n):
            self.rp_time[i] = times[i]
            self.rp_service[i] = services[i]
            self.rp_klass[i] = klasses[i]
            self.rp_booked[i] = booked[i]
            if not (0 <= self.rp_service[i] < self.n_services and 0 <= self.rp_klass[i] < 3):
                raise IndexError("replayed arrival with service or class out of range")
        self.rp_n = n
        if n:
            self._schedule(self.rp_time[0], EV_REPLAY, 0)
        return 0

    cdef int _set_predicted_window(self, Py_ssize_t w, int64_t busy_service,
                                   int64_t busy_since) except -1:
        cdef int64_t now = self.now, elapsed, end = -1, length
        cdef int attempt
        if busy_service >= 0:
            elapsed = now - busy_since
            for attempt in range(16):
                length = self._sample_service(busy_service)
                if length > elapsed:
                    end = busy_since + length
                    break
            if end < 0:
                end = now + self._sample_service(busy_service)
            self.w_current[w] = BUSY_UNKNOWN
            self.w_since[w] = now
            self._schedule(end, EV_FREE, w)
        self._refresh_idle(w)
        return 0

    # -- primitives ----------------------------------------------------------------

    cdef int64_t _sample_service(self, Py_ssize_t s) noexcept nogil:
        cdef int32_t kind = self.d_kind[s]
        cdef int64_t value, n, index
        if kind == DIST_EXPONENTIAL:
            value = <int64_t> (self.d_a[s] * self.rng.c_exponential() + 0.5)
        elif kind == DIST_LOGNORMAL:
            value = <int64_t> (exp(self.d_a[s] + self.d_b[s] * self.rng.c_normal()) + 0.5)
        elif kind == DIST_FIXED:
            value = <int64_t> (self.d_a[s] + 0.5)
        else:
            n = self.emp_start[s + 1] - self.emp_start[s]
            index = <int64_t> (self.rng.c_uniform() * n)
            if index >= n:
                index = n - 1
            value = self.emp_vals[self.emp_start[s] + index]
        return value if value > 0 else 1

    cdef int _schedule(self, int64_t time, int kind, Py_ssize_t arg) except -1:
        cdef Py_ssize_t i, parent
        cdef Event ev
        if self.heap_n == self.heap_cap:
            self.heap = <Event *> _grow(self.heap, &self.heap_cap, self.heap_n + 1, sizeof(Event))
        ev.time = time
        ev.seq = self.seq
        ev.kind = kind
        ev.arg = <int32_t> arg
        self.seq += 1
        i = self.heap_n
        self.heap_n += 1
        while i > 0:
            parent = (i - 1) >> 1
            if _earlier(&ev, &self.heap[parent]):
                self.heap[i] = self.heap[parent]
                i = parent
            else:
                break
        self.heap[i] = ev
        return 0

    cdef Event _pop(self) noexcept nogil:
        cdef Event top = self.heap[0]
        cdef Event last
        cdef Py_ssize_t i = 0, child, n
        self.heap_n -= 1
        n = self.heap_n
        if n > 0:
            last = self.heap[n]
            while True:
                child = 2 * i + 1
                if child >= n:
                    break
                if child + 1 < n and _earlier(&self.heap[child + 1], &self.heap[child]):
                    child += 1
                if _earlier(&self.heap[child], &last):
                    self.heap[i] = self.heap[child]
                    i = child
                else:
                    break
            self.heap[i] = last
        return top

    cdef int64_t _add_ticket(self, int64_t service, int64_t klass, int64_t key, int64_t order,
                             int64_t arrival) except -2:
        cdef int64_t slot
        cdef Py_ssize_t cap, c
        if self.free_n > 0:
            self.free_n -= 1
            slot = self.free_list[self.free_n]
        else:
            slot = self.t_n
            if self.t_n == self.t_cap:
                cap = self.t_cap
                self.t_service = <int32_t *> _grow(self.t_service, &cap, slot + 1, sizeof(int32_t))
                cap = self.t_cap
                self.t_klass = <int32_t *> _grow(self.t_klass, &cap, slot + 1, sizeof(int32_t))
                cap = self.t_cap
                self.t_key = <int64_t *> _grow(self.t_key, &cap, slot + 1, sizeof(int64_t))
                cap = self.t_cap
                self.t_order = <int64_t *> _grow(self.t_order, &cap, slot + 1, sizeof(int64_t))
                cap = self.t_cap
                self.t_serial = <int64_t *> _grow(self.t_serial, &cap, slot + 1, sizeof(int64_t))
                cap = self.t_cap
                self.t_arrival = <int64_t *> _grow(self.t_arrival, &cap, slot + 1,
                                                   sizeof(int64_t))
                cap = self.t_cap
                self.t_requeued = <char *> _grow(self.t_requeued, &cap, slot + 1, 1)
                self.t_cap = cap
            self.t_n += 1
        self.t_service[slot] = <int32_t> service
        self.t_klass[slot] = <int32_t> klass
        self.t_key[slot] = key
        self.t_order[slot] = order
        self.t_serial[slot] = self.serial
        self.t_arrival[slot] = arrival
        self.t_requeued[slot] = 0
        if self.record:
            if self.serial >= self.col_cap:
                for c in range(9):
                    cap = self.col_cap
                    self.cols[c] = <int64_t *> _grow(self.cols[c], &cap, self.serial + 1,
                                                     sizeof(int64_t))
                self.col_cap = cap
            self.cols[0][self.serial] = arrival
            self.cols[1][self.serial] = service
            self.cols[2][self.serial] = klass
            self.cols[3][self.serial] = key
            self.cols[4][self.serial] = -1
            self.cols[5][self.serial] = -1
            self.cols[6][self.serial] = -1
            self.cols[7][self.serial] = -1
            self.cols[8][self.serial] = OUT_UNSERVED
        self.serial += 1
        self.core.c_push(slot, service, <int> klass, key, order)
        return slot

    cdef int _arrive(self, Py_ssize_t service, int64_t klass, int64_t booked) except -1:
        cdef int64_t now = self.now, key = now
        if klass == C_APPOINTMENT:
            if booked < 0 or now > booked + self.grace:
                klass = C_NORMAL
            else:
                key = booked
        self.counter[service] += 1
        self._add_ticket(service, klass, key, self.order_base[service] + self.counter[service],
                         now)
        self._offer(service)
        return 0

    cdef inline void _refresh_idle(self, Py_ssize_t w) noexcept nogil:
        # Keeps idle_count exact so that _offer skips the scan when every
        # window of the service is busy; it changes no decision.
        cdef bint idle = self.w_open[w] and self.w_current[w] == NO_TICKET
        cdef Py_ssize_t i
        if idle != self.w_idle[w]:
            self.w_idle[w] = idle
            for i in range(self.ws_start[w], self.ws_start[w + 1]):
                self.idle_count[self.ws_list[i]] += 1 if idle else -1

    cdef int _offer(self, Py_ssize_t service) except -1:
        cdef Py_ssize_t i, w
        if self.idle_count[service] == 0:
            return 0
        for i in range(self.wo_start[service], self.wo_start[service + 1]):
            w = self.wo_list[i]
            if self.w_open[w] and self.w_current[w] == NO_TICKET:
                self._try_call(w)
                return 0
        return 0

    cdef int64_t _try_call(self, Py_ssize_t w) except -2:
        cdef int64_t now = self.now, slot, serial, start, end
        cdef int32_t klass, service
        cdef bint first_call, absent
        slot = self.core.c_select(w, now)
        if slot == NO_TICKET:
            self._refresh_idle(w)
            return NO_TICKET
        self.core.c_remove(slot)
        klass = self.t_klass[slot]
        self.core.c_record_call(w, klass)
        service = self.t_service[slot]
        serial = self.t_serial[slot]
        first_call = not self.t_requeued[slot]
        if slot == self.target:
            self.target_called = now
        if first_call and serial >= self.warmup:
            start = self.t_key[slot] if klass == C_APPOINTMENT else self.t_arrival[slot]
            if now > start:
                self.wait_sum[service] += now - start
            self.waited[service] += 1
        absent = self.no_show_p[service] > 0.0 and self.rng.c_uniform() < self.no_show_p[service]
        if absent:
            end = now + self.no_show_timeout
        else:
            end = now + self._sample_service(service)
        if self.record:
            if first_call:
                self.cols[4][serial] = now
            self.cols[7][serial] = w
            if not absent:
                self.cols[5][serial] = now
            self.cols[8][serial] = OUT_SERVING
        self.w_current[w] = slot
        self.w_absent[w] = absent
        self.w_since[w] = now
        self._schedule(end, EV_FREE, w)
        self._refresh_idle(w)
        return slot

    cdef int _release(self, int64_t slot, int64_t outcome) except -1:
        cdef int64_t serial
        cdef Py_ssize_t cap
        if self.record:
            serial = self.t_serial[slot]
            self.cols[8][serial] = outcome
            self.cols[6][serial] = self.now
        if self.free_n == self.free_cap:
            cap = self.free_cap
            self.free_list = <int32_t *> _grow(self.free_list, &cap, self.free_n + 1,
                                               sizeof(int32_t))
            self.free_cap = cap
        self.free_list[self.free_n] = <int32_t> slot
        self.free_n += 1
        return 0

    # -- the event loop ------------------------------------------------------------

    cdef int64_t _loop(self, int64_t stop_ms) except -2:
        cdef Event ev
        while self.heap_n > 0 and self.target_called < 0:
            if self.heap[0].time > stop_ms:
                break
            ev = self._pop()
            self.now = ev.time
            if ev.kind == EV_FREE:
                self._on_free(ev.arg)
            elif ev.kind == EV_STREAM:
                self._on_stream(ev.arg)
            elif ev.kind == EV_OPEN:
                self._on_open(ev.arg)
            elif ev.kind == EV_CLOSE:
                self._on_close(ev.arg)
            else:
                self._on_replay(ev.arg)
        return self.target_called

    cdef int _on_free(self, Py_ssize_t w) except -1:
        cdef int64_t slot = self.w_current[w]
        self.busy_ms[w] += self.now - self.w_since[w]
        self.w_current[w] = NO_TICKET
        if slot >= 0:
            if not self.w_absent[w]:
                self._release(slot, OUT_DONE)
            elif self.requeue_once and not self.t_requeued[slot]:
                self.t_requeued[slot] = 1
                self.t_key[slot] = self.now
                self.core.c_push(slot, self.t_service[slot], self.t_klass[slot], self.now,
                                 self.t_order[slot])
                if self.record:
                    self.cols[8][self.t_serial[slot]] = OUT_UNSERVED
                if self.w_open[w]:
                    self._try_call(w)
                self._refresh_idle(w)
                if self.core._tgroup[slot] >= 0:
                    self._offer(self.t_service[slot])
                return 0
            else:
                self._release(slot, OUT_NO_SHOW)
        if self.w_open[w]:
            self._try_call(w)
        self._refresh_idle(w)
        return 0

    cdef int _on_open(self, Py_ssize_t w) except -1:
        self.w_open[w] = 1
        if self.sh_close[self.w_shift[w]] <= self.horizon:
            self._schedule(self.sh_close[self.w_shift[w]], EV_CLOSE, w)
        if self.w_current[w] == NO_TICKET:
            self._try_call(w)
        self._refresh_idle(w)
        return 0

    cdef int _on_close(self, Py_ssize_t w) except -1:
        self.w_open[w] = 0
        self._refresh_idle(w)
        if self.sh_start[w + 1] > self.sh_start[w]:
            self.w_shift[w] += 1
            self._schedule_next_open(w, self.now)
        return 0

    cdef int _on_stream(self, Py_ssize_t s) except -1:
        cdef double p_pri, p_app, u
        cdef int64_t klass = C_NORMAL, booked = -1, span
        if self.arrivals_left <= 0:
            return 0
        self.arrivals_left -= 1
        p_pri = self.p_priority[s]
        p_app = self.p_appointment[s]
        if p_pri > 0.0 or p_app > 0.0:
            u = self.rng.c_uniform()
            if u < p_pri:
                klass = C_PRIORITY
            elif u < p_pri + p_app:
                klass = C_APPOINTMENT
                span = self.appt_early + self.appt_late
                booked = self.now + <int64_t> (self.rng.c_uniform() * span) - self.appt_late
                if booked < 0:
                    booked = 0
        self._arrive(s, klass, booked)
        self._next_stream_arrival(s)
        return 0

    cdef int _on_replay(self, Py_ssize_t i) except -1:
        self._arrive(self.rp_service[i], self.rp_klass[i], self.rp_booked[i])
        if i + 1 < self.rp_n:
            self._schedule(self.rp_time[i + 1], EV_REPLAY, i + 1)
        return 0

    cdef object _column(self, int c):
        out = array("q")
        if self.serial:
            out.frombytes((<char *> self.cols[c])[:self.serial * sizeof(int64_t)])
        return list(out)

    cdef object _result(self):
        columns = None
        if self.record:
            columns = {name: self._column(c) for c, name in enumerate(COLUMNS)}
        return {
            "n_tickets": self.serial,
            "end_ms": self.now,
            "wait_sum": [self.wait_sum[s] for s in range(self.n_services)],
            "waited": [self.waited[s] for s in range(self.n_services)],
            "busy_ms": [self.busy_ms[w] for w in range(self.n_windows)],
            "columns": columns,
        }
