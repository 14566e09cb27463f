# Declarations of the Cython queue core, so fastpath._sim_c can call it at C speed.
cimport cython
from libc.stdint cimport int32_t, int64_t


cdef struct Group:
    int32_t *ids          # ticket ids sorted by (key, order, tid); live part is [start, end)
    Py_ssize_t start
    Py_ssize_t end
    Py_ssize_t cap
    int64_t head_key      # key and order of ids[start] when the group is not empty
    int64_t head_order


cdef struct Window:
    int32_t *services
    int64_t *weights
    Py_ssize_t n
    bint priority_window
    int64_t ratio_cap
    int64_t priority_streak
    bint has_sla          # one of its services has an SLA limit
    Group **cand          # its (service, class) groups, NCLS per service in order,
    int64_t *cand_factor  # and each one's weight x (100 + class weight)


@cython.final
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
    # the state saved by c_save
    cdef int32_t *_snap_ids
    cdef Py_ssize_t *_snap_len
    cdef int64_t *_snap_key
    cdef int64_t *_snap_order
    cdef int32_t *_snap_group
    cdef int64_t *_snap_streak
    cdef Py_ssize_t _snap_n
    cdef Py_ssize_t _snap_count
    cdef Py_ssize_t _snap_windows

    cdef int64_t c_select(self, Py_ssize_t widx, int64_t now_ms) noexcept nogil
    cdef int64_t _overdue(self, Window *w, int64_t now_ms) noexcept nogil
    cdef int64_t _best(self, Window *w, int64_t now_ms, int only_class) noexcept nogil
    cdef void _set_head(self, Group *g) noexcept nogil
    cdef int c_push(self, int64_t tid, Py_ssize_t service, int klass, int64_t key_ms,
                    int64_t order) except -1 nogil
    cdef int c_remove(self, int64_t tid) except -1 nogil
    cdef void c_record_call(self, Py_ssize_t widx, int klass) noexcept nogil
    cdef int c_save(self, Py_ssize_t n_tids) except -1
    cdef void c_restore(self) noexcept nogil
    cdef int _set_services(self, Window *window, object services) except -1
    cdef int _check_window(self, Py_ssize_t widx) except -1
    cdef int _reserve_tickets(self, int64_t tid) except -1 nogil
    cdef Py_ssize_t _lower_bound(self, Group *g, int64_t key, int64_t order,
                                 int64_t tid) noexcept nogil
