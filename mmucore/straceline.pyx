# cython: language_level=3
"""The strace parser's common lines, read in C: `PID [TIME] name(args) = result [ERRNO
(text)] [<dur>]` with no string, bracket or `)` in the arguments, and the same call
split by another task's line into `name(args <unfinished ...>` and `<... name resumed>
rest` (every second line of a multi-threaded program's trace).

pysim.replay.parse_strace hands its lines to LineReader.run(), which makes the Call of
every such line itself and gives back, one at a time, the lines it declines (any other
shape, a non-ASCII line, a line without a pid, a number spelled unusually, a resumed
clone or exit): the Python parser reads those as before.  A line is declined before
anything about it is committed, so a declined line is read exactly as if this reader
did not exist; a line taken gives the values the Python path would give, in the same
order of checks, raising the same TraceErrors through the same Python helpers.  The
unfinished calls are held in the parse's own `pending` dict, so a call begun on one
side may be resumed on the other.
"""
from cpython.float cimport PyFloat_FromDouble
from cpython.long cimport PyLong_FromLongLong, PyLong_FromUnsignedLongLong
from cpython.unicode cimport PyUnicode_FromStringAndSize
from cpython.ref cimport PyObject, Py_INCREF
from cpython.tuple cimport PyTuple_New, PyTuple_SET_ITEM

cdef extern from "Python.h":
    bint PyUnicode_IS_ASCII(object o)
    bint PyUnicode_CheckExact(object o)
    const char* PyUnicode_AsUTF8AndSize(object o, Py_ssize_t* size) except NULL
    double PyOS_string_to_double(const char* s, char** endptr, PyObject* overflow) except? -1.0

SKIP = object()                 # run()'s inner result for a call the parser drops


cdef inline bint _ws(char c) noexcept nogil:
    """A blank the parser's `\\s` runs take (the only ones this reader accepts)."""
    return c == 32 or c == 9


cdef inline bint _dig(char c) noexcept nogil:
    """An ASCII digit."""
    return 48 <= c <= 57


cdef inline int _hexval(char c) noexcept nogil:
    """The value of a hex digit, -1 for any other character."""
    if 48 <= c <= 57:
        return c - 48
    if 97 <= c <= 102:
        return c - 87
    if 65 <= c <= 70:
        return c - 55
    return -1


cdef inline Py_ssize_t _digits(const char* s, Py_ssize_t i, Py_ssize_t n) noexcept nogil:
    """The end of the digit run starting at i."""
    while i < n and _dig(s[i]):
        i += 1
    return i


cdef inline Py_ssize_t _blanks(const char* s, Py_ssize_t i, Py_ssize_t n) noexcept nogil:
    """The end of the blank run starting at i."""
    while i < n and _ws(s[i]):
        i += 1
    return i


cdef object _plain_int(const char* s, Py_ssize_t a, Py_ssize_t b):
    """int(s[a:b], 0) when s[a:b] is `0x` and 1-16 hex digits or -?(0|[1-9] and at most
    17 more digits), else None (the caller asks the Python helper)."""
    cdef Py_ssize_t i = a
    cdef unsigned long long u = 0
    cdef long long v = 0
    cdef int d
    cdef bint neg = False
    if b - a > 2 and s[a] == 48 and s[a + 1] == 120:        # 0x
        if b - a > 18:
            return None
        i = a + 2
        while i < b:
            d = _hexval(s[i])
            if d < 0:
                return None
            u = (u << 4) | <unsigned long long>d
            i += 1
        return PyLong_FromUnsignedLongLong(u)
    if i < b and s[i] == 45:                                # -
        neg = True
        i += 1
    if i >= b or b - i > 18 or (s[i] == 48 and b - i > 1):
        return None
    while i < b:
        if not _dig(s[i]):
            return None
        v = v * 10 + (s[i] - 48)
        i += 1
    return PyLong_FromLongLong(-v if neg else v)


cdef struct head_t:
    long long pid
    Py_ssize_t hm0, hm1, s0, s1, e0     # `H:` digits, seconds, epoch (-1: absent)
    Py_ssize_t body                     # where the call (or `<... resumed>`) starts


cdef struct tail_t:
    Py_ssize_t a1, r0, r1, x0, x1       # args end, result, errno (x0 -1: none)


cdef extern from "string.h":
    int memcmp(const void* a, const void* b, size_t n) nogil

