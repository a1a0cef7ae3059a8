"""The configuration table: one row per variable, as in the original.

Each variable has a type, a default and flags. The table is the single place
that knows what can be SET, when, and what is persisted in the config file
(settings.py reads and writes it).
"""
from __future__ import annotations

import re
import uuid as uuidlib
from dataclasses import dataclass
from typing import Any

from .ddl.lexer import UNITS
from .errors import ConfigError
from .format.rows import MAX_ID

# flags
PERSIST = 1      # written to the config file
BEFORE_OPEN = 2  # may be set before open()
RUNTIME = 4      # may be set while open
HIDDEN = 8       # not listed by SHOW CONFIG / SHOW ALL
NONZERO = 16     # zero is not a valid value
READ_ONLY = 0    # neither BEFORE_OPEN nor RUNTIME: never set by a user
C, R = BEFORE_OPEN, RUNTIME


@dataclass(frozen=True)
class Var:
    name: str
    type: type
    default: Any
    flags: int = 0


GiB = 1024**3
VARS = [
    Var("version", str, "1.0", READ_ONLY),
    Var("uuid", str, "", PERSIST | C),
    Var("directory", str, "", READ_ONLY),
    Var("log", bool, True, C),
    Var("log_to_file", bool, True, C),
    Var("log_to_stdout", bool, False, C),
    Var("mm_page_size", int, 2 * 1024 * 1024, PERSIST | C),
    Var("mm_limit", bool, False, PERSIST | C),
    Var("mm_limit_wm", int, 8 * GiB, PERSIST | C),
    Var("mm_limit_behaviour", str, "block", PERSIST | C),
    Var("mm_cache", int, 8 * GiB, PERSIST | C),
    Var("wal", bool, True, PERSIST | C),
    Var("wal_rotate_wm", int, 100 * 1024 * 1024, PERSIST | C | R),
    Var("wal_sync_on_rotate", bool, True, PERSIST | C),
    Var("wal_sync_on_write", bool, False, PERSIST | C),
    Var("wal_crc", bool, True, PERSIST | C),
    Var("wal_recover", bool, False, C),
    # a process's own choices, made before its open(), never persisted
    Var("strict_modes", bool, True, C),
    Var("lock_timeout", int, 60_000_000, C | NONZERO),
    Var("serial", bool, True, PERSIST | C),
    Var("interval", int, 3_000_000, PERSIST | C | R | NONZERO),
    Var("compression", str, "lz4", PERSIST | C | R),
    Var("compression_level", int, 0, PERSIST | C | R),
    Var("workers", int, 3, PERSIST | C),
    Var("workers_upload", int, 1, PERSIST | C),
    Var("ssn", int, 0, PERSIST | C | R),
    Var("lsn", int, 0, READ_ONLY),
    Var("sync", bool, True, PERSIST | C | HIDDEN),
    Var("error_refresh_1", bool, False, C | R | HIDDEN),
    Var("error_refresh_2", bool, False, C | R | HIDDEN),
    Var("error_refresh_3", bool, False, C | R | HIDDEN),
    Var("error_upload", bool, False, C | R | HIDDEN),
    Var("error_download", bool, False, C | R | HIDDEN),
    Var("error_wal", bool, False, C | R | HIDDEN),
]
TABLE = {v.name: v for v in VARS}
COMPRESSIONS = ("lz4", "zstd", "none")

def parse_size(text: str) -> int:
    """'10G', '150KiB', '4096' -> bytes."""
    m = re.fullmatch(r"\s*(\d+)\s*([a-zA-Z]*)\s*", text)
    unit = m.group(2).lower() if m else ""
    if not m or (unit and unit not in UNITS):
        raise ConfigError(f"bad size {text!r}: expected a number with an optional "
                          "suffix such as 150KiB, 10MB or 1G")
    return int(m.group(1)) * (UNITS[unit] if unit else 1)


# in the settings a process made before open(): the names of those that apply to this
# open only, and are not written to the config file (Monotone.open(persist=False))
ONCE = "once"


def applied(settings: dict) -> tuple[dict, frozenset]:
    """Settings made before open(): the variables' values, and the names among them
    that are not to be persisted."""
    values = {name: value for name, value in settings.items() if name != ONCE}
    return values, frozenset(settings.get(ONCE, ()))


def setting(values: dict, name: str) -> Any:
    """A variable among settings made before open(), converted, or its default."""
    var = TABLE[name]
    return convert(var, values.get(name, var.default))


def lock_timeout(values: dict) -> float:
    """Seconds a process waits for a lock (lock_timeout, a duration in microseconds)."""
    return setting(values, "lock_timeout") / 1e6


