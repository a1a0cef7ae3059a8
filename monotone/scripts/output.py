"""SHOW results as people and other programs read them besides JSON: a table, csv, or
`name = value` lines (the output modes of the monotone command; runner.py picks one).

One set of rules turns any SHOW's JSON into rows of named cells, so a new SHOW prints
in every mode with no change here:
  - a list of maps: a row per item (PARTITIONS, PIPELINE);
  - a map of maps that have a field in common (or of one map): a row per key, the key
    in a first column `name` (STORAGES, CLOUDS);
  - any other map: one record (STORAGE, CLOUD, PARTITION, WAL, MEMORY, CACHE, WORKERS,
    CONFIG), which a table shows as name/value rows, as psql shows a record;
  - a scalar (a variable): a record of one field, named after the variable; the
    variables of `SHOW a, b` make one record together when every item is one, else
    each item prints on its own, a blank line between them.
Maps inside a row flatten into dotted columns (stats.size, index.lsn); a list stays
JSON text in its cell. Rows' columns are every field any row has, in the order met.

A table and lines are for people: times, sizes and durations (FIELDS, by the field's
name) read as 2026-12-05 01:23:45, 1.5 MiB and 1 hour. csv is for programs: every
number as it is. A table wider than the width it may take is printed as lines
instead, as psql's `\\x auto` does, rather than wrapped or cut.
"""
from __future__ import annotations

import csv
import datetime
import io
import json
import os
import re
from typing import Any, NamedTuple

MODES = ("json", "table", "csv", "line")
DEFAULT_WIDTH = 80  # a table's width when output is no terminal and COLUMNS is unset

# What a number means, by its field's name (the last part of a dotted name): a time in
# microseconds since the epoch, bytes, or a duration in microseconds or in seconds.
# Ids (min, max, lsn, ssn, interval) and counts (events, regions, files) are not here:
# they print as they are.
TIME, SIZE, MICROSECONDS, SECONDS = "time", "size", "microseconds", "seconds"
FIELDS = {
    # partitions
    "created": TIME, "refreshed": TIME,
    # partitions, storages' stats, a pipeline tier's retention, the region cache
    "size": SIZE, "size_uncompressed": SIZE, "size_heap": SIZE,
    # PARTITION id DEBUG: the file's index
    "size_regions": SIZE, "size_regions_origin": SIZE, "size_total": SIZE,
    # a storage's options
    "refresh_wm": SIZE, "region_size": SIZE,
    # WAL, MEMORY (its limit is a bool, left alone), CACHE, and the variables
    "rotate_wm": SIZE, "wal_rotate_wm": SIZE, "page_size": SIZE, "mm_page_size": SIZE,
    "limit_wm": SIZE, "mm_limit_wm": SIZE, "cache": SIZE, "mm_cache": SIZE,
    "limit": SIZE, "bytes": SIZE, "hit_bytes": SIZE,
    # a variable, a cloud's option, a pipeline tier's retention
    "lock_timeout": MICROSECONDS, "removal_delay": MICROSECONDS, "duration": MICROSECONDS,
    # a cloud's deadlines (cloud/base.py)
    "connect_timeout": SECONDS, "read_timeout": SECONDS,
}
SIZE_UNITS = [(1024**4, "TiB"), (1024**3, "GiB"), (1024**2, "MiB"), (1024, "KiB")]
DURATION_UNITS = [(86_400_000_000, "day", "days"), (3_600_000_000, "hour", "hours"),
                  (60_000_000, "min", "min"), (1_000_000, "sec", "sec"), (1000, "ms", "ms")]


class Rows(NamedTuple):
    """Rows of flat cells, with every column any has. record: the rows are one record
    (of a map, or of variables), which a table shows as name/value rows."""
    columns: list[str]
    rows: list[dict]
    record: bool = False


def render(items: list[tuple[str, Any]], mode: str, width: int | None) -> str:
    """A SHOW's items, each (name, value), as text in mode table, csv or line: lines
    that end in a newline, or nothing. width: the columns a table may take (None: any)."""
    if len(items) > 1 and not any(isinstance(v, (dict, list)) for _, v in items):
        items = [("value", dict(items))]
    texts = []
    for name, value in items:
        rows = rows_of(value, name)
        if mode == "csv":
            texts.append(csv_text(rows))
        elif mode == "line":
            texts.append(line_text(rows))
        elif mode == "table":
            texts.append(table_text(rows, width) or line_text(rows))
        else:
            raise ValueError(f"output mode '{mode}': one of {', '.join(MODES[1:])} expected")
    return "\n".join(text for text in texts if text)


def terminal_width(out) -> int:
    """The columns a table printed to out may take: COLUMNS when set, else the width
    of the terminal out is, else DEFAULT_WIDTH."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    try:
        if out.isatty():
            return os.get_terminal_size(out.fileno()).columns
    except (AttributeError, OSError, ValueError):
        pass  # no file descriptor (a StringIO), or not a terminal after all
    return DEFAULT_WIDTH


# the rows of any SHOW
def rows_of(value: Any, name: str = "value") -> Rows:
    """The rows of a SHOW's value (name: the field a scalar is shown as)."""
    if isinstance(value, list):
        return _rows([flatten(v) if isinstance(v, dict) else {name: v} for v in value])
    if isinstance(value, dict) and _by_name(value):
        return _rows([{"name": key, **flatten(v)} for key, v in value.items()])
    if isinstance(value, dict):
        return _rows([flatten(value)], record=True)
    return _rows([{name: value}], record=True)