cdef enum:
    UNFINISHED_LEN = 17                 # len(b" <unfinished ...>")
CREATES = frozenset({"clone", "clone3", "fork", "vfork"})


cdef inline bint _plain_text(const char* s, Py_ssize_t n) noexcept nogil:
    """No control character but tab (else the regexes decide)."""
    cdef Py_ssize_t i
    for i in range(n):
        if s[i] < 32 and s[i] != 9:
            return False
    return True


cdef inline Py_ssize_t _name_end(const char* s, Py_ssize_t i, Py_ssize_t n) noexcept nogil:
    """Where the call name `[a-z_][a-z0-9_]*` starting at s[i] ends (i: none starts there)."""
    if i >= n or not (97 <= s[i] <= 122 or s[i] == 95):
        return i
    i += 1
    while i < n and (97 <= s[i] <= 122 or s[i] == 95 or _dig(s[i])):
        i += 1
    return i


cdef inline bint _unfinished_at(const char* s, Py_ssize_t a0, Py_ssize_t n) noexcept:
    """s[a0:n] ends in ` <unfinished ...>`."""
    return n - a0 >= UNFINISHED_LEN and memcmp(s + n - UNFINISHED_LEN,
                                               b" <unfinished ...>", UNFINISHED_LEN) == 0


cdef bint _head(const char* s, Py_ssize_t n, head_t* h) noexcept:
    """`[pid N] ` or `N `, then `H:MM:SS[.frac] `, `EPOCH.frac ` or no time: h gets
    the pid, where the time's parts are and where the rest begins; False to decline."""
    cdef Py_ssize_t i, j, p0, p1
    h.pid = 0
    if n > 5 and s[0] == 91 and s[1] == 112 and s[2] == 105 and s[3] == 100:
        i = _blanks(s, 4, n)
        if i == 4:
            return False
        p0 = i
        p1 = _digits(s, i, n)
        if p1 == p0 or p1 >= n or s[p1] != 93:
            return False
        i = _blanks(s, p1 + 1, n)
        if i == p1 + 1:
            return False
    else:
        p0 = 0
        p1 = _digits(s, 0, n)
        if p1 == 0 or p1 >= n or not _ws(s[p1]):
            return False                # no pid (or not this shape)
        i = _blanks(s, p1, n)
    if p1 - p0 > 18:
        return False
    for j in range(p0, p1):
        h.pid = h.pid * 10 + (s[j] - 48)
    h.hm0 = -1
    h.e0 = -1
    if i < n and _dig(s[i]):
        j = _digits(s, i, n)
        if j < n and s[j] == 58:                        # H:MM:SS[.frac]
            if j - i > 9 or j + 6 > n or not (_dig(s[j + 1]) and _dig(s[j + 2])
                                              and s[j + 3] == 58 and _dig(s[j + 4])
                                              and _dig(s[j + 5])):
                return False
            h.hm0, h.hm1 = i, j
            h.s0 = j + 4
            h.s1 = j + 6
            if h.s1 < n and s[h.s1] == 46:
                h.s1 = _digits(s, h.s1 + 1, n)
                if h.s1 == j + 7:
                    return False
            if h.s1 - h.s0 >= 60:
                return False
        elif j < n and s[j] == 46:                      # epoch
            h.e0 = i
            h.s1 = _digits(s, j + 1, n)
            if h.s1 == j + 1 or h.s1 - h.e0 >= 60:
                return False
        else:
            return False
        i = _blanks(s, h.s1, n)
        if i == h.s1:
            return False
    h.body = i
    return True