def lookup(name: str, verb: str = "SET") -> Var:
    var = TABLE.get(name.lower())
    if var is None:
        if verb == "SHOW":
            raise ConfigError(f"SHOW name: '{name}' not found")
        raise ConfigError(f"SET '{name}': variable not found")
    return var


def convert(var: Var, value: Any) -> Any:
    """Check and convert a value (Python or DDL literal) to the variable's type."""
    if var.type is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "on", "off"):
            return value.lower() in ("true", "on")
        raise ConfigError(f"SET '{var.name}': bool value expected")
    if var.type is int:
        if isinstance(value, bool):
            raise ConfigError(f"SET '{var.name}': integer value expected")
        if isinstance(value, int):
            result = value
        elif isinstance(value, str):
            try:
                result = parse_size(value)
            except ConfigError:
                raise ConfigError(f"SET '{var.name}': integer value expected") from None
        else:
            raise ConfigError(f"SET '{var.name}': integer value expected")
        if not 0 <= result < 2**64:
            raise ConfigError(f"SET '{var.name}': value must be in [0, 2**64-1]")
        if result == 0 and var.flags & NONZERO:
            raise ConfigError(f"SET '{var.name}': variable cannot be set to zero")
        return result
    if not isinstance(value, str):
        raise ConfigError(f"SET '{var.name}': string value expected")
    return value


def validate(name: str, value: Any, stored: bool = False) -> None:
    if name == "uuid":
        try:
            uuidlib.UUID(value)
        except ValueError:
            raise ConfigError(f"SET 'uuid': '{value}' is not a uuid (expected the form "
                              "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)") from None
    # an explicit id 2**64-2 moves ssn to 2**64-1 (serial ids exhausted), which is then
    # persisted; a user may not SET it there
    if name == "ssn" and value >= MAX_ID and not stored:
        raise ConfigError("SET 'ssn': must be below 2**64-1 (that id marks a serial write)")
    if name == "compression" and value not in COMPRESSIONS:
        raise ConfigError(f"SET 'compression': unknown compression '{value}' "
                          f"(expected one of {', '.join(COMPRESSIONS)})")
    if name == "compression_level" and value > 22:
        raise ConfigError("SET 'compression_level': at most 22 (zstd), 16 (lz4)")
    if name == "mm_limit_behaviour" and value not in ("block", "error"):
        raise ConfigError("SET 'mm_limit_behaviour': 'block' or 'error' expected")


class Config:
    """Values of every variable, with SET semantics; what the config file keeps of them."""

    def __init__(self) -> None:
        self.values = {v.name: v.default for v in VARS}

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["values"][name]
        except KeyError:
            raise AttributeError(name) from None

    def set(self, name: str, value: Any, *, opened: bool) -> None:
        var = lookup(name)
        if not var.flags & (BEFORE_OPEN | RUNTIME):
            raise ConfigError(f"SET '{var.name}': variable cannot be changed")
        if opened and not var.flags & RUNTIME:
            raise ConfigError(f"SET '{var.name}': variable cannot be changed online "
                              "(set it before open())")
        if not opened and not var.flags & BEFORE_OPEN:
            raise ConfigError(f"SET '{var.name}': variable can be changed only while open")
        value = convert(var, value)
        if var.name == "compression" and value == "":
            value = "none"
        validate(var.name, value)
        if var.name == "uuid":
            value = str(uuidlib.UUID(value))
        self.values[var.name] = value

    def show(self, name: str) -> Any:
        name = lookup(name, "SHOW").name
        if name == "compression" and self.values[name] == "none":
            return ""  # as SET takes it, and as a storage shows it
        return self.values[name]

    def visible(self) -> dict:
        return {v.name: self.values[v.name] for v in VARS if not v.flags & HIDDEN}

    def persisted(self) -> dict:
        return {v.name: self.values[v.name] for v in VARS if v.flags & PERSIST}

    def load(self, data: dict) -> None:
        """Values persisted in the config file; a name it should not hold is an error
        (a damaged or hand-edited file), a name it lacks keeps its default."""
        for name, value in data.items():
            var = TABLE.get(name)
            if name == "lsn":
                continue  # written by earlier versions; lsn now goes on from the files
            if var is not None and var.flags & PERSIST:
                value = convert(var, value)
                validate(name, value, stored=True)
                self.values[name] = value
            else:
                raise ConfigError(f"unknown name '{name}'")
        if not self.values["uuid"]:
            raise ConfigError("uuid is missing")

    def ensure_uuid(self) -> None:
        if not self.values["uuid"]:
            self.values["uuid"] = str(uuidlib.uuid4())