def flatten(value: dict, prefix: str = "") -> dict:
    """A map's fields with the fields of maps inside it, named by their path
    (stats.size); an empty map stays a value."""
    out = {}
    for key, v in value.items():
        if isinstance(v, dict) and v:
            out.update(flatten(v, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = v
    return out


def _by_name(value: dict) -> bool:
    """Whether a map holds records by name (STORAGES, CLOUDS) rather than being one
    record with groups of fields (a storage's config and stats have no field in
    common). Empty: no records."""
    inner = list(value.values())
    if not all(isinstance(v, dict) for v in inner):
        return False
    return len(inner) <= 1 or bool(set.intersection(*(set(v) for v in inner)))


def _rows(rows: list[dict], record: bool = False) -> Rows:
    return Rows(list(dict.fromkeys(k for row in rows for k in row)), rows, record)


# cells
def raw(value: Any) -> str:
    """A cell as csv has it: a string as it is, '' for null, else JSON text (numbers as
    they are, true and false, a list)."""
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


def human(name: str, value: Any) -> str:
    """A cell as a table and lines show it: a time, size or duration readable (FIELDS
    says which by the field's name), anything else as csv has it. A negative number is
    no quantity (a pipeline tier's -1: no limit): it stays as it is."""
    kind = FIELDS.get(name.rsplit(".", 1)[-1])
    if kind is None or not isinstance(value, int) or isinstance(value, bool) or value < 0:
        return raw(value)
    if kind == TIME:
        return time_text(value)
    if kind == SIZE:
        return size_text(value)
    return duration_text(value * 1_000_000 if kind == SECONDS else value)


def time_text(microseconds: int) -> str:
    """Local time to the second, 2026-12-05 01:23:45; 0 (never happened): 'never'."""
    if microseconds == 0:
        return "never"
    try:
        moment = datetime.datetime.fromtimestamp(microseconds // 1_000_000)
    except (OverflowError, OSError, ValueError):
        return str(microseconds)  # past what the platform's clock can name
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def size_text(n: int) -> str:
    """Bytes in binary units, as the language takes them: 512 B, 128 KiB, 1.5 MiB."""
    for unit, symbol in SIZE_UNITS:
        if n >= unit:
            return f"{n // unit} {symbol}" if n % unit == 0 else f"{n / unit:.1f} {symbol}"
    return f"{n} B"


def duration_text(microseconds: int) -> str:
    """A duration in the largest unit it reaches: 1 hour, 15 sec, 1.5 min, 250 us."""
    for unit, one, many in DURATION_UNITS:
        if microseconds >= unit:
            if microseconds % unit:
                return f"{microseconds / unit:.1f} {many}"
            count = microseconds // unit
            return f"{count} {one if count == 1 else many}"
    return f"{microseconds} us"


# the modes
def csv_text(rows: Rows) -> str:
    """A header row, then a row per record: every field raw."""
    if not rows.columns:
        return ""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(rows.columns)
    writer.writerows([raw(row.get(c)) for c in rows.columns] for row in rows.rows)
    return text.getvalue()


def line_text(rows: Rows) -> str:
    """`name = value` per field a record has, names right-aligned, a blank line
    between records (sqlite3's .mode line)."""
    if not rows.columns:
        return ""
    pad = max(len(c) for c in rows.columns)
    return "\n".join("".join(f"{c:>{pad}} = {human(c, row[c])}\n" for c in rows.columns
                             if c in row) for row in rows.rows)


def table_text(rows: Rows, width: int | None) -> str | None:
    """Aligned columns as psql prints them, numbers to the right; a record as
    name/value rows. A table too wide for width breaks its column names after their
    `_` and `.` over several lines (size_ / uncompressed); None when it is still too
    wide."""
    if not rows.columns:
        return "(0 rows)\n"
    if rows.record:
        header = ["name", "value"]
        cells = [[c, human(c, v)] for c, v in rows.rows[0].items()]
        right = [False, False]
    else:
        header = rows.columns
        cells = [[human(c, row.get(c)) for c in header] for row in rows.rows]
        right = [all(_number(row.get(c)) for row in rows.rows if row.get(c) is not None)
                 for c in header]
    for names in ([[h] for h in header], [re.findall(r"[^_.]+[_.]?|[_.]", h) for h in header]):
        widths = [max(*map(len, pieces), *(len(line[i]) for line in cells))
                  for i, pieces in enumerate(names)]
        if width is None or sum(widths) + 3 * len(widths) - 1 <= width:
            break
    else:
        return None

    def line(texts: list[str]) -> str:
        return " " + " | ".join(t.rjust(w) if r else t.ljust(w)
                                for t, w, r in zip(texts, widths, right)).rstrip()

    tall = max(map(len, names))
    heads = [line([p[i] if i < len(p) else "" for p in names]) for i in range(tall)]
    rule = "+".join("-" * (w + 2) for w in widths)
    return "\n".join([*heads, rule, *map(line, cells)]) + "\n"


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
