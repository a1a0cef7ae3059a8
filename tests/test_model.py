"""A model test: random writes, deletes, refreshes, reopens and crashes against a dict."""
from __future__ import annotations

import os
import shutil
import signal
import tempfile

import numpy as np
from conftest import ALL, coordinator_pids
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

import monotone
from monotone import Event
from monotone.protocol import repo_id
from monotone.shm.segment import list_segments

INTERVAL = 16
IDS = st.integers(0, 4 * INTERVAL - 1)
KEYS = st.sampled_from([b"", b"a", b"b", b"ab", b"a\x00", b"\x00", b"\xff" * 3])
VALUES = st.binary(max_size=40)


class Repository(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.mkdtemp(prefix="monotone-model-")
        self.repo = os.path.join(self.tmp, "repo")
        self.model: dict[tuple[int, bytes], bytes] = {}
        self.db = None
        self._open(first=True)

    def _open(self, first: bool = False) -> None:
        db = monotone.Monotone()
        db.execute("SET workers TO 0")
        if first:
            db.execute(f"SET interval TO {INTERVAL}")
        db.open(self.repo)
        if first:  # many regions per partition file
            db.execute("ALTER STORAGE main SET (region_size 1KiB)")
        self.db = db

    def _apply(self, events) -> None:
        for ev in events:
            if ev.delete:
                self.model.pop((ev.id, ev.key), None)
            else:
                self.model[(ev.id, ev.key)] = ev.value

    def _expected(self, id_=0, key=b""):
        return [(i, k, v) for (i, k), v in sorted(self.model.items()) if (i, k) >= (id_, key)]

    # rules ---------------------------------------------------------------------------
    @rule(batch=st.lists(st.tuples(IDS, KEYS, VALUES, st.booleans()), min_size=1, max_size=10))
    def write(self, batch):
        events = [Event(id=i, key=k, value=v, delete=d) for i, k, v, d in batch]
        assert self.db.write(events) == [i for i, _, _, _ in batch]
        self._apply(events)

    @rule(batch=st.lists(st.tuples(IDS, KEYS, VALUES, st.booleans()), min_size=1, max_size=10))
    def write_batch(self, batch):
        ids = np.array([b[0] for b in batch], np.uint64)
        out = self.db.write_batch(ids=ids, keys=[b[1] for b in batch], values=[b[2] for b in batch],
                                  deletes=np.array([b[3] for b in batch]))
        assert out.tolist() == ids.tolist()
        self._apply([Event(id=i, key=k, value=v, delete=d) for i, k, v, d in batch])

    @rule(items=st.lists(st.tuples(IDS, KEYS), min_size=1, max_size=5))
    def delete(self, items):
        events = [Event(id=i, key=k, delete=True) for i, k in items]
        self.db.write(events)
        self._apply(events)

    @rule(values=st.lists(VALUES, min_size=1, max_size=3))
    def serial_write(self, values):
        events = [Event(value=v) for v in values]
        ids = self.db.write(events)
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
        self._apply([Event(id=i, value=ev.value) for i, ev in zip(ids, events)])

    @rule(part=st.integers(0, 4))
    def refresh_partition(self, part):
        self.db.execute(f"REFRESH PARTITION IF EXISTS {part * INTERVAL}")

    @rule()
    def refresh_all(self):
        self.db.execute(ALL)

    @rule(lo=st.integers(0, 4), width=st.integers(0, 2))
    def refresh_range(self, lo, width):
        self.db.execute(f"REFRESH PARTITIONS BETWEEN {lo * INTERVAL} AND {(lo + width) * INTERVAL}")

    @rule(crash=st.booleans())
    def restart(self, crash):
        """close and open again; or kill -9 the coordinator first (memory is gone, the
        WAL brings everything back)."""
        if crash:
            pids = coordinator_pids(self.repo)
            assert len(pids) == 1
            os.kill(pids[0], signal.SIGKILL)
        self.db.close()  # the coordinator was our child: close() reaps it
        self._open()

    @rule(id_=IDS, key=KEYS)
    def read_from(self, id_, key):
        with self.db.cursor(id=id_, key=key) as cur:
            got = [(e.id, e.key, e.value) for e in cur]
        assert got == self._expected(id_, key)

    @rule()
    def read_batches(self):
        got = []
        with self.db.cursor() as cur:
            for b in cur.batches():
                got += [(int(b.ids[i]), b.key(i), b.value(i)) for i in range(len(b))]
        assert got == self._expected()

    @invariant()
    def matches_model(self):
        if self.db is None:
            return
        with self.db.cursor() as cur:
            got = [(e.id, e.key, e.value) for e in cur]
        assert got == self._expected()

    def teardown(self):
        try:
            if self.db is not None:
                self.db.close()
            leaked = list_segments(repo_id(self.repo))
            pids = coordinator_pids(self.repo)
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
            for name in leaked:
                from monotone.shm.segment import unlink
                unlink(name)
            assert not leaked, f"shared memory left behind: {leaked}"
            assert not pids, f"coordinator left behind: {pids}"
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)


TestRepository = Repository.TestCase
TestRepository.settings = settings(max_examples=8, stateful_step_count=25, deadline=None)
