# Declarations of the Cython queue core, so fastpath._sim_c can call it at C speed.
cimport cython
from libc.stdint cimport int32_t, int64_t, intptr_t, uint64_t


cdef extern from *:
    int _ctz64 "__builtin_ctzll"(unsigned long long x) noexcept nogil


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
    # When its services are in ascending order and the hall has at most 64
    # groups, the same candidates as a bit set over group indices (in the same
    # order), with the factors by group index; else cand_mask is 0.
    uint64_t cand_mask
    int64_t *group_factor


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
    cdef uint64_t _nonempty   # bit g: group g has tickets (groups 0-63; see Window.cand_mask)
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


# -- the hot paths, inline so that fastpath._sim_c compiles them into its own loop --
# (QueueCore's methods call the same functions: one copy of the policy.)

cdef enum:
    CORE_NCLS = 3
    CORE_NORMAL = 0
    CORE_PRIORITY = 1
    CORE_MASK_GROUPS = 64


cdef inline void core_mark(QueueCore q, Py_ssize_t gi, bint nonempty) noexcept nogil:
    """Keep bit ``gi`` of ``q._nonempty`` (groups past 64 have no bit)."""
    if gi < CORE_MASK_GROUPS:
        if nonempty:
            q._nonempty |= (<uint64_t> 1) << gi
        else:
            q._nonempty &= ~((<uint64_t> 1) << gi)


cdef inline int64_t core_overdue(QueueCore q, Window *w, int64_t now_ms) noexcept nogil:
    """The head past its SLA limit with the earliest deadline, then lowest order."""
    cdef Py_ssize_t i, klass
    cdef int64_t sla, deadline, best_deadline = 0, best_order = 0
    cdef Group *g
    cdef Group *best = NULL
    for i in range(w.n):
        sla = q._sla[w.services[i]]
        if sla <= 0:
            continue
        for klass in range(CORE_NCLS):
            g = &q._groups[w.services[i] * CORE_NCLS + klass]
            if g.start == g.end or now_ms - g.head_key <= sla:
                continue
            deadline = g.head_key + sla
            if best == NULL or deadline < best_deadline or (
                deadline == best_deadline and g.head_order < best_order
            ):
                best = g
                best_deadline = deadline
                best_order = g.head_order
    return -1 if best == NULL else best.ids[best.start]


cdef inline int64_t core_best(QueueCore q, Window *w, int64_t now_ms,
                              int only_class) noexcept nogil:
    """The head with the highest score, then lowest order (of one class if >= 0).

    Which of two heads wins is unpredictable, so it is decided by conditional
    moves, not branches. With a candidate bit set, only the non-empty groups
    are visited, in the same order; else each candidate in turn, skipping the
    empty ones.
    """
    cdef Py_ssize_t j = 0, step = 1, end = w.n * CORE_NCLS
    cdef Group *g
    cdef Group *best = NULL
    cdef int64_t score, take, best_score = 0, best_order = 0
    cdef uint64_t todo
    if w.cand_mask:
        todo = q._nonempty & w.cand_mask
        if only_class >= 0:  # bits 0, 3, 6, ... shifted to the class
            todo &= 0x9249249249249249ULL << only_class
        if not todo:
            return -1
        j = _ctz64(todo)
        todo &= todo - 1
        best = &q._groups[j]
        best_score = w.group_factor[j] * (now_ms - best.head_key)
        best_order = best.head_order
        while todo:
            j = _ctz64(todo)
            todo &= todo - 1
            g = &q._groups[j]
            score = w.group_factor[j] * (now_ms - g.head_key)
            take = score > best_score
            if score == best_score:  # rare: then the lower order
                take = g.head_order < best_order
            best = g if take else best
            best_score = score if take else best_score
            best_order = g.head_order if take else best_order
        return best.ids[best.start]
    if only_class >= 0:
        j = only_class
        step = CORE_NCLS
    while j < end:
        g = w.cand[j]
        j += step
        if g.start == g.end:
            continue
        score = w.cand_factor[j - step] * (now_ms - g.head_key)
        take = -<int64_t> ((best == NULL) | (score > best_score)
                           | ((score == best_score) & (g.head_order < best_order)))
        best = <Group *> ((<intptr_t> best) ^ (((<intptr_t> best) ^ (<intptr_t> g))
                                                 & <intptr_t> take))
        best_score ^= (best_score ^ score) & take
        best_order ^= (best_order ^ g.head_order) & take
    return -1 if best == NULL else best.ids[best.start]


cdef inline int64_t core_select(QueueCore q, Py_ssize_t widx, int64_t now_ms) noexcept nogil:
    # The rules in their order of precedence, each a pass over the heads.
    cdef Window *w = &q._windows[widx]
    cdef int64_t found
    if w.has_sla:
        found = core_overdue(q, w, now_ms)
        if found >= 0:
            return found
    if w.ratio_cap > 0 and w.priority_streak >= w.ratio_cap:
        found = core_best(q, w, now_ms, CORE_NORMAL)
        if found >= 0:
            return found
    if w.priority_window:
        found = core_best(q, w, now_ms, CORE_PRIORITY)
        if found >= 0:
            return found
    return core_best(q, w, now_ms, -1)


cdef inline void core_record_call(QueueCore q, Py_ssize_t widx, int klass) noexcept nogil:
    if klass == CORE_PRIORITY:
        q._windows[widx].priority_streak += 1
    elif klass == CORE_NORMAL:
        q._windows[widx].priority_streak = 0


cdef inline int core_pop_head(QueueCore q, int64_t tid) except -1 nogil:
    """``q.c_remove(tid)``, inline when ``tid`` is its group's head (a call)."""
    cdef Group *g
    cdef int32_t head
    if tid < 0 or tid >= q._tcap or q._tgroup[tid] < 0:
        return q.c_remove(tid)  # raises KeyError
    g = &q._groups[q._tgroup[tid]]
    if g.ids[g.start] != tid:
        return q.c_remove(tid)
    g.start += 1
    if g.start == g.end:
        g.start = g.end = 0
        core_mark(q, q._tgroup[tid], 0)
    else:
        head = g.ids[g.start]
        g.head_key = q._tkey[head]
        g.head_order = q._torder[head]
    q._tgroup[tid] = -1
    q._count -= 1
    return 0


cdef inline int core_push(QueueCore q, int64_t tid, Py_ssize_t service, int klass,
                          int64_t key_ms, int64_t order) except -1 nogil:
    """``q.c_push(...)``, inline in the common case: a new last ticket of a
    non-empty group with room to spare."""
    cdef Group *g
    cdef int32_t last
    cdef Py_ssize_t gi = service * CORE_NCLS + klass
    if (0 <= tid < q._tcap and q._tgroup[tid] < 0 and 0 <= service < q.n_services
            and 0 <= klass < CORE_NCLS):
        g = &q._groups[gi]
        if g.start != g.end and g.end < g.cap:
            last = g.ids[g.end - 1]
            if (q._tkey[last] < key_ms or (q._tkey[last] == key_ms and (
                    q._torder[last] < order or (q._torder[last] == order and last < tid)))):
                q._tkey[tid] = key_ms
                q._torder[tid] = order
                g.ids[g.end] = <int32_t> tid
                g.end += 1
                q._tgroup[tid] = <int32_t> gi
                q._count += 1
                return 0
    return q.c_push(tid, service, klass, key_ms, order)
