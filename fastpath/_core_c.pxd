# Declarations of the Cython queue core, so fastpath._sim_c can call it at C speed.
from libc.stdint cimport int32_t, int64_t


cdef struct Group:
    int32_t *ids          # ticket ids sorted by (key, order, tid); live part is [start, end)
    Py_ssize_t start
    Py_ssize_t end
    Py_ssize_t cap


cdef struct Window:
    int32_t *services
    int64_t *weights
    Py_ssize_t n
    bint priority_window
    int64_t ratio_cap
    int64_t priority_streak


cdef class QueueCore:
    cdef readonly Py_ssize_t n_services
    cdef int64_t *_sla
    cdef int64_t _class_factor[3]
    cdef Group *_groups
    cdef Window *_windows
    cdef Py_ssize_t _n_windows
    cdef Py_ssize_t _win_cap
    cdef int64_t *_tkey
    cdef int64_t *_torder
    cdef int32_t *_tgroup     # -1 when the ticket is not queued
    cdef Py_ssize_t _tcap
    cdef Py_ssize_t _count

    cdef int64_t c_select(self, Py_ssize_t widx, int64_t now_ms) noexcept nogil
    cdef int c_push(self, int64_t tid, Py_ssize_t service, int klass, int64_t key_ms,
                    int64_t order) except -1
    cdef int c_remove(self, int64_t tid) except -1
    cdef void c_record_call(self, Py_ssize_t widx, int klass) noexcept nogil
    cdef int _set_services(self, Window *window, object services) except -1
    cdef int _check_window(self, Py_ssize_t widx) except -1
    cdef int _reserve_tickets(self, int64_t tid) except -1
    cdef Py_ssize_t _lower_bound(self, Group *g, int64_t key, int64_t order,
                                 int64_t tid) noexcept nogil
