"""What a reader takes (partition.fileformat's limits) the engine never writes: a
value past MAX_VALUE is refused at write, a region_size past MAX_REGION_SIZE at
CREATE or ALTER STORAGE, and a file that would pass them is not written (its
refresh fails, as any failed refresh does, with its events still in memory and the
WAL)."""
from __future__ import annotations

import numpy as np
import pytest
from event_rows import make_rows

from monotone import Event, client
from monotone.errors import MonotoneError
from monotone.format.rows import MAX_VALUE, sort_dedup
from monotone.partition import fileformat
from monotone.partition.writer import Writer


def test_a_value_past_the_limit_is_refused_at_write(db, monkeypatch):
    monkeypatch.setattr(client, "MAX_VALUE", 1000)
    with pytest.raises(MonotoneError, match="value of 1001 bytes is longer than 1000"):
        db.write([Event(id=1, value=b"v" * 1001)])
    with pytest.raises(MonotoneError, match="value of 1001 bytes is longer than 1000"):
        db.write_batch(ids=np.array([2, 3], np.uint64), values=[b"v", b"v" * 1001])
    offsets, data = np.array([0, 1, 1002], np.uint64), np.zeros(1002, np.uint8)
    with pytest.raises(MonotoneError, match="a value is longer than 1000"):
        db.write_batch(ids=np.array([2, 3], np.uint64), values=(offsets, data))
    db.write([Event(id=4, value=b"v" * 1000)])  # at the limit: taken
    assert [e.id for e in db.cursor()] == [4]


def test_region_size_past_the_limit_is_refused(db):
    with pytest.raises(MonotoneError, match="region_size .* is above"):
        db.execute(f"CREATE STORAGE big (region_size {fileformat.MAX_REGION_SIZE + 1})")
    db.execute(f"CREATE STORAGE big (region_size {fileformat.MAX_REGION_SIZE})")
    with pytest.raises(MonotoneError, match="region_size .* is above"):
        db.execute(f"ALTER STORAGE big SET (region_size {2**40})")
    with pytest.raises(MonotoneError, match="invalid region_size value"):
        db.execute("ALTER STORAGE big SET (region_size 0)")


def test_the_limits_hold_one_region_of_the_largest_event():
    assert fileformat.MAX_REGION_SIZE + MAX_VALUE + 255 + 64 < fileformat.MAX_REGION


def test_a_file_past_the_region_count_is_not_written(tmp_path, monkeypatch):
    monkeypatch.setattr(fileformat, "MAX_REGIONS", 4)
    rows = sort_dedup(make_rows([(i, b"", b"x" * 100, 0) for i in range(100)]))
    w = Writer(str(tmp_path / "f"), "none", 0, 100)  # a region per event or two
    with pytest.raises(MonotoneError, match="at most 4 regions"):
        w.add(rows)
        w.finish({"min": 0, "max": 99}, sync=False)
    w.abort()

