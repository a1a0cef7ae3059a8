"""A cursor reading a partition from the cloud while the partition changes:
its cloud copy dropped (the cursor goes on from the local copy of the same
file), or the partition rewritten (a clear error, never another file's data)."""
from __future__ import annotations

import pytest

from cloud.test_conformance import events, open_db, places, setup_cloud
from monotone.errors import MonotoneError

N = 600  # events of partition 0: dozens of 2 KiB regions


def _cold(repo, backend, cache=True, **options):
    db = open_db(repo)
    setup_cloud(db, backend, "region_size 2048, compression 'none'" +
                "".join(f", {k} {v}" for k, v in options.items()))
    db.write(events(0, N))
    db.execute("REFRESH PARTITION 0")
    db.close()
    return open_db(repo) if cache else open_db(repo, mm_cache=0)


def test_cursor_goes_on_when_the_cloud_copy_is_dropped(repo, backend):
    db = _cold(repo, backend)
    cursor = db.cursor()
    got = [next(iter(cursor)).id]
    db.execute("DOWNLOAD PARTITION 0")
    db.execute("DROP PARTITION 0 ON CLOUD")
    assert places(db) == {0: (True, False)}
    got += [e.id for e in cursor]
    assert got == list(range(N))
    cursor.close()
    db.close()


@pytest.mark.parametrize("cache", [False, True], ids=["no-cache", "cache"])
def test_cursor_over_a_rewritten_partition_says_so(repo, backend, cache):
    """Walking up, the whole small file was fetched ahead at once: the cursor reads
    the file it opened to its end, or says so, and never reads the new file through
    the old index. Walking down (a few regions fetched ahead) without a region cache,
    the cursor meets regions the old object no longer has: it says so. With one, the
    cursor walking up put the old file's regions there, and walking down reads them:
    the file it opened, to its end."""
    db = _cold(repo, backend, cache)
    down, up = db.cursor(reverse=True), db.cursor()
    first_down, first_up = next(iter(down)), next(iter(up))
    db.write(events(0, 10, b"new"))
    db.execute("REFRESH PARTITION 0")  # download, drop on cloud, merge, upload, drop local
    assert places(db) == {0: (False, True)}
    old = [(e.id, e.value) for e in events(0, N)]
    if cache:
        got = [(first_down.id, first_down.value)] + [(e.id, e.value) for e in down]
        assert got == old[::-1]
    else:
        with pytest.raises(MonotoneError, match="open a new cursor"):
            for _ in down:
                pass
    try:
        got = [(first_up.id, first_up.value)] + [(e.id, e.value) for e in up]
    except MonotoneError as e:
        assert "open a new cursor" in str(e)
    else:
        assert got == old
    assert first_down.id == N - 1
    down.close()
    up.close()
    with db.cursor() as fresh:
        assert [e.value for e in fresh][:10] == [e.value for e in events(0, 10, b"new")]
    db.close()