cdef class LineReader:
    """Reads the common strace lines of one parse (see the module docstring); `day` and
    `last_t` are the parse's midnight-crossing state, shared with the Python path."""

    cdef public double day
    cdef double _last
    cdef bint _has_last
    cdef public Py_ssize_t ln
    cdef public bint done
    cdef bint enabled
    cdef dict mmaps, int_args, flags, pending
    cdef frozenset ignored
    cdef object call, decode, num, check_errno, error

    def __init__(self, call, decode, num, check_errno, error, dict int_args,
                 frozenset ignored, dict mmaps, dict flags, dict pending,
                 bint enabled=True):
        """call: the Call class; decode, num, check_errno: parse_strace's _decode, _num
        and _check_errno; error: TraceError; int_args, ignored: its _INT_ARGS and
        _IGNORED; mmaps: its mmap argument-text cache (shared with the Python path);
        flags: its memoised flag spellings (_flag_cache, read first as _num does);
        pending: its unfinished calls by pid (shared: either side may hold a call the
        other resumes); enabled False declines every line (the Python path alone)."""
        self.enabled = enabled
        self.flags = flags
        self.pending = pending
        self.call, self.decode, self.num = call, decode, num
        self.check_errno, self.error = check_errno, error
        self.int_args, self.ignored, self.mmaps = int_args, ignored, mmaps
        self.day = 0.0
        self._has_last = False
        self._last = 0.0
        self.ln = 0
        self.done = False

    @property
    def last_t(self):
        """The last H:MM:SS time read (after the midnight correction), or None."""
        return PyFloat_FromDouble(self._last) if self._has_last else None

    @last_t.setter
    def last_t(self, value):
        """Set by the Python path when it reads a time."""
        if value is None:
            self._has_last = False
        else:
            self._has_last = True
            self._last = value

    def run(self, it, list events):
        """Append the Call of each common line of it to events; returns the first line
        it declines (done stays False), or None with done set at the end of it."""
        cdef object c
        for raw in it:
            self.ln += 1
            c = self._line(raw, events) if self.enabled and PyUnicode_CheckExact(raw) \
                else None
            if c is None:
                return raw
            if c is not SKIP:
                events.append(c)
        self.done = True
        return None

    cdef object _line(self, str text, list events):
        """The Call of one line, SKIP for a line that adds no Call (a dropped call, an
        unfinished one now held in pending), None to decline."""
        cdef Py_ssize_t n, i, j, n0, n1, a0
        cdef const char* s
        cdef head_t h
        cdef tail_t tl
        if not PyUnicode_IS_ASCII(text):
            return None
        s = PyUnicode_AsUTF8AndSize(text, &n)
        while n > 0 and s[n - 1] == 10:
            n -= 1
        if not _plain_text(s, n) or not _head(s, n, &h):
            return None
        i = h.body
        if i + 5 < n and s[i] == 60 and s[i + 1] == 46 and s[i + 2] == 46 \
                and s[i + 3] == 46 and s[i + 4] == 32:
            return self._resumed(s, n, i + 5, &h)
        # -- name(args
        n0 = i
        n1 = i = _name_end(s, i, n)
        if n1 == n0 or i >= n or s[i] != 40:
            return None
        a0 = i + 1
        if _unfinished_at(s, a0, n):
            # held until its `resumed` line, as the Python path holds it: (line, name,
            # the argument text so far, where its Call would go, the time it began)
            tv = self._commit_time(s, &h)
            name = PyUnicode_FromStringAndSize(s + n0, n1 - n0)
            self.pending[PyLong_FromLongLong(h.pid)] = (
                self.ln, name, PyUnicode_FromStringAndSize(s + a0, n - UNFINISHED_LEN - a0),
                len(events), tv)
            return SKIP
        if not self._tail(s, a0, n, &tl):
            return None
        tv = self._commit_time(s, &h)
        name = PyUnicode_FromStringAndSize(s + n0, n1 - n0)
        return self._call(s, a0, &tl, name, self.ln, self.ln, tv, h.pid)

    cdef object _resumed(self, const char* s, Py_ssize_t n, Py_ssize_t i, head_t* h):
        """`<... name resumed>rest` whose held call and rest make a common call
        (not a clone or an exit, which the Python path places itself): its Call at
        the line and with the arguments the call began with, at the time it returned;
        None to decline."""
        cdef Py_ssize_t n0 = i, n1, m
        cdef const char* c
        cdef tail_t tl
        n1 = i = _name_end(s, i, n)
        if n1 == n0 or n - i < 9 or memcmp(s + i, b" resumed>", 9) != 0:
            return None
        i += 9
        if i < n and _ws(s[i]):
            i += 1                                  # the regex's `resumed>\s?`
        name = PyUnicode_FromStringAndSize(s + n0, n1 - n0)
        if name in CREATES or name == "exit" or name == "exit_group" \
                or _unfinished_at(s, i, n):
            return None
        pid = PyLong_FromLongLong(h.pid)
        held = self.pending.get(pid)
        if held is None or (<tuple>held)[1] != name:
            return None                             # the Python path's TraceError
        joined = (<tuple>held)[2] + PyUnicode_FromStringAndSize(s + i, n - i)
        if not PyUnicode_IS_ASCII(joined):
            return None
        c = PyUnicode_AsUTF8AndSize(joined, &m)
        if not _plain_text(c, m) or not self._tail(c, 0, m, &tl):
            return None
        del self.pending[pid]
        tv = self._commit_time(s, h)
        return self._call(c, 0, &tl, name, (<tuple>held)[0], self.ln, tv, h.pid)

    cdef object _commit_time(self, const char* s, head_t* h):
        """The line's time as the Python path computes it (None without one), with the
        midnight state moved on: called once a line is taken."""
        cdef char buf[64]
        cdef long long hours = 0, mins
        cdef Py_ssize_t j
        cdef double t, sec
        if h.hm0 >= 0:
            for j in range(h.hm0, h.hm1):
                hours = hours * 10 + (s[j] - 48)
            mins = (s[h.hm1 + 1] - 48) * 10 + (s[h.hm1 + 2] - 48)
            memcpy_n(buf, s + h.s0, h.s1 - h.s0)
            sec = PyOS_string_to_double(buf, NULL, NULL)
            t = <double>(hours * 3600 + mins * 60) + sec
            if self._has_last and t + self.day < self._last - 43200:
                self.day += 86400.0     # the trace crossed midnight
            t += self.day
            self._last = t
            self._has_last = True
            return PyFloat_FromDouble(t)
        if h.e0 >= 0:
            memcpy_n(buf, s + h.e0, h.s1 - h.e0)
            return PyFloat_FromDouble(PyOS_string_to_double(buf, NULL, NULL))
        return None

    cdef object _call(self, const char* s, Py_ssize_t a0, tail_t* tl, str name,
                      Py_ssize_t line, Py_ssize_t ln, object tv, long long pid):
        """The Call at `line` of name with the arguments s[a0:tl.a1] and the result
        and errno tl holds (SKIP for a dropped call); errors name line ln."""
        err = None
        if tl.x0 >= 0:
            err = PyUnicode_FromStringAndSize(s + tl.x0, tl.x1 - tl.x0)
            self.check_errno(err, ln)
        res = _plain_int(s, tl.r0, tl.r1)
        if res is None:
            res = int(PyUnicode_FromStringAndSize(s + tl.r0, tl.r1 - tl.r0), 0)
        if name in self.ignored:
            return SKIP
        k = self.int_args.get(name)
        if k is not None:
            return self.call(line, tv, PyLong_FromLongLong(pid), name,
                             self._int_args(s, a0, tl.a1, name, k, ln), res, err, None)
        argtext = PyUnicode_FromStringAndSize(s + a0, tl.a1 - a0)
        if name == "mmap":
            dec = self.mmaps.get(argtext)
            if dec is None:
                dec = self.mmaps[argtext] = self.decode(name, argtext, ln)
        else:
            dec = self.decode(name, argtext, ln)
        return self.call(line, tv, PyLong_FromLongLong(pid), name, dec[0], res, err,
                         dec[1])

    cdef bint _tail(self, const char* s, Py_ssize_t a0, Py_ssize_t n, tail_t* tl):
        """s[a0:n] is `args) = result [ERRNO [(text)]] [<dur>]` with no string, bracket
        or `)` in args: tl gets where args end and where the result and errno are."""
        cdef Py_ssize_t i = a0, j, x0, end
        while i < n and s[i] != 34 and s[i] != 40 and s[i] != 91 and s[i] != 123 \
                and s[i] != 41:
            i += 1
        if i >= n or s[i] != 41:
            return False
        tl.a1 = i
        # -- ` = result`
        i = _blanks(s, tl.a1 + 1, n)
        if i == tl.a1 + 1 or i >= n or s[i] != 61:
            return False
        j = _blanks(s, i + 1, n)
        if j == i + 1:
            return False
        tl.r0 = j
        if j + 2 < n and s[j] == 48 and s[j + 1] == 120 and 48 <= s[j + 2] <= 102 \
                and (s[j + 2] <= 57 or s[j + 2] >= 97):
            j += 2
            while j < n and (_dig(s[j]) or 97 <= s[j] <= 102):
                j += 1
        else:
            if j < n and s[j] == 45:
                j += 1
            x0 = j
            j = _digits(s, j, n)
            if j == x0 or (s[x0] == 48 and j - x0 > 1):
                return False            # int(val, 0) decides (it may raise)
        tl.r1 = j
        # -- [ERRNO [(text)]] [<dur>], then blanks to the end
        end = n
        while end > tl.r1 and _ws(s[end - 1]):
            end -= 1
        tl.x0 = -1
        if tl.r1 < end:
            i = _blanks(s, tl.r1, end)
            if i == tl.r1:
                return False
            if 65 <= s[i] <= 90:
                tl.x0 = i
                i += 1
                while i < end and (65 <= s[i] <= 90 or _dig(s[i]) or s[i] == 95):
                    i += 1
                tl.x1 = i
                if i < end:
                    i = _blanks(s, tl.x1, end)
                    if i == tl.x1:
                        return False
                    if s[i] == 40:                          # (text), last `)` wins
                        if s[end - 1] == 41 and end - 1 > i:
                            i = end
                        elif not self._dur_then_paren(s, i, end):
                            return False
                        i = end
            if i < end and not (s[i] == 60 and self._dur_at(s, i, end)):
                return False
        return True

    cdef bint _dur_at(self, const char* s, Py_ssize_t i, Py_ssize_t end):
        """s[i:end] is `<[0-9.]+>`."""
        cdef Py_ssize_t j
        if end - i < 3 or s[i] != 60 or s[end - 1] != 62:
            return False
        for j in range(i + 1, end - 1):
            if not (_dig(s[j]) or s[j] == 46):
                return False
        return True

    cdef bint _dur_then_paren(self, const char* s, Py_ssize_t i, Py_ssize_t end):
        """s[i:end] is `(...)`, blanks, `<[0-9.]+>` (the errno text then a duration)."""
        cdef Py_ssize_t j = end - 1
        if s[j] != 62:
            return False
        j -= 1
        while j > i and (_dig(s[j]) or s[j] == 46):
            j -= 1
        if j == end - 2 or s[j] != 60:
            return False
        j -= 1
        if not _ws(s[j]):
            return False
        while j > i and _ws(s[j]):
            j -= 1
        return s[j] == 41 and j > i

    cdef tuple _int_args(self, const char* s, Py_ssize_t a0, Py_ssize_t a1, str name,
                         object k, Py_ssize_t ln):
        """The k leading integer arguments of s[a0:a1], split at `, ` as str.split does,
        each decoded as _num would (a plain number here, a memoised spelling from the
        flag cache, anything else through _num itself, in order)."""
        cdef Py_ssize_t want = k, got, start, j
        cdef tuple out
        cdef object v
        if _count_parts(s, a0, a1, want) < want:       # checked before any is decoded
            argtext = PyUnicode_FromStringAndSize(s + a0, a1 - a0)
            raise self.error(f"{name} needs {k} arguments, got {argtext!r}", ln)
        out = PyTuple_New(want)
        start = a0
        for got in range(want):
            j = _part_end(s, start, a1)
            v = _plain_int(s, start, j)
            if v is None:
                part = PyUnicode_FromStringAndSize(s + start, j - start)
                v = self.flags.get(part)
                if v is None:
                    v = self.num(part, ln)
            Py_INCREF(v)
            PyTuple_SET_ITEM(out, got, v)
            start = j + 2
        return out


cdef inline Py_ssize_t _part_end(const char* s, Py_ssize_t start, Py_ssize_t a1) noexcept nogil:
    """Where the part starting at start ends: its `, ` or a1."""
    cdef Py_ssize_t j = start
    while j + 1 < a1:
        if s[j] == 44 and s[j + 1] == 32:
            return j
        j += 1
    return a1


cdef inline Py_ssize_t _count_parts(const char* s, Py_ssize_t a0, Py_ssize_t a1,
                                    Py_ssize_t want) noexcept nogil:
    """How many `, `-separated parts s[a0:a1] has (as str.split; none when empty),
    counted up to want."""
    cdef Py_ssize_t got = 0, start = a0, j
    if a1 <= a0:
        return 0
    while got < want:
        j = _part_end(s, start, a1)
        got += 1
        if j == a1:
            break
        start = j + 2
    return got


cdef inline void memcpy_n(char* dst, const char* src, Py_ssize_t n) noexcept nogil:
    """dst = src[:n] NUL-terminated (n < 64, checked by the caller)."""
    cdef Py_ssize_t i
    for i in range(n):
        dst[i] = src[i]
    dst[n] = 0
