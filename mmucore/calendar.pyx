# cython: language_level=3
"""Busy calendars (see calendar.pxd): first-fit placement of short busy intervals."""
from libc.string cimport memmove


cdef void calendar_reset(calendar* c) noexcept nogil:
    """Nothing booked; nobody used the resource."""
    c.n = 0
    c.owner = -1
    c.owner_llc = -1


cdef inline int first_ending_after(calendar* c, double t) noexcept nogil:
    """The index of the first interval that ends after t (c.n if none): the intervals
    never overlap, so their ends are sorted like their starts."""
    cdef int lo = 0, hi = c.n, mid
    while lo < hi:
        mid = (lo + hi) >> 1
        if c.end[mid] <= t:
            lo = mid + 1
        else:
            hi = mid
    return lo


cdef double calendar_fit(calendar* c, double t, double dur) noexcept nogil:
    """Book `dur` at the first gap starting at or after t; returns the start.  With
    every slot taken the oldest interval is forgotten (its time is long past)."""
    cdef double s = t
    cdef int i = first_ending_after(c, t), k
    while i < c.n and c.start[i] < s + dur:
        s = c.end[i]
        i += 1
    if dur <= 0.0:
        return s
    if c.n == CAL_SLOTS:                    # drop the oldest
        memmove(&c.start[0], &c.start[1], (c.n - 1) * sizeof(double))
        memmove(&c.end[0], &c.end[1], (c.n - 1) * sizeof(double))
        c.n -= 1
        i -= 1
    # the new interval goes before index i (every earlier one ends by s)
    k = i if i > 0 else 0
    memmove(&c.start[k + 1], &c.start[k], (c.n - k) * sizeof(double))
    memmove(&c.end[k + 1], &c.end[k], (c.n - k) * sizeof(double))
    c.start[k] = s
    c.end[k] = s + dur
    c.n += 1
    return s


cdef int calendar_queued(calendar* c, double t) noexcept nogil:
    """Bookings not yet over at t: the users queued ahead of a request at t."""
    return c.n - first_ending_after(c, t)


cdef double line_write(calendar* line, int cpu, int llc, double now, double transfer,
                       double remote, double per_writer, double hold) noexcept nogil:
    """An atomic write at `now` to a cache line others write too (a lock word, a shared
    counter); returns the cycles it takes the writer: waiting for the line, then one
    transfer if another CPU wrote it last (`transfer` from a CPU of the writer's
    last-level cache `llc`, `remote` from one of another LLC or socket), slowed by
    per_writer for each writer still queued for it (the more cores contend for one
    line, the slower each hand-over).  A line nobody wrote since the reset is taken as
    already in the writer's cache, so one thread alone never pays.  `hold` keeps the
    line (a lock) for that long after it arrives; the holder's work in that time is
    charged by its own path, not here."""
    cdef double cost = 0.0
    if line.owner != cpu and line.owner >= 0:
        cost = (transfer if line.owner_llc == llc else remote) \
            + per_writer * calendar_queued(line, now)
    cdef double start = calendar_fit(line, now, cost + hold)
    line.owner = cpu
    line.owner_llc = llc
    return start - now + cost


cdef class Calendar:
    """A shared cache line (or other resource) on the timeline."""

    def __cinit__(self):
        calendar_reset(&self.c)

    def __reduce__(self):
        return (Calendar, ())               # bookings never outlive a timeline run

    def reset(self):
        """Forget every booking and the last owner."""
        calendar_reset(&self.c)

    def fit(self, double t, double dur) -> float:
        """Book dur cycles at the first gap at or after t; returns the start."""
        if dur < 0:
            raise ValueError(f"duration must be >= 0, got {dur}")
        return calendar_fit(&self.c, t, dur)

    def write(self, int cpu, double now, double transfer, double per_writer=0.0,
              double hold=0.0, int llc=0, double remote=-1.0) -> float:
        """An atomic write by cpu (of last-level cache llc) at now; returns the cycles
        it takes (see line_write; remote below 0: the same as transfer)."""
        if remote < 0:
            remote = transfer
        if transfer < 0 or per_writer < 0 or hold < 0:
            raise ValueError(f"transfer, per_writer and hold must be >= 0, got "
                             f"{transfer}, {per_writer}, {hold}")
        return line_write(&self.c, cpu, llc, now, transfer, remote, per_writer, hold)

    def queued(self, double t) -> int:
        """Bookings not yet over at t."""
        return calendar_queued(&self.c, t)

    @property
    def owner(self) -> int:
        return self.c.owner

    @property
    def bookings(self) -> list:
        """The busy intervals held, as (start, end) pairs in order."""
        return [(self.c.start[i], self.c.end[i]) for i in range(self.c.n)]
