# cython: language_level=3
"""Busy calendars: when a resource several CPUs share (a cache line, a CPU's interrupt
handling) is taken, as a short list of busy intervals.  Requests on the timeline are
granted in the order they start, but a request may use a resource late in its own
work, after requests that started later have used it earlier; a calendar fits each
use into the first gap at or after its time, so earlier gaps stay usable."""

cdef enum:
    CAL_SLOTS = 256            # intervals a calendar remembers (> any queue of CPUs)

cdef struct calendar:
    int n                       # intervals held, sorted by start (and so by end: they
                                # never overlap)
    double start[CAL_SLOTS]     # when each busy interval begins
    double end[CAL_SLOTS]       # and ends
    int owner                   # who used the resource last (-1: nobody), for lines
    int owner_llc               # the last-level cache that CPU shares (lines)

cdef void calendar_reset(calendar* c) noexcept nogil
cdef double calendar_fit(calendar* c, double t, double dur) noexcept nogil
cdef int calendar_queued(calendar* c, double t) noexcept nogil
cdef double line_write(calendar* line, int cpu, int llc, double now, double transfer,
                       double remote, double per_writer, double hold) noexcept nogil


cdef class Calendar:
    """A calendar for Python callers (the mmap_lock count word's cache line)."""
    cdef calendar c
