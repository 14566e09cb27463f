# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Cython twin of :mod:`fastpath._core_py`: same API, same answers, C arrays.

Read the pure-Python module first: it states the policy. Here each
(service, class) group is a sorted C array of ticket ids with a moving start,
so popping the head (the common case) is O(1) and a decision only touches the
heads of the window's groups.
"""

from cpython.mem cimport PyMem_RawFree, PyMem_RawMalloc, PyMem_RawRealloc
from libc.stdint cimport int32_t, int64_t, intptr_t, uint64_t
from libc.string cimport memcpy, memmove, memset

from fastpath.types import N_CLASSES, NORMAL, PRIORITY

cdef enum:
    NCLS = 3
    C_NORMAL = 0
    C_PRIORITY = 1

NO_TICKET = -1

assert N_CLASSES == NCLS and NORMAL == C_NORMAL and PRIORITY == C_PRIORITY


cdef int _no_memory() except -1 nogil:
    with gil:
        raise MemoryError()


cdef void *_realloc(void *ptr, Py_ssize_t n, size_t item) except NULL:
    cdef void *grown = PyMem_RawRealloc(ptr, max(1, n) * item)
    if grown == NULL:
        raise MemoryError()
    return grown


cdef inline bint _before(int64_t k1, int64_t o1, int64_t t1,
                         int64_t k2, int64_t o2, int64_t t2) noexcept nogil:
    """(k1, o1, t1) < (k2, o2, t2), the order of the pure core's tuples."""
    if k1 != k2:
        return k1 < k2
    if o1 != o2:
        return o1 < o2
    return t1 < t2


