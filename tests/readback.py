"""Reading a whole repository back: every event from a cursor, as tuples."""
from __future__ import annotations


def read_all(db, id=None, key=None):
    with db.cursor(id=id, key=key) as cur:
        return [(e.id, e.key, e.value) for e in cur]


def read_batches(db, id=None, key=None):
    """(ids, keys, values) of everything via Cursor.batches()."""
    out = []
    with db.cursor(id=id, key=key) as cur:
        for b in cur.batches():
            for i in range(len(b)):
                out.append((int(b.ids[i]), b.key(i), b.value(i)))
    return out
