"""Exceptions raised by pysim.

Every error is a `PysimError`. A failed simulated syscall raises `SyscallError`, an
`OSError` whose `errno` is the one the kernel would return; bad configuration raises
`ConfigError`, a `ValueError` naming the field and the allowed values (`ArgumentError`,
a ConfigError that is also a `TypeError`, when a call gets a keyword it does not take or
an object of the wrong kind); the TLB safety checker raises `SafetyViolation`, an
`AssertionError` carrying the offending records.
"""
from __future__ import annotations

import errno as _errno
from dataclasses import dataclass
from typing import Any, Iterable, Optional, Sequence

__all__ = ["PysimError", "SyscallError", "ConfigError", "ArgumentError", "SafetyViolation",
           "Violation", "no_unknown_keywords"]


class PysimError(Exception):
    """Base class of every exception pysim raises on purpose."""


class SyscallError(PysimError, OSError):
    """A simulated syscall failed with a kernel errno, e.g. SyscallError(errno.ENOMEM, "...").

    `e.errno` is the errno, `e.strerror` the message; `str(e)` shows the symbolic name.
    """

    def __init__(self, errno: int, message: str) -> None:
        OSError.__init__(self, errno, message)

    def __str__(self) -> str:
        name = _errno.errorcode.get(self.errno, str(self.errno))
        return f"[{name}] {self.strerror}"


class ConfigError(PysimError, ValueError):
    """A configuration value is unknown or invalid; the message names field and allowed values.

    `field` and `allowed` repeat them as attributes for programs that want them.
    """

    def __init__(self, message: str, *, field: Optional[str] = None,
                 allowed: Optional[Iterable[Any]] = None) -> None:
        super().__init__(message)
        self.field = field
        self.allowed = tuple(allowed) if allowed is not None else None


class ArgumentError(ConfigError, TypeError):
    """A public call got a keyword it does not take, or an argument of the wrong kind
    (a ConfigError naming it, and a TypeError as Python's own would be)."""


def no_unknown_keywords(call: str, unknown: dict, allowed: Iterable[str]) -> None:
    """Raise ArgumentError for the first of `unknown` (the keywords `call` caught in its
    **kwargs), naming it and the keywords the call takes; nothing if it is empty."""
    if unknown:
        name = next(iter(unknown))
        allowed = tuple(allowed)
        raise ArgumentError(f"{call}() got an unexpected keyword argument {name!r}; "
                            f"it takes {', '.join(allowed)}", field=name, allowed=allowed)


def _hex(value: Any) -> str:
    """Format an int as hex and anything else with repr, for violation reports."""
    return f"0x{value:x}" if isinstance(value, int) and not isinstance(value, bool) else repr(value)


@dataclass(frozen=True)
class Violation:
    """One stale TLB entry that grants more than the page table: who, where, what, when."""

    cpu: int
    va: int
    tlb_entry: Any
    pte: Optional[int]
    operation: str
    reason: str = ""

    def __str__(self) -> str:
        why = f": {self.reason}" if self.reason else ""
        return (f"cpu {self.cpu} va {_hex(self.va)} after {self.operation}{why} "
                f"(tlb entry {_hex(self.tlb_entry)}, pte {_hex(self.pte)})")


class SafetyViolation(PysimError, AssertionError):
    """The safety checker found TLB entries more permissive than the page table.

    `violations` is the list of `Violation` records (cpu, va, tlb entry, pte, operation).
    """

    _SHOWN = 5  # records spelled out in the message; the rest are counted

    def __init__(self, violations: Sequence[Violation], message: Optional[str] = None) -> None:
        self.violations = list(violations)
        self.message = message
        super().__init__(self._render())

    def _render(self) -> str:
        """Build the message: optional headline, then the first few records."""
        n = len(self.violations)
        head = self.message or f"{n} TLB safety violation{'s' if n != 1 else ''}"
        lines = [head] + [f"  {v}" for v in self.violations[:self._SHOWN]]
        if n > self._SHOWN:
            lines.append(f"  ... and {n - self._SHOWN} more")
        return "\n".join(lines)

    def __reduce__(self):
        """Pickle by constructor arguments so sweep workers can send it back."""
        return (type(self), (self.violations, self.message))
