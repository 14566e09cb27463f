# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Cython twin of :mod:`fastpath._sim_py`: same API, same results for the same seed.

Read the pure-Python module first: it states the model. Here the run state
lives in C arrays inside the engine, the pending events sit in tournament
trees over fixed slots ordered by (time, kind, slot) like the twin's heap, and
the dispatch decisions are the Cython queue core's policy, inlined.

The event loops run without the GIL, so another Python thread (the edge
daemon's event loop, with ``asyncio.to_thread``) keeps running while a day or
a prediction is simulated. An engine simulates one thing at a time: each
entry point holds the engine's lock, so concurrent calls on one engine wait
for each other instead of mixing their state.

A prediction builds the hall's state once, saves it (the queue core's
``c_save`` and a copy of the engine's arrays) and restores it with
``memcpy`` for each replication; only the random parts (the arrival streams,
the queued tickets' and the busy windows' draws) are drawn again, in the pure
twin's order. A ticket's draws for its next call are made when it is queued
(``_draw_call``): they depend on the ticket alone, so they are off the
critical path of the call that the policy decides.
"""

import threading
from array import array

cimport cython
from cpython cimport array as carray
from cpython.mem cimport PyMem_RawFree, PyMem_RawMalloc, PyMem_RawRealloc
from libc.math cimport exp, log
from libc.stdint cimport INT32_MAX, int8_t, int16_t, int32_t, int64_t, uint64_t
from libc.stdlib cimport qsort
from libc.string cimport memcpy, memset

from fastpath._core_c cimport (
    Group,
    QueueCore,
    core_pop_head,
    core_push,
    core_record_call,
    core_select,
)

from fastpath._sim_py import (
    BUSY_UNKNOWN as _BUSY_UNKNOWN,
    COLUMN_TYPES,
    COLUMNS,
    Records,
    DIST_EMPIRICAL as _DIST_EMPIRICAL,
    DIST_EXPONENTIAL as _DIST_EXPONENTIAL,
    DIST_FIXED as _DIST_FIXED,
    DIST_LOGNORMAL as _DIST_LOGNORMAL,
    EV_ARRIVAL as _EV_ARRIVAL,
    EV_CLOSE as _EV_CLOSE,
    EV_FREE as _EV_FREE,
    EV_OPEN as _EV_OPEN,
    EV_REPLAY as _EV_REPLAY,
    EVENT_SPAN_MS as _EVENT_SPAN_MS,
    NEVER as _NEVER,
    NO_ARRIVAL as _NO_ARRIVAL,
    OUT_DONE as _OUT_DONE,
    OUT_NO_SHOW as _OUT_NO_SHOW,
    OUT_SERVING as _OUT_SERVING,
    OUT_UNSERVED as _OUT_UNSERVED,
    ZIG_EXP_F,
    ZIG_EXP_K,
    ZIG_EXP_R,
    ZIG_EXP_W,
    ZIG_NORMAL_F,
    ZIG_NORMAL_K,
    ZIG_NORMAL_R,
    ZIG_NORMAL_W,
    ARRIVAL_ID as _ARRIVAL_ID,
    DRAW_SALT as _DRAW_SALT,
    GOLDEN_GAMMA as _GOLDEN_GAMMA,
    RESIDUAL_ID as _RESIDUAL_ID,
    arrival_tables,
    event_out_of_range,
    expected_tickets,
    no_show_probabilities,
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
    EV_REPLAY = 3
    EV_ARRIVAL = 4
    OUT_UNSERVED = 0
    OUT_DONE = 1
    OUT_NO_SHOW = 2
    OUT_SERVING = 3
    C_NORMAL = 0
    C_PRIORITY = 1
    C_APPOINTMENT = 2
    SLOT_BITS = 12                  # an event's key: time << 15 | kind << SLOT_BITS | slot
    N_STORED = 7                    # the columns the engine writes (STORED_COLUMNS)
    X_KEY = 0                       # what a record exception replaces (see _except)
    X_CALLED = 1
    X_START = 2
    X_END = 3

cdef int64_t NEVER = _NEVER
cdef int64_t NO_ARRIVAL = _NO_ARRIVAL
cdef int64_t NO_TICKET = -1
cdef int64_t BUSY_UNKNOWN = _BUSY_UNKNOWN
cdef int64_t ABSENT = -1                # a ticket's duration when absent at its next call
cdef double TWO_POW_M53 = 1.0 / 9007199254740992.0
cdef uint64_t GOLDEN = _GOLDEN_GAMMA
cdef uint64_t DRAW_SALT = _DRAW_SALT
cdef int64_t ARRIVAL_ID = _ARRIVAL_ID
cdef int64_t RESIDUAL_ID = _RESIDUAL_ID
cdef uint64_t SLOT_MASK = (1 << SLOT_BITS) - 1

# The shared tables must agree with the C enums above.
assert (_DIST_EXPONENTIAL, _DIST_LOGNORMAL, _DIST_FIXED, _DIST_EMPIRICAL) == (0, 1, 2, 3)
assert (_EV_OPEN, _EV_CLOSE, _EV_FREE, _EV_REPLAY, _EV_ARRIVAL) == (0, 1, 2, 3, 4)
assert _EVENT_SPAN_MS == OD_TMAX
assert (_OUT_UNSERVED, _OUT_DONE, _OUT_NO_SHOW, _OUT_SERVING) == (0, 1, 2, 3)
assert COLUMNS == ("arrival", "service", "klass", "key", "called", "start", "end", "window",
                   "outcome", "wait") and COLUMN_TYPES == tuple("qhbqqqqhbq")

# What the engine writes per ticket while it runs (26 bytes, not the 58 of the
# ten columns: on a first run the memory new to the process is most of the
# records' cost). The first six are the columns of those names (the wait is
# what every reader reads first); "end" is kept as an int32 offset from the
# arrival (-1: not yet / never); "key", "called" and "start" follow (key =
# arrival, called = the wait's start + the wait, start = called) except for
# the tickets listed in the run's exceptions (see Engine._except and
# _ColumnDeriver).
STORED_COLUMNS = ("arrival", "service", "klass", "outcome", "window", "wait", "end")
STORED_TYPES = ("q", "h", "b", "b", "h", "q", "i")
assert (_NORMAL, _PRIORITY, _APPOINTMENT) == (0, 1, 2)


# -- random numbers: xoshiro256** and the ziggurat (tables from the pure twin) --------

cdef uint64_t ZN_K[256]
cdef double ZN_W[256]
cdef double ZN_F[256]
cdef uint64_t ZE_K[256]
cdef double ZE_W[256]
cdef double ZE_F[256]
cdef double ZN_R = ZIG_NORMAL_R
cdef double ZE_R = ZIG_EXP_R

assert len(ZIG_NORMAL_K) == len(ZIG_EXP_K) == 256
for _i in range(256):
    ZN_K[_i] = ZIG_NORMAL_K[_i]
    ZN_W[_i] = ZIG_NORMAL_W[_i]
    ZN_F[_i] = ZIG_NORMAL_F[_i]
    ZE_K[_i] = ZIG_EXP_K[_i]
    ZE_W[_i] = ZIG_EXP_W[_i]
    ZE_F[_i] = ZIG_EXP_F[_i]


cdef struct Rng:                    # xoshiro256**: an arrival label's long stream
    uint64_t s[4]


cdef struct SplitMix:               # splitmix64: one call of one ticket (ticket_state)
    uint64_t x


ctypedef fused Gen:                 # the ziggurat below serves both
    Rng
    SplitMix


cdef inline uint64_t _rotl(uint64_t x, int k) noexcept nogil:
    return (x << k) | (x >> (64 - k))


cdef inline uint64_t _mix(uint64_t z) noexcept nogil:
    """See fastpath._sim_py.mix64."""
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL
    return z ^ (z >> 31)


cdef void _rng_seed(Rng *r, uint64_t x) noexcept nogil:
    cdef int i
    for i in range(4):
        x += GOLDEN
        r.s[i] = _mix(x)


cdef inline uint64_t _arrival_seed(uint64_t seed, uint64_t stream) noexcept nogil:
    """See fastpath._sim_py.arrival_seed."""
    return _mix(seed + (stream + 1) * 0xD1B54A32D192ED03ULL)


cdef inline uint64_t _ticket_state(uint64_t base, int64_t ticket_id, int64_t call) noexcept nogil:
    """See fastpath._sim_py.ticket_state."""
    return _mix(base + (<uint64_t> (2 * ticket_id + call + 1)) * GOLDEN)


cdef inline uint64_t _next(Gen *r) noexcept nogil:
    cdef uint64_t result, t
    if Gen is SplitMix:
        r.x += GOLDEN
        return _mix(r.x)
    else:
        result = _rotl(r.s[1] * 5, 7) * 9
        t = r.s[1] << 17
        r.s[2] ^= r.s[0]
        r.s[3] ^= r.s[1]
        r.s[1] ^= r.s[2]
        r.s[0] ^= r.s[3]
        r.s[2] ^= t
        r.s[3] = _rotl(r.s[3], 45)
        return result


cdef inline double _uniform(Gen *r) noexcept nogil:
    return <double> (_next(r) >> 11) * TWO_POW_M53


cdef double _exponential_slow(Gen *r, uint64_t i, double x) noexcept nogil:
    """The 1% of exponential draws outside a layer's core: see _Ziggurat.exponential."""
    cdef uint64_t u, m
    while True:
        if i == 0:
            return ZE_R - log(1.0 - _uniform(r))
        if (ZE_F[i - 1] - ZE_F[i]) * _uniform(r) + ZE_F[i] < exp(-x):
            return x
        u = _next(r)
        i = u & 0xFF
        m = u >> 11
        x = <double> m * ZE_W[i]
        if m < ZE_K[i]:
            return x


cdef inline double _exponential(Gen *r) noexcept nogil:
    cdef uint64_t u = _next(r)
    cdef uint64_t i = u & 0xFF
    cdef uint64_t m = u >> 11
    cdef double x = <double> m * ZE_W[i]
    if m < ZE_K[i]:
        return x
    return _exponential_slow(r, i, x)


cdef double _normal_slow(Gen *r, uint64_t i, uint64_t negative, double x) noexcept nogil:
    """The 1% of normal draws outside a layer's core: see _Ziggurat.normal."""
    cdef uint64_t u, m
    cdef double xx, yy
    while True:
        if i == 0:
            while True:
                xx = -log(1.0 - _uniform(r)) / ZN_R
                yy = -log(1.0 - _uniform(r))
                if yy + yy > xx * xx:
                    return -(ZN_R + xx) if negative else ZN_R + xx
        if (ZN_F[i - 1] - ZN_F[i]) * _uniform(r) + ZN_F[i] < exp(-0.5 * x * x):
            return x
        u = _next(r)
        i = u & 0xFF
        negative = (u >> 8) & 1
        m = u >> 12
        x = <double> m * ZN_W[i]
        if negative:
            x = -x
        if m < ZN_K[i]:
            return x


cdef inline double _normal(Gen *r) noexcept nogil:
    cdef uint64_t u = _next(r)
    cdef uint64_t i = u & 0xFF
    cdef uint64_t negative = (u >> 8) & 1
    cdef uint64_t m = u >> 12
    cdef double x = <double> m * ZN_W[i]
    cdef uint64_t bits
    # -x if negative, by flipping the sign bit: a coin toss is the worst branch.
    memcpy(&bits, &x, sizeof(double))
    bits ^= negative << 63
    memcpy(&x, &bits, sizeof(double))
    if m < ZN_K[i]:
        return x
    return _normal_slow(r, i, negative, x)


@cython.final
cdef class Xoshiro256:
    """xoshiro256** with splitmix64 seeding: the pure twin's generator in C."""

    cdef Rng r

    def __init__(self, seed):
        if not 0 <= seed < (1 << 64):
            raise ValueError("seed must be in [0, 2**64)")
        _rng_seed(&self.r, <uint64_t> seed)

    def next_u64(self):
        return _next(&self.r)

    def uniform(self):
        return _uniform(&self.r)

    def exponential(self):
        return _exponential(&self.r)

    def normal(self):
        return _normal(&self.r)


@cython.final
cdef class SplitMix64:
    """splitmix64: the pure twin's generator of one ticket's call, in C."""

    cdef SplitMix g

    def __init__(self, state):
        if not 0 <= state < (1 << 64):
            raise ValueError("seed must be in [0, 2**64)")
        self.g.x = <uint64_t> state

    def next_u64(self):
        return _next(&self.g)

    def uniform(self):
        return _uniform(&self.g)

    def exponential(self):
        return _exponential(&self.g)

    def normal(self):
        return _normal(&self.g)


# -- memory --------------------------------------------------------------------------

cdef int _no_memory() except -1 nogil:
    with gil:
        raise MemoryError()


cdef void *_grow(void *ptr, Py_ssize_t *cap, Py_ssize_t need, size_t item) except NULL nogil:
    """Realloc ``ptr`` to hold at least ``need`` items (doubling)."""
    cdef Py_ssize_t new_cap
    cdef void *grown
    if need <= cap[0] and ptr != NULL:
        return ptr
    new_cap = max(16, cap[0] * 2)
    while new_cap < need:
        new_cap *= 2
    grown = PyMem_RawRealloc(ptr, new_cap * item)
    if grown == NULL:
        _no_memory()
        return NULL
    cap[0] = new_cap
    return grown


cdef int _compare_i64(const void *a, const void *b) noexcept nogil:
    cdef int64_t x = (<const int64_t *> a)[0], y = (<const int64_t *> b)[0]
    return (x > y) - (x < y)


cdef void *_resize(void *ptr, Py_ssize_t n, size_t item) except NULL:
    """Realloc ``ptr`` to exactly ``max(1, n)`` items."""
    cdef void *grown = PyMem_RawRealloc(ptr, max(1, n) * item)
    if grown == NULL:
        raise MemoryError()
    return grown


# -- the events ------------------------------------------------------------------

cdef extern from *:
    """
    /* Events run in the order (time, kind, slot): at the same millisecond shift
       opens, then closes, then window ends, then the replay, then arrivals;
       windows in the hall's order, arrivals by label (the pure twin's heap holds
       the same triples). So an event is one 64-bit key, 49 bits of time since
       the run's base (17,800 years) above 3 bits of kind and 12 of slot, and two
       events compare as their keys do. An empty slot's key is all ones (OD_INF). */
    #define OD_TSHIFT 15
    #define OD_TMAX ((((int64_t)1) << 49) - 2)
    #define OD_INF 0xFFFFFFFFFFFFFFFFULL

    /* A tournament tree over the slots: node n_leaves + slot holds a slot's key
       (or OD_INF), node p the earlier of nodes 2p and 2p + 1, so node 1 is the
       next event. After a leaf changes, replay its matches up to the root: the
       climbing key stays in a register and each step loads only its sibling,
       which does not depend on the step before; the choice is a conditional
       move, not a branch (the order of two events is unpredictable). */
    static inline void od_climb(uint64_t *k, Py_ssize_t node) {
        uint64_t key = k[node];
        while (node > 1) {
            uint64_t other = k[node ^ 1];
            key = other < key ? other : key;
            node >>= 1;
            k[node] = key;
        }
    }

    /* Every match again, from the leaves up (after many leaves changed). */
    static void od_rebuild(uint64_t *k, Py_ssize_t n_leaves) {
        for (Py_ssize_t p = n_leaves - 1; p > 0; p--) {
            uint64_t left = k[2 * p], right = k[2 * p + 1];
            k[p] = right < left ? right : left;
        }
    }
    """
    uint64_t OD_INF
    uint64_t OD_TSHIFT
    int64_t OD_TMAX
    void _climb "od_climb"(uint64_t *k, Py_ssize_t node) noexcept nogil
    void _rebuild "od_rebuild"(uint64_t *k, Py_ssize_t n_leaves) noexcept nogil


cdef struct Tree:
    uint64_t *key                   # 2 * n_leaves nodes: n_leaves + slot is a slot's event
    uint64_t *saved_key             # the tree saved by Engine._save
    Py_ssize_t n_leaves


cdef enum:
    TREE_FREE = 0                   # one slot per window
    TREE_OTHER = 1                  # one EV_OPEN/EV_CLOSE slot per window, one EV_REPLAY slot
    TREE_ARRIVAL = 2                # one EV_ARRIVAL slot per label (service * 3 + class)
    N_TREES = 3


cdef struct Ticket:
    int64_t key
    int64_t order
    int64_t arrival
    int64_t serial
    int64_t id                      # its identity for its draws (ticket_state)
    int64_t duration                # its next call's service time, or ABSENT (see _draw_call)
    int32_t service
    int32_t klass
    int32_t requeued
    int32_t _pad


@cython.final
cdef class Engine:
    """See :class:`fastpath._sim_py.Engine`; ``core_class`` is not offered here."""

    cdef QueueCore core
    cdef uint64_t draws             # the run's (replication's) seed of ticket draws
    cdef object lock
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
    cdef double *no_show_p          # per service: the probability a called citizen is absent
    cdef int64_t no_show_timeout
    cdef bint requeue_once
    cdef int64_t grace
    cdef int64_t appt_early
    cdef int64_t appt_late
    # Pending events: a window has at most one EV_FREE and one EV_OPEN or EV_CLOSE
    # pending, the replay one EV_REPLAY, a label one EV_ARRIVAL. So each has a
    # fixed slot and the events sit in tournament trees over the slots (see
    # od_climb): window ends, arrivals, and the rare rest; scheduling is
    # log2(slots) branchless steps.
    cdef Tree trees[N_TREES]
    cdef int tree_of[5]             # per event kind
    cdef Py_ssize_t slot_base[5]    # per event kind: its slot is slot_base + arg
    cdef bint batch                 # set-up: _schedule fills slots, _rebuild orders them
    cdef int64_t base               # event keys count time from here (see od_climb)
    cdef int64_t now
    # ticket slots
    cdef Ticket *tk
    cdef Py_ssize_t t_n
    cdef Py_ssize_t t_cap
    cdef int32_t *free_list
    cdef Py_ssize_t free_n
    cdef Py_ssize_t free_cap
    cdef int64_t serial
    cdef int64_t *counter
    cdef int64_t target
    cdef int64_t target_called
    cdef int64_t target_group       # the new ticket's service * 3 + class (-1: none)
    cdef int64_t target_key
    cdef int64_t target_order
    # record
    cdef bint record
    cdef int64_t warmup
    # The per-ticket records: the arrays handed to the caller (STORED_COLUMNS,
    # written in place, no copy at the end), their buffers, and the exceptions
    # (serial, X_ kind, value triples; see _except).
    cdef list col_arrays
    cdef int64_t *r_arrival
    cdef int16_t *r_service
    cdef int8_t *r_klass
    cdef int8_t *r_outcome
    cdef int16_t *r_window
    cdef int64_t *r_wait
    cdef int32_t *r_end
    cdef Py_ssize_t col_cap
    cdef int64_t *x_rec
    cdef Py_ssize_t x_n
    cdef Py_ssize_t x_cap
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
    # arrivals, label by label (see fastpath._sim_py._Run.start_arrivals): the
    # tables of arrival_tables, and per label its stream (generator, segment,
    # time), next arrival (ms, booked), whether that is scheduled, whether lazy
    cdef Py_ssize_t n_labels        # 3 per service: service * 3 + class
    cdef int64_t *a_start
    cdef double *a_mean             # n_labels rows of a_nseg mean gaps
    cdef Py_ssize_t a_nseg
    cdef char *l_has                # the label has arrivals at all
    cdef Rng *l_rng
    cdef Py_ssize_t *l_seg
    cdef double *l_time
    cdef int64_t *l_next            # NO_ARRIVAL: none left
    cdef int64_t *l_booked
    cdef int64_t *l_count           # arrivals drawn so far
    cdef int64_t *l_id              # the next arrival's identity (see ticket_state)
    cdef char *l_scheduled
    cdef char *l_lazy
    cdef int64_t arrivals_until
    cdef int64_t horizon            # prediction: events after it never run, so are not scheduled
    cdef int64_t arrivals_left
    cdef int64_t *rp_time
    cdef int64_t *rp_service
    cdef int64_t *rp_klass
    cdef int64_t *rp_booked
    cdef Py_ssize_t rp_n
    cdef Py_ssize_t rp_next
    # a forecast's records (see forecast): per counted ticket, its replication,
    # service, wait and whether it was called
    cdef bint fc_on
    cdef int64_t fc_count_until
    cdef int64_t fc_replication
    cdef int32_t *fc_rep
    cdef int32_t *fc_service
    cdef int64_t *fc_wait
    cdef int8_t *fc_called
    cdef int32_t *fc_place          # a waiting ticket's place in the queue, or -1
    cdef int64_t fc_n_waiting       # tickets waiting at the start: identities below this
    cdef Py_ssize_t fc_n
    cdef Py_ssize_t fc_cap
    cdef int64_t *fc_scratch
    cdef Py_ssize_t fc_scratch_cap
    # the saved prediction state (see predict)
    cdef Ticket *sv_tk
    cdef Py_ssize_t sv_t_n
    cdef int64_t sv_serial
    cdef char *sv_open
    cdef char *sv_idle
    cdef int64_t *sv_idle_count
    cdef int64_t *sv_shift
    cdef int64_t *sv_counter
    cdef int64_t *sv_current
    cdef int64_t *sv_since

    def __cinit__(self):
        # Every pointer starts NULL (Cython zeroes the object), so __dealloc__ is safe.
        self.lock = threading.Lock()

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
        absent_p = no_show_probabilities(no_show_p)
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
            self.no_show_p[s] = absent_p[s]
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
        self.n_labels = 3 * n_s
        self.l_has = <char *> self._alloc(3 * n_s, 1)
        self.l_rng = <Rng *> self._alloc(3 * n_s, sizeof(Rng))
        self.l_seg = <Py_ssize_t *> self._alloc(3 * n_s, sizeof(Py_ssize_t))
        self.l_time = <double *> self._alloc(3 * n_s, sizeof(double))
        self.l_next = self._alloc_i64(3 * n_s)
        self.l_booked = self._alloc_i64(3 * n_s)
        self.l_count = self._alloc_i64(3 * n_s)
        self.l_id = self._alloc_i64(3 * n_s)
        self.l_scheduled = <char *> self._alloc(3 * n_s, 1)
        self.l_lazy = <char *> self._alloc(3 * n_s, 1)
        self.sv_open = <char *> self._alloc(n_w, 1)
        self.sv_idle = <char *> self._alloc(n_w, 1)
        self.sv_idle_count = self._alloc_i64(n_s)
        self.sv_shift = self._alloc_i64(n_w)
        self.sv_counter = self._alloc_i64(n_s)
        self.sv_current = self._alloc_i64(n_w)
        self.sv_since = self._alloc_i64(n_w)
        if max(n_w + 1, 3 * n_s) > SLOT_MASK:
            raise ValueError("too many windows or services")
        self.tree_of[EV_FREE] = TREE_FREE
        self.tree_of[EV_OPEN] = self.tree_of[EV_CLOSE] = self.tree_of[EV_REPLAY] = TREE_OTHER
        self.tree_of[EV_ARRIVAL] = TREE_ARRIVAL
        self.slot_base[EV_REPLAY] = n_w  # the others are 0
        self._alloc_tree(TREE_FREE, n_w)
        self._alloc_tree(TREE_OTHER, n_w + 1)
        self._alloc_tree(TREE_ARRIVAL, 3 * n_s)
        self._events_clear()

    cdef int _alloc_tree(self, int i, Py_ssize_t slots) except -1:
        cdef Tree *tree = &self.trees[i]
        tree.n_leaves = 2
        while tree.n_leaves < slots:
            tree.n_leaves *= 2
        tree.key = <uint64_t *> self._alloc(2 * tree.n_leaves, sizeof(uint64_t))
        tree.saved_key = <uint64_t *> self._alloc(2 * tree.n_leaves, sizeof(uint64_t))
        return 0

    cdef void *_alloc(self, Py_ssize_t n, size_t item) except NULL:
        cdef void *ptr = PyMem_RawMalloc(max(1, n) * item)
        if ptr == NULL:
            raise MemoryError()
        memset(ptr, 0, max(1, n) * item)
        return ptr

    cdef int64_t *_alloc_i64(self, Py_ssize_t n) except NULL:
        return <int64_t *> self._alloc(n, sizeof(int64_t))

    def __dealloc__(self):
        cdef int i
        PyMem_RawFree(self.wo_start); PyMem_RawFree(self.wo_list); PyMem_RawFree(self.order_base)
        PyMem_RawFree(self.ws_start); PyMem_RawFree(self.ws_list); PyMem_RawFree(self.idle_count)
        PyMem_RawFree(self.w_idle)
        PyMem_RawFree(self.d_kind); PyMem_RawFree(self.d_a); PyMem_RawFree(self.d_b)
        PyMem_RawFree(self.emp_start); PyMem_RawFree(self.emp_vals); PyMem_RawFree(self.no_show_p)
        PyMem_RawFree(self.tk); PyMem_RawFree(self.free_list); PyMem_RawFree(self.x_rec)
        PyMem_RawFree(self.counter)
        PyMem_RawFree(self.wait_sum); PyMem_RawFree(self.waited); PyMem_RawFree(self.busy_ms)
        PyMem_RawFree(self.w_open); PyMem_RawFree(self.w_current); PyMem_RawFree(self.w_absent)
        PyMem_RawFree(self.w_since); PyMem_RawFree(self.sh_start); PyMem_RawFree(self.sh_open)
        PyMem_RawFree(self.sh_close); PyMem_RawFree(self.w_shift)
        PyMem_RawFree(self.a_start); PyMem_RawFree(self.a_mean); PyMem_RawFree(self.l_has)
        PyMem_RawFree(self.l_rng); PyMem_RawFree(self.l_seg); PyMem_RawFree(self.l_time)
        PyMem_RawFree(self.l_next); PyMem_RawFree(self.l_booked)
        PyMem_RawFree(self.l_count); PyMem_RawFree(self.l_id)
        PyMem_RawFree(self.l_scheduled); PyMem_RawFree(self.l_lazy)
        PyMem_RawFree(self.rp_time); PyMem_RawFree(self.rp_service); PyMem_RawFree(self.rp_klass)
        PyMem_RawFree(self.rp_booked)
        for i in range(N_TREES):
            PyMem_RawFree(self.trees[i].key); PyMem_RawFree(self.trees[i].saved_key)
        PyMem_RawFree(self.sv_tk)
        PyMem_RawFree(self.sv_open)
        PyMem_RawFree(self.sv_idle); PyMem_RawFree(self.sv_idle_count)
        PyMem_RawFree(self.sv_shift); PyMem_RawFree(self.sv_counter)
        PyMem_RawFree(self.sv_current); PyMem_RawFree(self.sv_since)
        PyMem_RawFree(self.fc_rep); PyMem_RawFree(self.fc_service); PyMem_RawFree(self.fc_wait)
        PyMem_RawFree(self.fc_called); PyMem_RawFree(self.fc_scratch)
        PyMem_RawFree(self.fc_place)

    # -- public entry points -------------------------------------------------------

    def run(self, seed, int64_t start_ms, shifts, streams, int64_t arrivals_until_ms=NEVER,
            int64_t max_arrivals=NEVER, replay=None, bint record=True, int64_t warmup=0):
        """See :meth:`fastpath._sim_py.Engine.run`; the GIL is released while it runs."""
        cdef Py_ssize_t w
        if len(shifts) != self.n_windows or len(streams) != self.n_services:
            raise ValueError("shifts need one entry per window, streams one per service")
        tables = arrival_tables(streams, start_ms, arrivals_until_ms)
        with self.lock:
            self._start(seed, start_ms, record, warmup)
            if replay is not None and len(replay[0]) and replay[0][0] < start_ms:
                self.base = replay[0][0]  # event keys count from the earliest event
            self._reset(start_ms, [0] * self.n_windows)
            if record:  # room for the tickets expected, so the records rarely move
                self.col_arrays = None
                self.x_n = 0
                self._columns(expected_tickets(tables, arrivals_until_ms, max_arrivals,
                                               len(replay[0]) if replay is not None else 0))
            self._load_arrivals(tables, arrivals_until_ms)
            self._load_shifts(shifts)
            self.arrivals_left = max_arrivals
            self._start_arrivals(seed, 0, False)
            for w in range(self.n_windows):
                self.w_shift[w] = self.sh_start[w]
                self._schedule_next_open(w, start_ms)
            if replay is not None:
                self._set_replay(replay[0], replay[1], replay[2], replay[3])
            with nogil:
                self._loop(NEVER)
            return self._result()

    def predict(self, seed, Py_ssize_t replications, int64_t now_ms, int64_t horizon_ms,
                shifts, busy_service, busy_since, streaks, waiting, counters, streams,
                tagged, bint lazy_arrivals=True):
        """See :meth:`fastpath._sim_py.Engine.predict`.

        The replications run without the GIL (the inputs are copied into C
        arrays first), so a worker thread can call this while the caller's
        event loop goes on.
        """
        cdef int64_t tag_service = tagged[0], tag_klass = tagged[1]
        if not (0 <= tag_service < self.n_services and 0 <= tag_klass < 3):
            raise IndexError("tagged ticket with service or class out of range")
        # The new ticket's own group is left out of the arrivals: see the pure twin.
        tables = arrival_tables(streams, now_ms, now_ms + horizon_ms,
                                tag_service * 3 + tag_klass if tag_klass != C_APPOINTMENT else -1)
        waits = array("q", bytes(8 * max(0, replications)))
        self._from_state(seed, replications, now_ms, now_ms + horizon_ms, shifts, busy_service,
                         busy_since, streaks, waiting, counters, tables, tagged, lazy_arrivals,
                         waits)
        return list(waits)

    def forecast(self, seed, Py_ssize_t replications, int64_t now_ms, int64_t until_ms,
                 int64_t count_until_ms, shifts, busy_service, busy_since, streaks, waiting,
                 counters, streams):
        """See :meth:`fastpath._sim_py.Engine.forecast`; the GIL is released while it runs."""
        tables = arrival_tables(streams, now_ms, until_ms)
        self.fc_n = 0
        self.fc_on = 1
        self.fc_count_until = count_until_ms
        try:
            self._from_state(seed, replications, now_ms, until_ms, shifts, busy_service,
                             busy_since, streaks, waiting, counters, tables, None, False, None)
        finally:
            self.fc_on = 0
        return {"replication": self._fc_column("i", self.fc_rep, sizeof(int32_t)),
                "service": self._fc_column("i", self.fc_service, sizeof(int32_t)),
                "wait": self._fc_column("q", self.fc_wait, sizeof(int64_t)),
                "called": self._fc_column("b", self.fc_called, sizeof(int8_t)),
                "place": self._fc_column("i", self.fc_place, sizeof(int32_t))}

    cdef object _fc_column(self, str code, void *buffer, size_t size):
        column = array(code)
        if self.fc_n:
            column.frombytes((<char *> buffer)[:self.fc_n * size])
        return column

    cdef int _from_state(self, seed, Py_ssize_t replications, int64_t now_ms, int64_t stop,
                         shifts, busy_service, busy_since, streaks, waiting, counters, tables,
                         tagged, bint lazy_arrivals, waits) except -1:
        """Simulate ``replications`` times from a hall state (a prediction's, or a
        forecast's when ``tagged`` is None); see the pure twin's ``_from_state``."""
        cdef Py_ssize_t n_w = self.n_windows, i, w, n_wait
        cdef uint64_t c_seed
        cdef int64_t *out = NULL
        cdef int64_t[:] out_view
        if not (len(shifts) == len(busy_service) == len(busy_since) == len(streaks) == n_w):
            raise ValueError("window state needs one entry per window")
        if replications < 0:
            raise ValueError("replications must be >= 0")
        w_service, w_klass, w_key, w_order, w_issued = waiting
        queued = sorted(range(len(w_service)), key=lambda j: (w_key[j], w_order[j]))
        n_wait = len(queued)
        # Copy the state into C arrays once; each replication reads only these.
        cdef int64_t[:] q_service = array("q", [w_service[j] for j in queued])
        cdef int64_t[:] q_klass = array("q", [w_klass[j] for j in queued])
        cdef int64_t[:] q_key = array("q", [w_key[j] for j in queued])
        cdef int64_t[:] q_order = array("q", [w_order[j] for j in queued])
        cdef int64_t[:] q_issued = array("q", [w_issued[j] for j in queued])
        cdef int64_t[:] v_bsvc = array("q", list(busy_service) + [0])
        cdef int64_t[:] v_bsince = array("q", list(busy_since) + [0])
        cdef int64_t[:] v_counter = array("q", counters)
        if len(counters) != self.n_services:
            raise ValueError("counters need one entry per service")
        for i in range(n_wait):
            if not (0 <= q_service[i] < self.n_services and 0 <= q_klass[i] < 3):
                raise IndexError("waiting ticket with service or class out of range")
        for w in range(n_w):
            if v_bsvc[w] >= self.n_services:
                raise IndexError("busy_service out of range")
        if waits is not None and replications:
            out_view = waits
            out = &out_view[0]
        with self.lock:
            self._start(seed, now_ms, False, 0)
            self._load_arrivals(tables, stop)
            self._load_shifts(shifts)
            # The state at now_ms without its random parts, built once.
            self._reset(now_ms, streaks)
            self.horizon = stop
            memcpy(self.counter, &v_counter[0], self.n_services * sizeof(int64_t))
            self.fc_n_waiting = n_wait
            for i in range(n_wait):  # identity: the place in the queue (see ticket_state)
                self._add_ticket(q_service[i], q_klass[i], q_key[i], q_order[i], q_issued[i], i)
            if tagged is not None:
                self.target = self._add_ticket(tagged[0], tagged[1], tagged[2], tagged[3],
                                               now_ms, n_wait)
                self.target_group = tagged[0] * 3 + tagged[1]
                self.target_key = tagged[2]
                self.target_order = tagged[3]
            for w in range(n_w):
                self._start_shifts(w)
            for w in range(n_w):  # busy windows: all but their (random) end
                if v_bsvc[w] >= 0:
                    self.w_current[w] = BUSY_UNKNOWN
                    self.w_since[w] = now_ms
                    self._refresh_idle(w)
            self._save()
            c_seed = seed
            with nogil:
                self._replicate(c_seed, replications, now_ms, stop - now_ms, &v_bsvc[0],
                                &v_bsince[0], out, lazy_arrivals)
        return 0

    cdef int _replicate(self, uint64_t seed, Py_ssize_t replications, int64_t now_ms,
                        int64_t horizon_ms, const int64_t *busy_service,
                        const int64_t *busy_since, int64_t *out,
                        bint lazy_arrivals) except -1 nogil:
        cdef Py_ssize_t rep, w, i
        cdef int64_t called
        for rep in range(replications):
            self._restore(now_ms)
            self.draws = _arrival_seed(seed ^ DRAW_SALT, rep)
            for i in range(self.t_n):  # the restored queue's tickets: this replication's draws
                self._draw_call(&self.tk[i], 0)
            self._start_arrivals(seed, rep, lazy_arrivals)
            self.batch = 1
            for w in range(self.n_windows):
                if busy_service[w] >= 0:
                    self._schedule_residual(w, busy_service[w], busy_since[w])
            self.batch = 0
            # The set-up scheduled window ends only: the other tree is as restored.
            _rebuild(self.trees[TREE_FREE].key, self.trees[TREE_FREE].n_leaves)
            self.fc_replication = rep
            for w in range(self.n_windows):  # open idle windows call at once, in order
                if self.w_open[w] and self.w_current[w] == NO_TICKET:
                    self._try_call(w)
            called = self._loop(now_ms + horizon_ms)
            if self.fc_on:
                self._fc_never_called(now_ms + horizon_ms)
            else:
                out[rep] = horizon_ms if called < 0 else called - now_ms
        return 0

    cdef inline int _fc_add(self, int64_t service, int64_t wait, int8_t called,
                            int64_t place) except -1 nogil:
        """A forecast's record of one counted ticket (see forecast)."""
        cdef Py_ssize_t cap
        if self.fc_n == self.fc_cap:
            cap = self.fc_cap
            self.fc_rep = <int32_t *> _grow(self.fc_rep, &cap, self.fc_n + 1, sizeof(int32_t))
            cap = self.fc_cap
            self.fc_service = <int32_t *> _grow(self.fc_service, &cap, self.fc_n + 1,
                                                sizeof(int32_t))
            cap = self.fc_cap
            self.fc_wait = <int64_t *> _grow(self.fc_wait, &cap, self.fc_n + 1, sizeof(int64_t))
            cap = self.fc_cap
            self.fc_called = <int8_t *> _grow(self.fc_called, &cap, self.fc_n + 1, sizeof(int8_t))
            cap = self.fc_cap
            self.fc_place = <int32_t *> _grow(self.fc_place, &cap, self.fc_n + 1, sizeof(int32_t))
            self.fc_cap = cap
        self.fc_rep[self.fc_n] = <int32_t> self.fc_replication
        self.fc_service[self.fc_n] = <int32_t> service
        self.fc_wait[self.fc_n] = wait
        self.fc_called[self.fc_n] = called
        self.fc_place[self.fc_n] = <int32_t> place
        self.fc_n += 1
        return 0

    cdef int _fc_never_called(self, int64_t until_ms) except -1 nogil:
        """The counted tickets still waiting at the end, service by service, shortest
        wait first (the pure twin's order): their wait so far."""
        cdef Py_ssize_t s, slot, n
        cdef int64_t start
        cdef Ticket *t
        cdef int64_t *waits
        for s in range(self.n_services):
            n = 0
            waits = self.fc_scratch
            for slot in range(self.t_n):
                t = &self.tk[slot]
                if (slot < self.core._tcap and self.core._tgroup[slot] >= 0 and t.service == s
                        and not t.requeued and t.arrival < self.fc_count_until):
                    start = t.arrival
                    if t.klass == C_APPOINTMENT and t.key > start:
                        start = t.key
                    if n == self.fc_scratch_cap:
                        self.fc_scratch = <int64_t *> _grow(self.fc_scratch, &self.fc_scratch_cap,
                                                            n + 1, sizeof(int64_t))
                        waits = self.fc_scratch
                    waits[n] = until_ms - start if until_ms > start else 0
                    n += 1
            if n:
                qsort(waits, n, sizeof(int64_t), _compare_i64)
                for slot in range(n):
                    self._fc_add(s, waits[slot], 0, -1)
        return 0

    # -- set-up ------------------------------------------------------------------

    cdef int _start(self, seed, int64_t now_ms, bint record, int64_t warmup) except -1:
        if not 0 <= seed < (1 << 64):
            raise ValueError("seed must be in [0, 2**64)")
        self.draws = _arrival_seed(<uint64_t> seed ^ DRAW_SALT, 0)
        self.record = record
        self.warmup = warmup
        memset(self.wait_sum, 0, self.n_services * sizeof(int64_t))
        memset(self.waited, 0, self.n_services * sizeof(int64_t))
        memset(self.busy_ms, 0, self.n_windows * sizeof(int64_t))
        self.now = now_ms
        self.base = now_ms
        return 0

    cdef int _reset(self, int64_t now_ms, streaks) except -1:
        cdef Py_ssize_t i, w
        cdef int64_t k
        if len(streaks) != self.n_windows:
            raise ValueError("window state needs one entry per window")
        for i in range(self.t_n):  # leftovers of the previous run
            if i < self.core._tcap and self.core._tgroup[i] >= 0:
                self.core.c_remove(i)
        for w in range(self.n_windows):
            self.core.c_record_call(w, C_NORMAL)
            for k in range(streaks[w]):
                self.core.c_record_call(w, C_PRIORITY)
        self.now = now_ms
        self._events_clear()
        self.t_n = 0
        self.free_n = 0
        self.serial = 0
        self.target = NO_TICKET
        self.target_called = -1
        self.target_group = -1
        memset(self.counter, 0, self.n_services * sizeof(int64_t))
        memset(self.w_open, 0, self.n_windows)
        memset(self.w_idle, 0, self.n_windows)
        memset(self.idle_count, 0, self.n_services * sizeof(int64_t))
        memset(self.w_absent, 0, self.n_windows)
        memset(self.w_since, 0, self.n_windows * sizeof(int64_t))
        for w in range(self.n_windows):
            self.w_current[w] = NO_TICKET
        self.rp_n = 0
        self.rp_next = 0
        self.horizon = NEVER
        return 0

    cdef int _save(self) except -1:
        """Save the prediction's deterministic state; :meth:`_restore` brings it back."""
        cdef Py_ssize_t n_w = self.n_windows, n_s = self.n_services, i
        cdef Tree *t
        self.core.c_save(self.t_n)
        self.sv_tk = <Ticket *> _resize(self.sv_tk, self.t_n, sizeof(Ticket))
        memcpy(self.sv_tk, self.tk, self.t_n * sizeof(Ticket))
        for i in range(N_TREES):
            t = &self.trees[i]
            memcpy(t.saved_key, t.key, 2 * t.n_leaves * sizeof(uint64_t))
        self.sv_t_n = self.t_n
        self.sv_serial = self.serial
        memcpy(self.sv_open, self.w_open, n_w)
        memcpy(self.sv_idle, self.w_idle, n_w)
        memcpy(self.sv_shift, self.w_shift, n_w * sizeof(int64_t))
        memcpy(self.sv_idle_count, self.idle_count, n_s * sizeof(int64_t))
        memcpy(self.sv_counter, self.counter, n_s * sizeof(int64_t))
        memcpy(self.sv_current, self.w_current, n_w * sizeof(int64_t))
        memcpy(self.sv_since, self.w_since, n_w * sizeof(int64_t))
        return 0

    cdef void _restore(self, int64_t now_ms) noexcept nogil:
        cdef Py_ssize_t n_w = self.n_windows, n_s = self.n_services, i
        cdef Tree *t
        self.core.c_restore()
        memcpy(self.tk, self.sv_tk, self.sv_t_n * sizeof(Ticket))
        for i in range(N_TREES):
            t = &self.trees[i]
            if i == TREE_FREE:  # its inner nodes are rebuilt after the set-up
                memcpy(t.key + t.n_leaves, t.saved_key + t.n_leaves,
                       t.n_leaves * sizeof(uint64_t))
            else:
                memcpy(t.key, t.saved_key, 2 * t.n_leaves * sizeof(uint64_t))
        self.t_n = self.sv_t_n
        self.free_n = 0
        self.serial = self.sv_serial
        self.now = now_ms
        self.target_called = -1
        self.arrivals_left = NEVER
        memcpy(self.w_open, self.sv_open, n_w)
        memcpy(self.w_idle, self.sv_idle, n_w)
        memcpy(self.w_shift, self.sv_shift, n_w * sizeof(int64_t))
        memcpy(self.idle_count, self.sv_idle_count, n_s * sizeof(int64_t))
        memcpy(self.counter, self.sv_counter, n_s * sizeof(int64_t))
        memcpy(self.w_current, self.sv_current, n_w * sizeof(int64_t))
        memcpy(self.w_since, self.sv_since, n_w * sizeof(int64_t))
        memset(self.w_absent, 0, n_w)

    cdef int _load_arrivals(self, tables, int64_t arrivals_until) except -1:
        """Copy the tables of :func:`fastpath._sim_py.arrival_tables` into C arrays."""
        starts, means = tables
        cdef Py_ssize_t i, n = len(starts)
        self.a_start = <int64_t *> _resize(self.a_start, n, sizeof(int64_t))
        self.a_mean = <double *> _resize(self.a_mean, n * self.n_labels, sizeof(double))
        for i in range(n):
            self.a_start[i] = starts[i]
        memset(self.l_has, 0, self.n_labels)
        for i in range(n * self.n_labels):
            self.a_mean[i] = means[i]
            if self.a_mean[i] > 0.0:
                self.l_has[i // n] = 1
        self.a_nseg = n
        self.arrivals_until = arrivals_until
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

    cdef int _start_arrivals(self, uint64_t seed, uint64_t replication, bint lazy) except -1 nogil:
        """See fastpath._sim_py._Run.start_arrivals."""
        cdef Py_ssize_t label, n_labels = self.n_labels
        for label in range(n_labels):
            self.l_scheduled[label] = 0
            self.l_lazy[label] = lazy and label % 3 != C_APPOINTMENT
            self.l_next[label] = NO_ARRIVAL
            if self.l_has[label]:
                _rng_seed(&self.l_rng[label], _arrival_seed(seed, replication * n_labels + label))
                self.l_seg[label] = 0
                self.l_time[label] = <double> self.a_start[0]
                self.l_count[label] = 0
                self._label_next(label)
        for label in range(n_labels):
            self._sync_label(label)
        return 0

    cdef void _label_next(self, Py_ssize_t label) noexcept nogil:
        """See fastpath._sim_py._Run.label_next."""
        cdef Py_ssize_t seg = self.l_seg[label], n = self.a_nseg
        cdef double t = self.l_time[label], seg_end, mean, candidate
        cdef double *means = self.a_mean + label * n
        cdef Rng *rng = &self.l_rng[label]
        cdef int64_t now, booked
        while True:
            seg_end = <double> self.a_start[seg + 1] if seg + 1 < n else <double> self.arrivals_until
            mean = means[seg]
            if mean > 0.0:
                candidate = t + _exponential(rng) * mean
                if candidate < seg_end:
                    break
            if seg + 1 >= n:
                self.l_next[label] = NO_ARRIVAL
                return
            seg += 1
            t = <double> self.a_start[seg]
        self.l_seg[label] = seg
        self.l_time[label] = candidate
        now = <int64_t> candidate
        self.l_next[label] = now
        self.l_id[label] = ARRIVAL_ID + self.l_count[label] * self.n_labels + label
        self.l_count[label] += 1
        if label % 3 == C_APPOINTMENT:  # booked within [now - late, now + early)
            booked = now + <int64_t> (_uniform(rng) * (self.appt_early + self.appt_late)) - self.appt_late
            self.l_booked[label] = booked if booked > 0 else 0

    cdef inline int _sync_label(self, Py_ssize_t label) except -1 nogil:
        """See fastpath._sim_py._Run.sync_label."""
        cdef Group *group
        if self.l_scheduled[label] or self.l_next[label] == NO_ARRIVAL or self.arrivals_left <= 0:
            return 0
        group = &self.core._groups[label]  # a label is its group's index in the core
        if self.l_lazy[label] and group.start != group.end:
            return 0
        self._schedule(self.l_next[label], EV_ARRIVAL, label)
        self.l_scheduled[label] = 1
        return 0

    cdef int _catch_up(self, Py_ssize_t label) except -1 nogil:
        """See fastpath._sim_py._Run.catch_up."""
        cdef int64_t time, ticket_id, service = label // 3
        if not self.l_lazy[label] or self.l_scheduled[label]:
            return 0
        while self.l_next[label] < self.now:
            time = self.l_next[label]
            ticket_id = self.l_id[label]
            self._label_next(label)
            self._add_ticket(service, label % 3, time, self._take_number(service), time, ticket_id)
        return 0

    cdef inline int64_t _take_number(self, Py_ssize_t service) noexcept nogil:
        """The next ticket of the service: its order (number_order of its number)."""
        self.counter[service] += 1
        return self.order_base[service] + self.counter[service]

    cdef int _start_shifts(self, Py_ssize_t w) except -1 nogil:
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

    cdef int _schedule_next_open(self, Py_ssize_t w, int64_t now_ms) except -1 nogil:
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
        self.rp_next = 0
        if n:
            self._schedule(self.rp_time[0], EV_REPLAY, 0)
        return 0

    cdef inline int _schedule_residual(self, Py_ssize_t w, int64_t busy_service,
                                       int64_t busy_since) except -1 nogil:
        """A busy window's end: a draw conditioned on lasting past what has elapsed
        (see :meth:`fastpath._sim_py._Run.set_predicted_window`; its other state is
        part of the saved prediction state)."""
        cdef int64_t now = self.now, elapsed = now - busy_since, end = -1, length
        cdef int attempt
        cdef SplitMix g
        g.x = _ticket_state(self.draws, RESIDUAL_ID + w, 0)
        for attempt in range(16):
            length = self._sample_service(busy_service, &g)
            if length > elapsed:
                end = busy_since + length
                break
        if end < 0:
            end = now + self._sample_service(busy_service, &g)
        self._schedule(end, EV_FREE, w)
        return 0

    # -- primitives ----------------------------------------------------------------

    cdef inline int64_t _sample_service(self, Py_ssize_t s, SplitMix *g) noexcept nogil:
        cdef int32_t kind = self.d_kind[s]
        cdef int64_t value, n, index
        if kind == DIST_LOGNORMAL:
            value = <int64_t> (exp(self.d_a[s] + self.d_b[s] * _normal(g)) + 0.5)
        elif kind == DIST_EXPONENTIAL:
            value = <int64_t> (self.d_a[s] * _exponential(g) + 0.5)
        elif kind == DIST_FIXED:
            value = <int64_t> (self.d_a[s] + 0.5)
        else:
            n = self.emp_start[s + 1] - self.emp_start[s]
            index = <int64_t> (_uniform(g) * n)
            if index >= n:
                index = n - 1
            value = self.emp_vals[self.emp_start[s] + index]
        return value if value > 0 else 1

    cdef inline void _draw_call(self, Ticket *t, int64_t call) noexcept nogil:
        """A call's draws (see fastpath._sim_py.ticket_state): absent or how long.

        Drawn when the ticket is queued (or requeued), not when it is called: the
        draws depend only on the ticket, so the CPU makes them while other events
        run instead of after the policy's choice, on the call's critical path.
        """
        cdef SplitMix g
        cdef double p = self.no_show_p[t.service]
        g.x = _ticket_state(self.draws, t.id, call)
        if p > 0.0 and <double> (g.x >> 11) * TWO_POW_M53 < p:
            t.duration = ABSENT
        else:
            t.duration = self._sample_service(t.service, &g)

    cdef void _events_clear(self) noexcept nogil:
        cdef Py_ssize_t i, j
        for j in range(N_TREES):
            for i in range(2 * self.trees[j].n_leaves):
                self.trees[j].key[i] = OD_INF

    cdef inline int _schedule(self, int64_t time, int kind, Py_ssize_t arg) except -1 nogil:
        cdef Tree *t = &self.trees[self.tree_of[kind]]
        cdef Py_ssize_t slot = self.slot_base[kind] + arg
        cdef int64_t rel = time - self.base
        if rel < 0 or rel > OD_TMAX:
            with gil:
                raise OverflowError(event_out_of_range(time, self.base))
        t.key[t.n_leaves + slot] = ((<uint64_t> rel) << OD_TSHIFT) | (
            (<uint64_t> kind) << SLOT_BITS) | <uint64_t> slot
        if not self.batch:
            _climb(t.key, t.n_leaves + slot)
        return 0

    cdef inline int64_t _add_ticket(self, int64_t service, int64_t klass, int64_t key, int64_t order,
                             int64_t arrival, int64_t ticket_id) except -2 nogil:
        cdef int64_t slot
        cdef Ticket *t
        if self.free_n > 0:
            self.free_n -= 1
            slot = self.free_list[self.free_n]
        else:
            slot = self.t_n
            if self.t_n == self.t_cap:
                self.tk = <Ticket *> _grow(self.tk, &self.t_cap, slot + 1, sizeof(Ticket))
            self.t_n += 1
        t = &self.tk[slot]
        t.service = <int32_t> service
        t.klass = <int32_t> klass
        t.key = key
        t.order = order
        t.serial = self.serial
        t.arrival = arrival
        t.id = ticket_id
        self._draw_call(t, 0)
        t.requeued = 0
        if self.record:
            if self.serial >= self.col_cap:  # more arrivals than the run expected: rare
                with gil:
                    self._columns(2 * self.col_cap + 1024)
            self.r_arrival[self.serial] = arrival
            self.r_service[self.serial] = <int16_t> service
            self.r_klass[self.serial] = <int8_t> klass
            self.r_outcome[self.serial] = OUT_UNSERVED
            self.r_window[self.serial] = -1
            self.r_wait[self.serial] = -1
            self.r_end[self.serial] = -1
            if key != arrival:  # an appointment on time (or a ticket a prediction starts with)
                self._except(self.serial, X_KEY, key)
        self.serial += 1
        core_push(self.core, slot, service, <int> klass, key, order)
        return slot

    cdef inline int _arrive(self, Py_ssize_t service, int64_t klass, int64_t booked,
                            int64_t ticket_id) except -1 nogil:
        cdef int64_t now = self.now, key = now, order
        if klass == C_APPOINTMENT:
            # Policy.appointment_late(now, booked): a Python method, which this nogil loop
            # cannot call. Its one constant (Policy.appointment_grace_ms) comes in through
            # make_engine; tests/fastpath/test_sim_model.py holds both twins to the rule.
            if booked < 0 or now > booked + self.grace:
                klass = C_NORMAL
            else:
                key = booked
        order = self._take_number(service)
        if (service * 3 + klass == self.target_group and not self.idle_count[service]
                and (key > self.target_key or (key == self.target_key and order > self.target_order))):
            # A prediction, and this ticket queues behind the new one in its own
            # (service, class) group. Only a group's head is ever compared, so it
            # cannot change a decision before the new ticket is called, and the
            # replication ends then: it is numbered but never queued.
            self.serial += 1
            return 0
        self._catch_up(service * 3 + klass)  # a late appointment queues among the walk-ins
        self._add_ticket(service, klass, key, order, now, ticket_id)
        if self.idle_count[service]:
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

    cdef int _offer(self, Py_ssize_t service) except -1 nogil:
        cdef Py_ssize_t i, w
        for i in range(self.wo_start[service], self.wo_start[service + 1]):
            w = self.wo_list[i]
            if self.w_open[w] and self.w_current[w] == NO_TICKET:
                self._try_call(w)
                return 0
        return 0

    cdef inline int64_t _try_call(self, Py_ssize_t w) except -2 nogil:
        cdef int64_t now = self.now, slot, serial, start, end, waited = 0
        cdef Group *group
        cdef int32_t klass, service
        cdef bint first_call, absent
        cdef Ticket *t
        slot = core_select(self.core, w, now)
        if slot == NO_TICKET:
            self._refresh_idle(w)
            return NO_TICKET
        core_pop_head(self.core, slot)
        t = &self.tk[slot]
        klass = t.klass
        core_record_call(self.core, w, klass)
        service = t.service
        group = &self.core._groups[service * 3 + klass]
        if group.start == group.end:  # the group is empty: its later walk-ins come forward
            self._catch_up(service * 3 + klass)
            self._sync_label(service * 3 + klass)
            t = &self.tk[slot]  # the ticket array may have moved
        serial = t.serial
        first_call = not t.requeued
        if slot == self.target:
            self.target_called = now
        if first_call:
            start = t.arrival  # or the booked time of an early appointment (see the twin)
            if klass == C_APPOINTMENT and t.key > start:
                start = t.key
            waited = now - start if now > start else 0
            if serial >= self.warmup:
                self.wait_sum[service] += waited
                self.waited[service] += 1
            if self.fc_on and t.arrival < self.fc_count_until:
                self._fc_add(service, waited, 1, t.id if t.id < self.fc_n_waiting else -1)
        # This call's draws were made when the ticket was queued (see _draw_call).
        absent = t.duration == ABSENT
        end = now + (self.no_show_timeout if absent else t.duration)
        if self.record:
            # start is called unless listed: -1 while only absent calls were made,
            # then the time of the call that found the citizen
            if first_call:
                self.r_wait[serial] = waited
                if now != t.arrival + waited:  # an appointment's wait from its booked
                    self._except(serial, X_CALLED, now)  # time, or called before it
                if absent:
                    self._except(serial, X_START, -1)
            elif not absent:
                self._except(serial, X_START, now)
            self.r_window[serial] = <int16_t> w
            self.r_outcome[serial] = OUT_SERVING
        self.w_current[w] = slot
        self.w_absent[w] = absent
        self.w_since[w] = now
        self._schedule(end, EV_FREE, w)
        if self.w_idle[w]:  # busy now: only an idle window's counts change
            self._refresh_idle(w)
        return slot

    cdef int _release(self, int64_t slot, int64_t outcome) except -1 nogil:
        cdef int64_t serial
        if self.record:
            serial = self.tk[slot].serial
            self.r_outcome[serial] = <int8_t> outcome
            self.r_end[serial] = self._offset(serial, X_END, self.now, self.tk[slot].arrival)
        if self.free_n == self.free_cap:
            self.free_list = <int32_t *> _grow(self.free_list, &self.free_cap, self.free_n + 1,
                                               sizeof(int32_t))
        self.free_list[self.free_n] = <int32_t> slot
        self.free_n += 1
        return 0

    # -- the event loop ------------------------------------------------------------

    cdef int64_t _loop(self, int64_t stop_ms) except -2 nogil:
        cdef uint64_t key, other
        cdef Py_ssize_t slot, leaf
        cdef int kind
        cdef int64_t time
        cdef Tree *t
        while self.target_called < 0:
            key = self.trees[0].key[1]  # the earliest of the trees' next events
            other = self.trees[1].key[1]
            key = other if other < key else key
            other = self.trees[2].key[1]
            key = other if other < key else key
            if key == OD_INF:
                break
            time = self.base + <int64_t> (key >> OD_TSHIFT)
            if time > stop_ms:
                break
            slot = <Py_ssize_t> (key & SLOT_MASK)
            kind = <int> ((key >> SLOT_BITS) & 7)
            t = &self.trees[self.tree_of[kind]]
            leaf = t.n_leaves + slot
            # Empty the slot without replaying its matches: if the handler
            # schedules it again, that climb fixes the tree; if not, the climb
            # below does (climbs of other slots in between may read its stale
            # inner nodes, but every node they set above it is set again).
            t.key[leaf] = OD_INF
            if kind == EV_ARRIVAL:
                self.l_scheduled[slot] = 0
                if self.arrivals_left > 0:  # else max_arrivals is reached: the rest never come
                    self.now = time
                    self._on_arrival(slot)
            else:
                self.now = time
                if kind == EV_FREE:
                    self._on_free(slot)
                elif kind == EV_OPEN:
                    self._on_open(slot)
                elif kind == EV_CLOSE:
                    self._on_close(slot)
                else:
                    self._on_replay()
            if t.key[leaf] == OD_INF:
                _climb(t.key, leaf)
        return self.target_called

    cdef inline int _on_free(self, Py_ssize_t w) except -1 nogil:
        cdef int64_t slot = self.w_current[w]
        cdef Ticket *t
        self.busy_ms[w] += self.now - self.w_since[w]
        self.w_current[w] = NO_TICKET
        if slot >= 0:
            t = &self.tk[slot]
            if not self.w_absent[w]:
                self._release(slot, OUT_DONE)
            elif self.requeue_once and not t.requeued:
                t.requeued = 1
                t.key = self.now
                self._draw_call(t, 1)
                self._catch_up(t.service * 3 + t.klass)  # the walk-ins that came meanwhile go first
                t = &self.tk[slot]
                self.core.c_push(slot, t.service, t.klass, self.now, t.order)
                if self.record:
                    self.r_outcome[t.serial] = OUT_UNSERVED
                if self.w_open[w]:
                    self._try_call(w)
                self._refresh_idle(w)
                if self.core._tgroup[slot] >= 0 and self.idle_count[t.service]:
                    self._offer(t.service)
                return 0
            else:
                self._release(slot, OUT_NO_SHOW)
        if self.w_open[w]:
            self._try_call(w)
        else:
            self._refresh_idle(w)
        return 0

    cdef int _on_open(self, Py_ssize_t w) except -1 nogil:
        self.w_open[w] = 1
        if self.sh_close[self.w_shift[w]] <= self.horizon:
            self._schedule(self.sh_close[self.w_shift[w]], EV_CLOSE, w)
        if self.w_current[w] == NO_TICKET:
            self._try_call(w)
        self._refresh_idle(w)
        return 0

    cdef int _on_close(self, Py_ssize_t w) except -1 nogil:
        self.w_open[w] = 0
        self._refresh_idle(w)
        if self.sh_start[w + 1] > self.sh_start[w]:
            self.w_shift[w] += 1
            self._schedule_next_open(w, self.now)
        return 0

    cdef inline int _on_arrival(self, Py_ssize_t label) except -1 nogil:
        cdef int64_t booked = self.l_booked[label], ticket_id = self.l_id[label]
        self.arrivals_left -= 1
        self._label_next(label)
        self._arrive(label // 3, label % 3, booked, ticket_id)
        self._sync_label(label)
        return 0

    cdef int _on_replay(self) except -1 nogil:
        cdef Py_ssize_t i = self.rp_next
        self.rp_next = i + 1
        self._arrive(self.rp_service[i], self.rp_klass[i], self.rp_booked[i], i)
        if i + 1 < self.rp_n:
            self._schedule(self.rp_time[i + 1], EV_REPLAY, 0)
        return 0

    cdef int _except(self, int64_t serial, int64_t kind, int64_t value) except -1 nogil:
        """Record that ticket ``serial``'s column ``kind`` (X_) is ``value``, not what
        the stored columns give; a later exception for the same ticket and kind wins."""
        if self.x_n + 3 > self.x_cap:
            self.x_rec = <int64_t *> _grow(self.x_rec, &self.x_cap, self.x_n + 3, sizeof(int64_t))
        self.x_rec[self.x_n] = serial
        self.x_rec[self.x_n + 1] = kind
        self.x_rec[self.x_n + 2] = value
        self.x_n += 3
        return 0

    cdef inline int32_t _offset(self, int64_t serial, int64_t kind, int64_t time,
                                int64_t arrival) except -2 nogil:
        """``time`` as an offset from the ticket's ``arrival``, or -1 and an exception
        when it does not fit 31 bits (a ticket in the hall for 24.8 days)."""
        cdef int64_t offset = time - arrival
        if 0 <= offset <= INT32_MAX:
            return <int32_t> offset
        self._except(serial, kind, time)
        return -1

    cdef int _columns(self, Py_ssize_t capacity) except -1:
        """Make room for ``capacity`` tickets' records (new arrays if there are none)."""
        cdef Py_ssize_t c
        cdef carray.array column
        cdef void *buffers[N_STORED]
        if self.col_arrays is None:
            self.col_arrays = [carray.clone(array(code), capacity, False)
                               for code in STORED_TYPES]
        for c in range(N_STORED):
            column = self.col_arrays[c]
            if len(column) != capacity:
                carray.resize(column, capacity)
            buffers[c] = column.data.as_voidptr
        self.r_arrival = <int64_t *> buffers[0]
        self.r_service = <int16_t *> buffers[1]
        self.r_klass = <int8_t *> buffers[2]
        self.r_outcome = <int8_t *> buffers[3]
        self.r_window = <int16_t *> buffers[4]
        self.r_wait = <int64_t *> buffers[5]
        self.r_end = <int32_t *> buffers[6]
        self.col_cap = capacity
        return 0

    cdef object _result(self):
        cdef carray.array exceptions
        columns = None
        if self.record:
            self._columns(self.serial)
            stored = dict(zip(STORED_COLUMNS, self.col_arrays))
            exceptions = carray.clone(array("q"), self.x_n, False)
            if self.x_n:
                memcpy(exceptions.data.as_voidptr, self.x_rec, self.x_n * sizeof(int64_t))
            columns = Records(stored, _ColumnDeriver(stored["arrival"], stored["wait"],
                                                     stored.pop("end"), exceptions))
            self.col_arrays = None  # the caller's now; the next run gets new ones
            self.col_cap = 0
            self.x_n = 0
        return {
            "n_tickets": self.serial,
            "end_ms": self.now,
            "wait_sum": [self.wait_sum[s] for s in range(self.n_services)],
            "waited": [self.waited[s] for s in range(self.n_services)],
            "busy_ms": [self.busy_ms[w] for w in range(self.n_windows)],
            "columns": columns,
        }


cdef class _ColumnDeriver:
    """Builds a run's key, called, start and end columns from what the engine stored
    (see STORED_COLUMNS): one pass over the tickets, then the exceptions."""

    cdef carray.array arrival, wait, end, exceptions

    def __init__(self, carray.array arrival, carray.array wait, carray.array end,
                 carray.array exceptions):
        self.arrival, self.wait, self.end = arrival, wait, end
        self.exceptions = exceptions

    def __call__(self, str name):
        cdef Py_ssize_t i, n = len(self.arrival)
        cdef carray.array out = carray.clone(array("q"), n, False)
        cdef int64_t *o = <int64_t *> out.data.as_voidptr
        cdef const int64_t *a = <int64_t *> self.arrival.data.as_voidptr
        cdef const int64_t *wait = <int64_t *> self.wait.data.as_voidptr
        cdef const int32_t *end = <int32_t *> self.end.data.as_voidptr
        if name == "key":
            if n:
                memcpy(o, a, n * sizeof(int64_t))
            self._apply(o, X_KEY)
        elif name in ("called", "start"):
            with nogil:
                for i in range(n):
                    o[i] = -1 if wait[i] < 0 else a[i] + wait[i]
            self._apply(o, X_CALLED)
            if name == "start":
                self._apply(o, X_START)
        elif name == "end":
            with nogil:
                for i in range(n):
                    o[i] = -1 if end[i] < 0 else a[i] + end[i]
            self._apply(o, X_END)
        else:
            raise KeyError(name)
        return out

    cdef int _apply(self, int64_t *o, int64_t kind) except -1:
        cdef Py_ssize_t i, n_x = len(self.exceptions)
        cdef const int64_t *x = <int64_t *> self.exceptions.data.as_voidptr
        for i in range(0, n_x, 3):
            if x[i + 1] == kind:
                o[x[i]] = x[i + 2]
        return 0