cdef class QueueCore:

    def __cinit__(self, sla_ms, class_weight_pct):
        cdef Py_ssize_t i
        if len(class_weight_pct) != NCLS:
            raise ValueError(f"class_weight_pct needs {NCLS} values")
        self.n_services = len(sla_ms)
        self._sla = <int64_t *> PyMem_RawMalloc(max(1, self.n_services) * sizeof(int64_t))
        self._groups = <Group *> PyMem_RawMalloc(max(1, self.n_services * NCLS) * sizeof(Group))
        if self._sla == NULL or self._groups == NULL:
            raise MemoryError()
        memset(self._groups, 0, max(1, self.n_services * NCLS) * sizeof(Group))
        for i in range(self.n_services):
            self._sla[i] = sla_ms[i]
        for i in range(NCLS):
            self._class_factor[i] = 100 + class_weight_pct[i]
        self._windows = NULL
        self._n_windows = self._win_cap = 0
        self._tkey = self._torder = NULL
        self._tgroup = NULL
        self._tcap = self._count = 0

    def __dealloc__(self):
        cdef Py_ssize_t i
        if self._groups != NULL:
            for i in range(self.n_services * NCLS):
                PyMem_RawFree(self._groups[i].ids)
            PyMem_RawFree(self._groups)
        for i in range(self._n_windows):
            PyMem_RawFree(self._windows[i].services)
            PyMem_RawFree(self._windows[i].weights)
            PyMem_RawFree(self._windows[i].cand)
            PyMem_RawFree(self._windows[i].cand_factor)
            PyMem_RawFree(self._windows[i].group_factor)
        PyMem_RawFree(self._windows)
        PyMem_RawFree(self._sla)
        PyMem_RawFree(self._tkey)
        PyMem_RawFree(self._torder)
        PyMem_RawFree(self._tgroup)
        PyMem_RawFree(self._snap_ids)
        PyMem_RawFree(self._snap_len)
        PyMem_RawFree(self._snap_key)
        PyMem_RawFree(self._snap_order)
        PyMem_RawFree(self._snap_group)
        PyMem_RawFree(self._snap_streak)

    # -- windows -------------------------------------------------------------

    cdef int _set_services(self, Window *window, object services) except -1:
        cdef Py_ssize_t n = len(services), i, klass, gi, n_groups = self.n_services * NCLS
        cdef int64_t *group_factor = NULL
        cdef uint64_t cand_mask = 0
        for service, _weight in services:
            if not 0 <= service < self.n_services:
                raise IndexError(f"service index {service} out of range")
        cdef int32_t *svc = <int32_t *> PyMem_RawMalloc(max(1, n) * sizeof(int32_t))
        cdef int64_t *wts = <int64_t *> PyMem_RawMalloc(max(1, n) * sizeof(int64_t))
        if svc == NULL or wts == NULL:
            PyMem_RawFree(svc)
            PyMem_RawFree(wts)
            raise MemoryError()
        for i in range(n):
            svc[i] = services[i][0]
            wts[i] = services[i][1]
        cdef Group **cand = <Group **> PyMem_RawMalloc(max(1, n * NCLS) * sizeof(Group *))
        cdef int64_t *factor = <int64_t *> PyMem_RawMalloc(max(1, n * NCLS) * sizeof(int64_t))
        if cand == NULL or factor == NULL:
            PyMem_RawFree(svc)
            PyMem_RawFree(wts)
            PyMem_RawFree(cand)
            PyMem_RawFree(factor)
            raise MemoryError()
        for i in range(n):
            for klass in range(NCLS):
                cand[i * NCLS + klass] = &self._groups[svc[i] * NCLS + klass]
                factor[i * NCLS + klass] = wts[i] * self._class_factor[klass]
        if n_groups <= CORE_MASK_GROUPS and all(svc[i - 1] < svc[i] for i in range(1, n)):
            group_factor = <int64_t *> PyMem_RawMalloc(n_groups * sizeof(int64_t))
            if group_factor == NULL:
                PyMem_RawFree(svc); PyMem_RawFree(wts); PyMem_RawFree(cand); PyMem_RawFree(factor)
                raise MemoryError()
            memset(group_factor, 0, n_groups * sizeof(int64_t))
            for i in range(n * NCLS):
                gi = cand[i] - self._groups
                group_factor[gi] = factor[i]
                cand_mask |= (<uint64_t> 1) << gi
        PyMem_RawFree(window.services)
        PyMem_RawFree(window.weights)
        PyMem_RawFree(window.cand)
        PyMem_RawFree(window.cand_factor)
        PyMem_RawFree(window.group_factor)
        window.group_factor = group_factor
        window.cand_mask = cand_mask
        window.services = svc
        window.weights = wts
        window.cand = cand
        window.cand_factor = factor
        window.n = n
        window.has_sla = any(self._sla[svc[i]] > 0 for i in range(n))
        return 0

    def add_window(self, services, bint priority_window, int64_t ratio_cap):
        cdef Window *grown
        cdef Window *window
        if self._n_windows == self._win_cap:
            new_cap = max(8, self._win_cap * 2)
            grown = <Window *> PyMem_RawRealloc(self._windows, new_cap * sizeof(Window))
            if grown == NULL:
                raise MemoryError()
            self._windows = grown
            self._win_cap = new_cap
        window = &self._windows[self._n_windows]
        memset(window, 0, sizeof(Window))
        self._set_services(window, services)
        window.priority_window = priority_window
        window.ratio_cap = ratio_cap
        window.priority_streak = 0
        self._n_windows += 1
        return self._n_windows - 1

    cdef int _check_window(self, Py_ssize_t widx) except -1:
        if not 0 <= widx < self._n_windows:
            raise IndexError(f"window index {widx} out of range")
        return 0

    @property
    def n_windows(self):
        return self._n_windows

    cdef void c_record_call(self, Py_ssize_t widx, int klass) noexcept nogil:
        core_record_call(self, widx, klass)

    def record_call(self, Py_ssize_t widx, int klass):
        self._check_window(widx)
        self.c_record_call(widx, klass)

    def priority_streak(self, Py_ssize_t widx):
        self._check_window(widx)
        return self._windows[widx].priority_streak

    # -- tickets -------------------------------------------------------------

    cdef int _reserve_tickets(self, int64_t tid) except -1 nogil:
        cdef Py_ssize_t new_cap, i
        cdef int64_t *keys
        cdef int64_t *orders
        cdef int32_t *groups
        if tid < self._tcap:
            return 0
        new_cap = max(64, self._tcap * 2)
        while new_cap <= tid:
            new_cap *= 2
        keys = <int64_t *> PyMem_RawRealloc(self._tkey, new_cap * sizeof(int64_t))
        if keys == NULL:
            return _no_memory()
        self._tkey = keys
        orders = <int64_t *> PyMem_RawRealloc(self._torder, new_cap * sizeof(int64_t))
        if orders == NULL:
            return _no_memory()
        self._torder = orders
        groups = <int32_t *> PyMem_RawRealloc(self._tgroup, new_cap * sizeof(int32_t))
        if groups == NULL:
            return _no_memory()
        self._tgroup = groups
        for i in range(self._tcap, new_cap):
            self._tgroup[i] = -1
        self._tcap = new_cap
        return 0

    cdef Py_ssize_t _lower_bound(self, Group *g, int64_t key, int64_t order,
                                        int64_t tid) noexcept nogil:
        cdef Py_ssize_t lo = g.start, hi = g.end, mid
        cdef int32_t other
        while lo < hi:
            mid = (lo + hi) >> 1
            other = g.ids[mid]
            if _before(self._tkey[other], self._torder[other], other, key, order, tid):
                lo = mid + 1
            else:
                hi = mid
        return lo

    cdef int c_push(self, int64_t tid, Py_ssize_t service, int klass, int64_t key_ms,
                    int64_t order) except -1 nogil:
        cdef Py_ssize_t gi, pos, new_cap, live
        cdef Group *g
        cdef int32_t *grown
        cdef int32_t last
        if tid < 0 or tid > 0x7FFFFFFF:
            with gil:
                raise ValueError(f"ticket id {tid} out of range")
        if tid < self._tcap and self._tgroup[tid] >= 0:
            with gil:
                raise ValueError(f"ticket {tid} is already queued")
        if not (0 <= service < self.n_services and 0 <= klass < NCLS):
            with gil:
                raise IndexError("service or class out of range")
        if tid >= self._tcap:
            self._reserve_tickets(tid)
        gi = service * NCLS + klass
        g = &self._groups[gi]
        self._tkey[tid] = key_ms
        self._torder[tid] = order
        if g.start == g.end:                         # empty group (start = end = 0)
            pos = g.end
        else:
            last = g.ids[g.end - 1]
            if _before(self._tkey[last], self._torder[last], last, key_ms, order, tid):
                pos = g.end                          # the common case: a new last ticket
            else:
                pos = self._lower_bound(g, key_ms, order, tid)
        if pos == g.start:                          # a new head
            g.head_key = key_ms
            g.head_order = order
        if pos == g.start and g.start > 0:          # new head: grow to the left
            g.start -= 1
            g.ids[g.start] = <int32_t> tid
        else:
            if g.end == g.cap:
                live = g.end - g.start
                if g.start > 0:                      # reclaim the popped-head space
                    memmove(g.ids, g.ids + g.start, live * sizeof(int32_t))
                    pos -= g.start
                    g.start = 0
                    g.end = live
                else:
                    new_cap = max(16, g.cap * 2)
                    grown = <int32_t *> PyMem_RawRealloc(g.ids, new_cap * sizeof(int32_t))
                    if grown == NULL:
                        return _no_memory()
                    g.ids = grown
                    g.cap = new_cap
            if pos < g.end:
                memmove(g.ids + pos + 1, g.ids + pos, (g.end - pos) * sizeof(int32_t))
            g.ids[pos] = <int32_t> tid
            g.end += 1
        self._tgroup[tid] = <int32_t> gi
        self._count += 1
        core_mark(self, gi, 1)
        return 0

    def push(self, int64_t tid, Py_ssize_t service, int klass, int64_t key_ms, int64_t order):
        self.c_push(tid, service, klass, key_ms, order)

    cdef inline void _set_head(self, Group *g) noexcept nogil:
        cdef int32_t head = g.ids[g.start]
        g.head_key = self._tkey[head]
        g.head_order = self._torder[head]

    cdef int c_remove(self, int64_t tid) except -1 nogil:
        cdef Py_ssize_t pos
        cdef Group *g
        if tid < 0 or tid >= self._tcap or self._tgroup[tid] < 0:
            with gil:
                raise KeyError(tid)
        g = &self._groups[self._tgroup[tid]]
        if g.ids[g.start] == tid:                   # the common case: the head was called
            pos = g.start
        else:
            pos = self._lower_bound(g, self._tkey[tid], self._torder[tid], tid)
        if pos == g.start:
            g.start += 1
            if g.start == g.end:
                g.start = g.end = 0
                core_mark(self, self._tgroup[tid], 0)
            else:
                self._set_head(g)
        else:
            memmove(g.ids + pos, g.ids + pos + 1, (g.end - pos - 1) * sizeof(int32_t))
            g.end -= 1
        self._tgroup[tid] = -1
        self._count -= 1
        return 0

    def remove(self, int64_t tid):
        self.c_remove(tid)

    def __contains__(self, tid):
        return 0 <= tid < self._tcap and self._tgroup[tid] >= 0

    def __len__(self):
        return self._count

    def waiting(self, Py_ssize_t service):
        if not 0 <= service < self.n_services:
            raise IndexError(f"service index {service} out of range")
        cdef Py_ssize_t total = 0, klass
        cdef Group *g
        for klass in range(NCLS):
            g = &self._groups[service * NCLS + klass]
            total += g.end - g.start
        return total

    def queued(self, Py_ssize_t service):
        if not 0 <= service < self.n_services:
            raise IndexError(f"service index {service} out of range")
        cdef Group *g
        cdef Py_ssize_t klass, i
        entries = []
        for klass in range(NCLS):
            g = &self._groups[service * NCLS + klass]
            for i in range(g.start, g.end):
                t = g.ids[i]
                entries.append((self._tkey[t], self._torder[t], t))
        entries.sort()
        return [t for _k, _o, t in entries]

    # -- one saved queue (the simulator restores it for each prediction replication) --

    cdef int c_save(self, Py_ssize_t n_tids) except -1:
        """Save the queued tickets, ticket ids ``[0, n_tids)`` and the windows' streaks."""
        cdef Py_ssize_t gi, n_groups = self.n_services * NCLS, total = 0, live
        cdef Group *g
        if not 0 <= n_tids <= self._tcap:
            raise ValueError("n_tids out of range")
        for gi in range(n_groups):
            total += self._groups[gi].end - self._groups[gi].start
        self._snap_ids = <int32_t *> _realloc(self._snap_ids, total, sizeof(int32_t))
        self._snap_len = <Py_ssize_t *> _realloc(self._snap_len, n_groups, sizeof(Py_ssize_t))
        self._snap_key = <int64_t *> _realloc(self._snap_key, n_tids, sizeof(int64_t))
        self._snap_order = <int64_t *> _realloc(self._snap_order, n_tids, sizeof(int64_t))
        self._snap_group = <int32_t *> _realloc(self._snap_group, n_tids, sizeof(int32_t))
        self._snap_streak = <int64_t *> _realloc(self._snap_streak, self._n_windows,
                                                 sizeof(int64_t))
        total = 0
        for gi in range(n_groups):
            g = &self._groups[gi]
            live = g.end - g.start
            if live:
                memcpy(self._snap_ids + total, g.ids + g.start, live * sizeof(int32_t))
            self._snap_len[gi] = live
            total += live
        if n_tids:
            memcpy(self._snap_key, self._tkey, n_tids * sizeof(int64_t))
            memcpy(self._snap_order, self._torder, n_tids * sizeof(int64_t))
            memcpy(self._snap_group, self._tgroup, n_tids * sizeof(int32_t))
        for gi in range(self._n_windows):
            self._snap_streak[gi] = self._windows[gi].priority_streak
        self._snap_n = n_tids
        self._snap_count = self._count
        self._snap_windows = self._n_windows
        return 0

    cdef void c_restore(self) noexcept nogil:
        """Back to the state of the last :meth:`c_save` (tickets above it are dropped)."""
        cdef Py_ssize_t gi, n_groups = self.n_services * NCLS, total = 0, live
        cdef Group *g
        if self._snap_len == NULL:
            return
        for gi in range(n_groups):
            g = &self._groups[gi]
            live = self._snap_len[gi]
            if live:  # a group never shrinks, so its array still holds the saved tickets
                memcpy(g.ids, self._snap_ids + total, live * sizeof(int32_t))
            g.start = 0
            g.end = live
            total += live
        if self._snap_n:
            memcpy(self._tkey, self._snap_key, self._snap_n * sizeof(int64_t))
            memcpy(self._torder, self._snap_order, self._snap_n * sizeof(int64_t))
            memcpy(self._tgroup, self._snap_group, self._snap_n * sizeof(int32_t))
        for gi in range(n_groups):
            g = &self._groups[gi]
            if g.end > g.start:
                self._set_head(g)
            core_mark(self, gi, g.end > g.start)
        if self._tcap > self._snap_n:
            memset(self._tgroup + self._snap_n, 0xFF, (self._tcap - self._snap_n) * sizeof(int32_t))
        for gi in range(self._snap_windows):
            self._windows[gi].priority_streak = self._snap_streak[gi]
        self._count = self._snap_count

    # -- the policy ----------------------------------------------------------

    cdef int64_t c_select(self, Py_ssize_t widx, int64_t now_ms) noexcept nogil:
        # The policy itself is core_select in _core_c.pxd (inline, shared with _sim_c).
        return core_select(self, widx, now_ms)

    cdef int64_t _overdue(self, Window *w, int64_t now_ms) noexcept nogil:
        return core_overdue(self, w, now_ms)

    cdef int64_t _best(self, Window *w, int64_t now_ms, int only_class) noexcept nogil:
        return core_best(self, w, now_ms, only_class)

    def select(self, Py_ssize_t widx, int64_t now_ms):
        self._check_window(widx)
        return self.c_select(widx, now_ms)

    def select_many(self, const int64_t[:] windows, const int64_t[:] nows, int64_t[:] out):
        cdef Py_ssize_t i, n = windows.shape[0]
        if not (n == nows.shape[0] == out.shape[0]):
            raise ValueError("windows, nows and out must have the same length")
        for i in range(n):
            self._check_window(windows[i])
        with nogil:
            for i in range(n):
                out[i] = self.c_select(windows[i], nows[i])
