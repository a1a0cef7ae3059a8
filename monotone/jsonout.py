"""JSON text of SHOW results, laid out as the original prints it.

Maps put one entry per line, indented two spaces a level; arrays stay on one
line, a map inside an array opening at the array's own depth:
    [{
      "min": 0,
      ...
    }, {
      ...
    }]
"""
from __future__ import annotations

import json
from typing import Any


def size_text(n: int) -> str:
    """Bytes for a log line: 512 B, 1.5 KiB, 40.0 MiB, 1.2 GiB."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def pretty(value: Any, depth: int = 0) -> str:
    if isinstance(value, dict):
        if not value:
            return "{\n" + "  " * depth + "}"
        pad = "  " * (depth + 1)
        items = ",\n".join(f"{pad}{json.dumps(str(k))}: {pretty(v, depth + 1)}"
                           for k, v in value.items())
        return "{\n" + items + "\n" + "  " * depth + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(pretty(v, depth) for v in value) + "]"
    return json.dumps(value)
