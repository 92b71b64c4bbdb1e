# cython: language_level=3
"""The strace parser's common line, read in C: `PID [TIME] name(args) = result [ERRNO
(text)] [<dur>]` with no string, bracket or `)` in the arguments.

pysim.replay.parse_strace hands its lines to LineReader.run(), which makes the Call of
every such line itself and gives back, one at a time, the lines it declines (any other
shape, a non-ASCII line, a line without a pid, a number spelled unusually): the Python
parser reads those as before.  A line is declined before anything about it is
committed, so a declined line is read exactly as if this reader did not exist; a line
taken gives the values the Python path (its _FAST regex) would give, in the same order
of checks, raising the same TraceErrors through the same Python helpers.
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


cdef class LineReader:
    """Reads the common strace lines of one parse (see the module docstring); `day` and
    `last_t` are the parse's midnight-crossing state, shared with the Python path."""

    cdef public double day
    cdef double _last
    cdef bint _has_last
    cdef public Py_ssize_t ln
    cdef public bint done
    cdef dict mmaps, int_args, flags
    cdef frozenset ignored
    cdef object call, decode, num, check_errno, error

    def __init__(self, call, decode, num, check_errno, error, dict int_args,
                 frozenset ignored, dict mmaps, dict flags):
        """call: the Call class; decode, num, check_errno: parse_strace's _decode, _num
        and _check_errno; error: TraceError; int_args, ignored: its _INT_ARGS and
        _IGNORED; mmaps: its mmap argument-text cache (shared with the Python path);
        flags: its memoised flag spellings (_flag_cache, read first as _num does)."""
        self.flags = flags
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
            c = self._line(raw) if PyUnicode_CheckExact(raw) else None
            if c is None:
                return raw
            if c is not SKIP:
                events.append(c)
        self.done = True
        return None

    cdef object _line(self, str text):
        """The Call of one line, SKIP for a dropped call, None to decline."""
        cdef Py_ssize_t n, i, j, p0, p1, hm0, hm1, s0, s1, e0, e1
        cdef Py_ssize_t n0, n1, a0, a1, r0, r1, x0, x1, end
        cdef const char* s
        cdef char buf[64]
        cdef long long pid_v = 0, hours = 0, mins
        cdef double t = 0.0, sec
        cdef bint has_t = False
        if not PyUnicode_IS_ASCII(text):
            return None
        s = PyUnicode_AsUTF8AndSize(text, &n)
        while n > 0 and s[n - 1] == 10:
            n -= 1
        for i in range(n):
            if s[i] < 32 and s[i] != 9:
                return None             # a control character: the regexes decide
        # -- the pid: `[pid N] ` or `N `
        i = 0
        if n > 5 and s[0] == 91 and s[1] == 112 and s[2] == 105 and s[3] == 100:
            i = _blanks(s, 4, n)
            if i == 4:
                return None
            p0 = i
            p1 = _digits(s, i, n)
            if p1 == p0 or p1 >= n or s[p1] != 93:
                return None
            i = _blanks(s, p1 + 1, n)
            if i == p1 + 1:
                return None
        else:
            p0 = 0
            p1 = _digits(s, 0, n)
            if p1 == 0 or p1 >= n or not _ws(s[p1]):
                return None             # no pid (or not this shape)
            i = _blanks(s, p1, n)
        if p1 - p0 > 18:
            return None
        for j in range(p0, p1):
            pid_v = pid_v * 10 + (s[j] - 48)
        # -- the time: `H:MM:SS[.frac] `, `EPOCH.frac ` or none
        hm0 = -1
        e0 = -1
        if i < n and _dig(s[i]):
            j = _digits(s, i, n)
            if j < n and s[j] == 58:                        # H:MM:SS[.frac]
                if j - i > 9 or j + 6 > n or not (_dig(s[j + 1]) and _dig(s[j + 2])
                                                  and s[j + 3] == 58 and _dig(s[j + 4])
                                                  and _dig(s[j + 5])):
                    return None
                hm0, hm1 = i, j
                s0 = j + 4
                s1 = j + 6
                if s1 < n and s[s1] == 46:
                    s1 = _digits(s, s1 + 1, n)
                    if s1 == j + 7:
                        return None
                if s1 - s0 >= 60:
                    return None
            elif j < n and s[j] == 46:                      # epoch
                e0 = i
                e1 = _digits(s, j + 1, n)
                if e1 == j + 1 or e1 - e0 >= 60:
                    return None
                s1 = e1
            else:
                return None
            i = _blanks(s, s1, n)
            if i == s1:
                return None
        # -- name(args)
        n0 = i
        if i >= n or not (97 <= s[i] <= 122 or s[i] == 95):
            return None
        i += 1
        while i < n and (97 <= s[i] <= 122 or s[i] == 95 or _dig(s[i])):
            i += 1
        n1 = i
        if i >= n or s[i] != 40:
            return None
        a0 = i + 1
        i = a0
        while i < n and s[i] != 34 and s[i] != 40 and s[i] != 91 and s[i] != 123 \
                and s[i] != 41:
            i += 1
        if i >= n or s[i] != 41:
            return None
        a1 = i
        # -- ` = result`
        i = _blanks(s, a1 + 1, n)
        if i == a1 + 1 or i >= n or s[i] != 61:
            return None
        j = _blanks(s, i + 1, n)
        if j == i + 1:
            return None
        r0 = j
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
                return None             # int(val, 0) decides (it may raise)
        r1 = j
        # -- [ERRNO [(text)]] [<dur>], then blanks to the end
        end = n
        while end > r1 and _ws(s[end - 1]):
            end -= 1
        x0 = -1
        if r1 < end:
            i = _blanks(s, r1, end)
            if i == r1:
                return None
            if 65 <= s[i] <= 90:
                x0 = i
                i += 1
                while i < end and (65 <= s[i] <= 90 or _dig(s[i]) or s[i] == 95):
                    i += 1
                x1 = i
                if i < end:
                    i = _blanks(s, x1, end)
                    if i == x1:
                        return None
                    if s[i] == 40:                          # (text), last `)` wins
                        if s[end - 1] == 41 and end - 1 > i:
                            i = end
                        elif not self._dur_then_paren(s, i, end):
                            return None
                        i = end
            if i < end and not (s[i] == 60 and self._dur_at(s, i, end)):
                return None
        # -- taken: commit, in the Python path's order
        if hm0 >= 0:
            for j in range(hm0, hm1):
                hours = hours * 10 + (s[j] - 48)
            mins = (s[hm1 + 1] - 48) * 10 + (s[hm1 + 2] - 48)
            memcpy_n(buf, s + s0, s1 - s0)
            sec = PyOS_string_to_double(buf, NULL, NULL)
            t = <double>(hours * 3600 + mins * 60) + sec
            if self._has_last and t + self.day < self._last - 43200:
                self.day += 86400.0     # the trace crossed midnight
            t += self.day
            self._last = t
            self._has_last = True
            has_t = True
        elif e0 >= 0:
            memcpy_n(buf, s + e0, s1 - e0)
            t = PyOS_string_to_double(buf, NULL, NULL)
            has_t = True
        ln = self.ln
        err = None
        if x0 >= 0:
            err = PyUnicode_FromStringAndSize(s + x0, x1 - x0)
            self.check_errno(err, ln)
        res = _plain_int(s, r0, r1)
        if res is None:
            res = int(PyUnicode_FromStringAndSize(s + r0, r1 - r0), 0)
        name = PyUnicode_FromStringAndSize(s + n0, n1 - n0)
        if name in self.ignored:
            return SKIP
        tv = PyFloat_FromDouble(t) if has_t else None
        k = self.int_args.get(name)
        if k is not None:
            return self.call(ln, tv, PyLong_FromLongLong(pid_v), name,
                             self._int_args(s, a0, a1, name, k, ln), res, err, None)
        argtext = PyUnicode_FromStringAndSize(s + a0, a1 - a0)
        if name == "mmap":
            dec = self.mmaps.get(argtext)
            if dec is None:
                dec = self.mmaps[argtext] = self.decode(name, argtext, ln)
        else:
            dec = self.decode(name, argtext, ln)
        return self.call(ln, tv, PyLong_FromLongLong(pid_v), name, dec[0], res, err,
                         dec[1])

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
