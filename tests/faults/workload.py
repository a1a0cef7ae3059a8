"""The workload of the fault campaigns: batches whose content can be recomputed.

Every writer w follows a plan decided by (seed, w): batch k is either a put of
events with key b"w.k" (ids spread so that many batches cross partition
bounds, values derived from (w, k, id)) or a delete of an earlier put of the
same writer. Keys make every batch's events distinct, so a check can tell of
each batch whether it is whole, partial or absent, and whether every value is
the one that was written.

Run as a script, it is a writer process: it writes its plan and prints
"ack k" after each write returns, so whoever kills it knows what was
acknowledged.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass

import numpy as np

INTERVAL = 1000        # partitions of 1000 ids: batches cross bounds often
SPAN = 40_000          # ids fall in [0, SPAN): about 40 partitions
MAX_EVENTS = 300
DELETE_SHARE = 0.08


@dataclass(frozen=True)
class Batch:
    writer: int
    seq: int
    ids: np.ndarray            # sorted, unique
    target: int | None = None  # a delete of that earlier batch of the writer

    @property
    def key(self) -> bytes:
        return b"%d.%d" % (self.writer, self.seq)


def values_of(writer: int, seq: int, ids: np.ndarray) -> list[bytes]:
    """The value of each event: its id, writer and batch, then a filler of varying length."""
    head = np.empty((len(ids), 2), np.uint64)
    head[:, 0] = ids
    head[:, 1] = (writer << 32) | seq
    heads = head.view(np.uint8).reshape(-1, 16)
    fill = (ids % 37).tolist()
    byte = bytes([seq & 0xFF])
    return [h.tobytes() + byte * f for h, f in zip(heads, fill)]


def plan(seed: int, writer: int, max_events: int = MAX_EVENTS, deletes: bool = True):
    """The writer's batches, in order (an endless generator)."""
    puts: list[Batch] = []
    seq = 0
    while True:
        rng = np.random.default_rng([seed, writer, seq])
        live = [b for b in puts if b.target is None]
        if deletes and live and rng.random() < DELETE_SHARE:
            victim = live[int(rng.integers(0, len(live)))]
            puts.remove(victim)
            batch = Batch(writer, seq, victim.ids, target=victim.seq)
        else:
            n = int(rng.integers(1, max_events))
            stride = int(rng.integers(1, 8)) if rng.random() < 0.8 else int(rng.integers(8, 40))
            stride = max(1, min(stride, (SPAN - 1) // n))
            width = n * stride
            base = int(rng.integers(0, SPAN - width))
            low, high = -(-width // INTERVAL), (SPAN - width) // INTERVAL
            if rng.random() < 0.5 and width > 1 and low <= high:  # across a bound, surely
                bound = int(rng.integers(low, high + 1)) * INTERVAL
                base = bound - int(rng.integers(1, width))
            batch = Batch(writer, seq, base + stride * np.arange(n, dtype=np.uint64))
            puts.append(batch)
            if len(puts) > 64:
                puts.pop(0)  # only recent batches are deleted
        yield batch
        seq += 1


class Plans:
    """Batches of every writer by number, computed once."""

    def __init__(self, seed: int, max_events: int = MAX_EVENTS) -> None:
        self.seed, self.max_events = seed, max_events
        self.made: dict[int, list[Batch]] = {}
        self.gens: dict[int, object] = {}

    def batch(self, writer: int, seq: int) -> Batch:
        made = self.made.setdefault(writer, [])
        gen = self.gens.setdefault(writer, plan(self.seed, writer, self.max_events))
        while len(made) <= seq:
            made.append(next(gen))
        return made[seq]


def write(db, batch: Batch) -> None:
    """One batch as one atomic write."""
    n = len(batch.ids)
    if batch.target is not None:
        key = b"%d.%d" % (batch.writer, batch.target)
        db.write_batch(ids=batch.ids, keys=[key] * n, deletes=np.ones(n, bool))
    else:
        db.write_batch(ids=batch.ids, keys=[batch.key] * n,
                       values=values_of(batch.writer, batch.seq, batch.ids))


# checking -------------------------------------------------------------------------------


class Broken(AssertionError):
    """What a repository returned breaks a promise."""


def read_everything(db):
    """(ids, keys, values) of every event, through the vectorized cursor."""
    ids, keys, values = [], [], []
    with db.cursor() as cur:
        for b in cur.batches():
            n = len(b)
            ids.append(np.array(b.ids))
            ko, kd = b.key_offsets, b.key_data
            vo, vd = b.value_offsets, b.value_data
            keys.extend(bytes(kd[int(ko[i]):int(ko[i + 1])]) for i in range(n))
            values.extend(bytes(vd[int(vo[i]):int(vo[i + 1])]) for i in range(n))
    ids = np.concatenate(ids) if ids else np.zeros(0, np.uint64)
    return ids, keys, values


def check_snapshot(ids, keys, values, plans: Plans) -> int:
    """What one cursor saw: every batch whole, every value as written (a reader's
    check while writers run). Returns the number of batches seen."""
    found: dict[bytes, list[int]] = {}
    for id_, key in zip(ids.tolist(), keys):
        found.setdefault(key, []).append(id_)
    for key, got in found.items():
        w, k = (int(x) for x in key.split(b"."))
        batch = plans.batch(w, k)
        if len(got) != len(batch.ids) or got != batch.ids.tolist():
            raise Broken(f"a reader saw batch {key!r} in part: {len(got)} of "
                         f"{len(batch.ids)} events")
    for id_, key, value in zip(ids.tolist(), keys, values):
        w, k = (int(x) for x in key.split(b"."))
        if value != values_of(w, k, np.array([id_], np.uint64))[0]:
            raise Broken(f"a reader saw a wrong value at ({id_}, {key!r})")
    return len(found)


def check(db, seed: int, acked: dict[int, int], max_events: int = MAX_EVENTS) -> dict:
    """Every acknowledged batch whole and present (unless an acknowledged delete
    removed it), the batch in flight of each writer whole or absent, nothing
    else, every value as written. acked: writer -> batches acknowledged.
    Returns counts of what was found; raises Broken."""
    ids, keys, values = read_everything(db)
    order_ok = all(
        (int(ids[i]), keys[i]) < (int(ids[i + 1]), keys[i + 1]) for i in range(len(ids) - 1))
    if not order_ok:
        raise Broken("events out of (id, key) order or repeated")
    found: dict[bytes, set[int]] = {}
    for id_, key, value in zip(ids.tolist(), keys, values):
        try:
            w, k = (int(x) for x in key.split(b"."))
        except ValueError:
            raise Broken(f"event {id_} has a key no batch wrote: {key!r}") from None
        want = values_of(w, k, np.array([id_], np.uint64))[0]
        if value != want:
            raise Broken(f"event ({id_}, {key!r}) has a wrong value")
        found.setdefault(key, set()).add(id_)
    stats = {"events": len(ids), "batches": 0, "in_flight_present": 0}
    expected_keys = set()
    for w, n_acked in acked.items():
        state: dict[int, Batch] = {}
        deleted_by: dict[int, int] = {}
        for batch in plan(seed, w, max_events):
            if batch.seq > n_acked:
                break
            if batch.target is None:
                state[batch.seq] = batch
            else:
                deleted_by[batch.target] = batch.seq
        for seq, batch in state.items():
            expected_keys.add(batch.key)
            got = found.get(batch.key, set())
            whole = len(got) == len(batch.ids) and got == set(batch.ids.tolist())
            if got and not whole:
                raise Broken(f"batch {batch.key!r} is partial: {len(got)} of {len(batch.ids)} "
                             f"events")
            killer = deleted_by.get(seq)
            must = seq < n_acked and (killer is None)
            must_not = killer is not None and killer < n_acked
            if must and not whole:
                raise Broken(f"acknowledged batch {batch.key!r} is lost")
            if must_not and got:
                raise Broken(f"batch {batch.key!r} survives its acknowledged delete "
                             f"({w}.{killer})")
            if whole:
                stats["batches"] += 1
                if seq == n_acked or killer == n_acked:
                    stats["in_flight_present"] += 1
    extra = set(found) - expected_keys
    if extra:
        raise Broken(f"events of batches never written: {sorted(extra)[:3]}")
    return stats


def write_main(repo: str, writer: int, seed: int, settings: dict, limit: int,
               max_events: int, refreshes: float) -> int:
    """Write the plan, acknowledging each batch; retry a batch the coordinator died
    under (the same batch again is the same events). After a share of the batches,
    refresh the partition of its first event (so partitions of one batch come to
    hold files of different ages)."""
    import random

    import monotone
    rng = random.Random(seed * 1000 + writer)
    db = monotone.Monotone()
    for name, value in settings.items():
        db.execute(f"SET {name} TO {value}")
    for attempt in range(20):
        try:
            db.open(repo)
            break
        except monotone.MonotoneError:
            if attempt == 19:
                raise  # a coordinator killed while starting: start another
    out = sys.stdout
    for batch in plan(seed, writer, max_events):
        if batch.seq == limit:
            break
        for attempt in range(20):
            try:
                write(db, batch)
                break
            except monotone.CoordinatorError:
                if attempt == 19:
                    raise
        out.write(f"ack {batch.seq}\n")
        out.flush()
        if rng.random() < refreshes:
            try:
                db.execute(f"REFRESH PARTITION IF EXISTS {int(batch.ids[0])}")
            except monotone.MonotoneError:
                pass  # a worker or the coordinator died under it: the data is intact
    db.close()
    out.write("closed\n")
    out.flush()
    return 0


def read_main(repo: str, seed: int, max_events: int) -> int:
    """Scan again and again until stdin closes, checking each snapshot is whole."""
    import threading

    import monotone
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    plans = Plans(seed, max_events)
    db = monotone.Monotone()
    db.open(repo)
    scans = 0
    while not stop.is_set():
        try:
            ids, keys, values = read_everything(db)
        except monotone.CoordinatorError:
            continue  # the coordinator died under the scan: a clear error; scan again
        check_snapshot(ids, keys, values, plans)
        scans += 1
    db.close()
    sys.stdout.write(f"scans {scans}\n")
    return 0


def main() -> int:
    if sys.argv[1] == "read":
        return read_main(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    repo, writer, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    settings = json.loads(sys.argv[4])
    limit = int(sys.argv[5]) if len(sys.argv) > 5 else -1
    max_events = int(sys.argv[6]) if len(sys.argv) > 6 else MAX_EVENTS
    refreshes = float(sys.argv[7]) if len(sys.argv) > 7 else 0.0
    return write_main(repo, writer, seed, settings, limit, max_events, refreshes)


if __name__ == "__main__":
    sys.exit(main())
