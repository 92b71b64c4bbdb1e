"""Reading a TOML file the user named (a grid, a preset), every failure one ConfigError
that names the file and what it was meant to be."""
from __future__ import annotations

import sys
from typing import Any, Dict

from ..errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:                                   # pragma: no cover - declared for <3.11
    import tomli as tomllib


def read_toml(path: str, what: str, field: str) -> Dict[str, Any]:
    """The parsed file at path, `what` naming it in errors ("grid", "preset"): missing,
    a directory, not UTF-8, unreadable or not TOML are each one ConfigError on field."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{what} file {path!r} not found", field=field) from None
    except IsADirectoryError:
        raise ConfigError(f"{what} {path!r} is a directory; give a .toml file",
                          field=field) from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{what} file {path!r} is not UTF-8 text (byte {e.start}); a "
                          f"{what} is a TOML file", field=field) from None
    except OSError as e:
        raise ConfigError(f"cannot read {what} file {path!r}: {e.strerror or e}",
                          field=field) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{what} file {path!r} is not valid TOML: {e}",
                          field=field) from None
