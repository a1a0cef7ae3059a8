"""The victim: a process of a repository's owner using it as users do.

Run as its own process (`python victim.py SPEC`) so that a hang meets the
test's deadline and a crash cannot take pytest with it. It opens the
repository, creates a cloud holding a secret and an encrypted storage on it,
writes events that carry a marker, refreshes them (their partition goes to the
cloud, its key to config.json), reads every event back and closes. It prints
one JSON line: what happened, the events it read that it never wrote, and the
storage's key (for the test to look for in what a stranger could read).
"""
from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__)))))

import monotone  # noqa: E402

ALL = "BETWEEN 0 AND 18446744073709551615"


def session(spec: dict) -> dict:
    db = monotone.Monotone()
    try:
        db.execute("SET workers TO 0")
        db.execute(f"SET lock_timeout TO {spec.get('lock_timeout', '5sec')}")
        if not spec["strict"]:
            db.execute("SET strict_modes TO false")
        db.open(spec["repo"])
        db.execute(f"CREATE CLOUD IF NOT EXISTS c (type 'mock', secret_key '{spec['secret']}')")
        db.execute("CREATE STORAGE IF NOT EXISTS s (cloud 'c', encryption 'aes')")
        db.execute("ALTER PIPELINE SET s")
        marker = spec["marker"].encode()
        db.write([monotone.Event(value=marker + b"-%d" % i) for i in range(spec["events"])])
        if spec.get("refresh", True):
            db.execute(f"REFRESH PARTITIONS {ALL}")
        with db.cursor() as cur:
            read = [ev.value for ev in cur]
        return {"outcome": "ok", "events": len(read),
                "foreign": [v.decode("latin-1") for v in read if not v.startswith(marker)]}
    except monotone.MonotoneError as e:
        return {"outcome": "error", "type": type(e).__name__, "message": str(e)}
    finally:
        try:
            db.close()
        except monotone.MonotoneError as e:
            print(f"close failed: {e}", file=sys.stderr)


def storage_key(repo: str) -> str:
    try:
        with open(os.path.join(repo, "config.json")) as f:
            storages = json.load(f).get("storages", [])
    except (OSError, ValueError):
        return ""
    return next((s.get("encryption_key", "") for s in storages if s.get("name") == "s"), "")


def main() -> int:
    spec = json.loads(sys.argv[1])
    out = session(spec)
    out["key"] = storage_key(spec["repo"])
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
