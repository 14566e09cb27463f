# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Cython twin of :mod:`fastpath._core_py`: same API, same answers, C arrays.

Read the pure-Python module first: it states the policy. Here each
(service, class) group is a sorted C array of ticket ids with a moving start,
so popping the head (the common case) is O(1) and a decision only touches the
heads of the window's groups.
"""

from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from libc.stdint cimport int32_t, int64_t
from libc.string cimport memmove, memset

from fastpath.types import N_CLASSES, NORMAL, PRIORITY

cdef enum:
    NCLS = 3
    C_NORMAL = 0
    C_PRIORITY = 1

NO_TICKET = -1

assert N_CLASSES == NCLS and NORMAL == C_NORMAL and PRIORITY == C_PRIORITY


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
        self._sla = <int64_t *> PyMem_Malloc(max(1, self.n_services) * sizeof(int64_t))
        self._groups = <Group *> PyMem_Malloc(max(1, self.n_services * NCLS) * sizeof(Group))
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
                PyMem_Free(self._groups[i].ids)
            PyMem_Free(self._groups)
        for i in range(self._n_windows):
            PyMem_Free(self._windows[i].services)
            PyMem_Free(self._windows[i].weights)
        PyMem_Free(self._windows)
        PyMem_Free(self._sla)
        PyMem_Free(self._tkey)
        PyMem_Free(self._torder)
        PyMem_Free(self._tgroup)

    # -- windows -------------------------------------------------------------

    cdef int _set_services(self, Window *window, object services) except -1:
        cdef Py_ssize_t n = len(services), i
        for service, _weight in services:
            if not 0 <= service < self.n_services:
                raise IndexError(f"service index {service} out of range")
        cdef int32_t *svc = <int32_t *> PyMem_Malloc(max(1, n) * sizeof(int32_t))
        cdef int64_t *wts = <int64_t *> PyMem_Malloc(max(1, n) * sizeof(int64_t))
        if svc == NULL or wts == NULL:
            PyMem_Free(svc)
            PyMem_Free(wts)
            raise MemoryError()
        for i in range(n):
            svc[i] = services[i][0]
            wts[i] = services[i][1]
        PyMem_Free(window.services)
        PyMem_Free(window.weights)
        window.services = svc
        window.weights = wts
        window.n = n
        return 0

    def add_window(self, services, bint priority_window, int64_t ratio_cap):
        cdef Window *grown
        cdef Window *window
        if self._n_windows == self._win_cap:
            new_cap = max(8, self._win_cap * 2)
            grown = <Window *> PyMem_Realloc(self._windows, new_cap * sizeof(Window))
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

    def set_window(self, Py_ssize_t widx, services, bint priority_window, int64_t ratio_cap):
        self._check_window(widx)
        cdef Window *window = &self._windows[widx]
        self._set_services(window, services)
        window.priority_window = priority_window
        window.ratio_cap = ratio_cap

    cdef int _check_window(self, Py_ssize_t widx) except -1:
        if not 0 <= widx < self._n_windows:
            raise IndexError(f"window index {widx} out of range")
        return 0

    @property
    def n_windows(self):
        return self._n_windows

    cdef void c_record_call(self, Py_ssize_t widx, int klass) noexcept nogil:
        if klass == C_PRIORITY:
            self._windows[widx].priority_streak += 1
        elif klass == C_NORMAL:
            self._windows[widx].priority_streak = 0

    def record_call(self, Py_ssize_t widx, int klass):
        self._check_window(widx)
        self.c_record_call(widx, klass)

    def priority_streak(self, Py_ssize_t widx):
        self._check_window(widx)
        return self._windows[widx].priority_streak

    # -- tickets -------------------------------------------------------------

    cdef int _reserve_tickets(self, int64_t tid) except -1:
        cdef Py_ssize_t new_cap, i
        if tid < self._tcap:
            return 0
        new_cap = max(64, self._tcap * 2)
        while new_cap <= tid:
            new_cap *= 2
        cdef int64_t *keys = <int64_t *> PyMem_Realloc(self._tkey, new_cap * sizeof(int64_t))
        if keys == NULL:
            raise MemoryError()
        self._tkey = keys
        cdef int64_t *orders = <int64_t *> PyMem_Realloc(self._torder, new_cap * sizeof(int64_t))
        if orders == NULL:
            raise MemoryError()
        self._torder = orders
        cdef int32_t *groups = <int32_t *> PyMem_Realloc(self._tgroup, new_cap * sizeof(int32_t))
        if groups == NULL:
            raise MemoryError()
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
                    int64_t order) except -1:
        cdef Py_ssize_t gi, pos, new_cap, live
        cdef Group *g
        cdef int32_t *grown
        if tid < 0 or tid > 0x7FFFFFFF:
            raise ValueError(f"ticket id {tid} out of range")
        if tid < self._tcap and self._tgroup[tid] >= 0:
            raise ValueError(f"ticket {tid} is already queued")
        if not (0 <= service < self.n_services and 0 <= klass < NCLS):
            raise IndexError("service or class out of range")
        self._reserve_tickets(tid)
        gi = service * NCLS + klass
        g = &self._groups[gi]
        self._tkey[tid] = key_ms
        self._torder[tid] = order
        pos = self._lower_bound(g, key_ms, order, tid)
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
                    grown = <int32_t *> PyMem_Realloc(g.ids, new_cap * sizeof(int32_t))
                    if grown == NULL:
                        raise MemoryError()
                    g.ids = grown
                    g.cap = new_cap
            if pos < g.end:
                memmove(g.ids + pos + 1, g.ids + pos, (g.end - pos) * sizeof(int32_t))
            g.ids[pos] = <int32_t> tid
            g.end += 1
        self._tgroup[tid] = <int32_t> gi
        self._count += 1
        return 0

    def push(self, int64_t tid, Py_ssize_t service, int klass, int64_t key_ms, int64_t order):
        self.c_push(tid, service, klass, key_ms, order)

    cdef int c_remove(self, int64_t tid) except -1:
        cdef Py_ssize_t pos
        cdef Group *g
        if tid < 0 or tid >= self._tcap or self._tgroup[tid] < 0:
            raise KeyError(tid)
        g = &self._groups[self._tgroup[tid]]
        pos = self._lower_bound(g, self._tkey[tid], self._torder[tid], tid)
        if pos == g.start:
            g.start += 1
            if g.start == g.end:
                g.start = g.end = 0
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

    # -- the policy ----------------------------------------------------------

    cdef int64_t c_select(self, Py_ssize_t widx, int64_t now_ms) noexcept nogil:
        cdef Window *w = &self._windows[widx]
        cdef Py_ssize_t i, service, klass
        cdef Group *g
        cdef int32_t tid
        cdef int64_t key, order, wait, score, sla, weight, deadline
        cdef int64_t best = -1, best_normal = -1, best_priority = -1, overdue = -1
        cdef int64_t best_score = 0, best_normal_score = 0, best_priority_score = 0
        cdef int64_t best_order = 0, best_normal_order = 0, best_priority_order = 0
        cdef int64_t overdue_deadline = 0, overdue_order = 0

        for i in range(w.n):
            service = w.services[i]
            weight = w.weights[i]
            sla = self._sla[service]
            for klass in range(NCLS):
                g = &self._groups[service * NCLS + klass]
                if g.start == g.end:
                    continue
                tid = g.ids[g.start]
                key = self._tkey[tid]
                order = self._torder[tid]
                wait = now_ms - key
                if sla > 0 and wait > sla:
                    deadline = key + sla
                    if overdue < 0 or deadline < overdue_deadline or (
                        deadline == overdue_deadline and order < overdue_order
                    ):
                        overdue = tid
                        overdue_deadline = deadline
                        overdue_order = order
                score = weight * self._class_factor[klass] * wait
                if best < 0 or score > best_score or (score == best_score and order < best_order):
                    best = tid
                    best_score = score
                    best_order = order
                if klass == C_NORMAL:
                    if best_normal < 0 or score > best_normal_score or (
                        score == best_normal_score and order < best_normal_order
                    ):
                        best_normal = tid
                        best_normal_score = score
                        best_normal_order = order
                elif klass == C_PRIORITY:
                    if best_priority < 0 or score > best_priority_score or (
                        score == best_priority_score and order < best_priority_order
                    ):
                        best_priority = tid
                        best_priority_score = score
                        best_priority_order = order

        if overdue >= 0:
            return overdue
        if w.ratio_cap > 0 and w.priority_streak >= w.ratio_cap and best_normal >= 0:
            return best_normal
        if w.priority_window and best_priority >= 0:
            return best_priority
        return best

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
