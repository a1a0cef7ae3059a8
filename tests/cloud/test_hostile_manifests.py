"""A manifest is read from a bucket anyone with write access could have written:
whatever it says, monotone.offline (the Dask reader's planner) answers with a
MonotoneError naming it, in bounded memory, and never reads an object outside
the manifest's own place.

Each case is one row: a name and what it does to a well-formed manifest (a
dict, edited in place) or to its bytes. A new hostile manifest is one more row.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from event_rows import as_list, make_rows

from monotone import offline
from monotone.cloud import manifest
from monotone.errors import MonotoneError
from monotone.format.rows import sort_dedup
from monotone.partition.cloud_file import object_name
from monotone.partition.fileformat import FOOTER, decode_footer
from monotone.partition.files import file_name
from monotone.partition.writer import Writer


def _set(path: str, value):
    """A row's edit: manifest[path...] = value (path: keys and indexes, dotted)."""
    def edit(doc: dict) -> None:
        *head, last = path.split(".")
        node = doc
        for step in head:
            node = node[int(step)] if step.isdigit() else node[step]
        node[int(last) if last.isdigit() else last] = value
    return edit


def _raw(data: bytes):
    return lambda doc: data


def _many_entries(doc: dict) -> None:
    entry = doc["partitions"][0]
    doc["partitions"] = [dict(entry, min=i, max=i, object=f"{file_name(i)}.{'0' * 16}",
                              size=2**40, regions=2**30 // 64) for i in range(64)]


HOSTILE = [
    ("not json", _raw(b"{not json")),
    ("not an object", _raw(b"[1, 2, 3]")),
    ("deep nesting", _raw(b"[" * 100_000 + b"]" * 100_000)),
    ("another format", _set("format", "parquet-manifest")),
    ("a newer version", _set("version", 99)),
    ("version not a number", _set("version", "1")),
    ("partitions not a list", _set("partitions", {"0": 1})),
    ("an entry not an object", _set("partitions.0", 7)),
    ("min missing type", _set("partitions.0.min", "0")),
    ("min a float", _set("partitions.0.min", 1.5)),
    ("min a bool", _set("partitions.0.min", True)),
    ("min negative", _set("partitions.0.min", -1)),
    ("max past 2**64", _set("partitions.0.max", 2**70)),
    ("min above max", _set("partitions.0.min", 2**63)),
    ("regions 10**12", _set("partitions.0.regions", 10**12)),
    ("size past 2**64", _set("partitions.0.size", 10**30)),
    ("object climbs out", _set("partitions.0.object", "../other/00000000000000000000")),
    ("object absolute", _set("partitions.0.object", "/etc/passwd")),
    ("object a url", _set("partitions.0.object", "s3://elsewhere/00000000000000000000")),
    ("object of another partition", _set("partitions.0.object", f"{file_name(5)}.{'a' * 16}")),
    ("object without its digest", _set("partitions.0.object", file_name(0))),
    ("object's digest not hex", _set("partitions.0.object", f"{file_name(0)}.{'z' * 16}")),
    ("object's digest a path", _set("partitions.0.object", f"{file_name(0)}.{'a' * 13}/..")),
    ("pointer to a path", _raw(json.dumps({"format": manifest.POINTER, "version": 1,
                                           "generation": 1,
                                           "manifest": "../other/manifest.json"}).encode())),
    ("pointer to no version", _raw(json.dumps({"format": manifest.POINTER, "version": 1,
                                               "generation": 7}).encode())),
    ("object not a string", _set("partitions.0.object", 0)),
    ("storage not a string", _set("storage", ["x"])),
    ("regions in all past the bound", _many_entries),
]


@pytest.fixture
def place(tmp_path):
    """A storage's place with one real partition file and its manifest: (url, rows)."""
    store = tmp_path / "bucket" / "storage"
    store.mkdir(parents=True)
    rows = sort_dedup(make_rows([(i, b"", b"v%d" % i, 0) for i in range(2000)]))
    w = Writer(str(store / "file"), "lz4", 0, 4096)
    w.add(rows)
    meta = w.finish({"min": 0, "max": 9999, "lsn": 1}, sync=False)
    data = (store / "file").read_bytes()
    offset = decode_footer(data[-FOOTER.size:], "file")[0]
    name = object_name(0, data[offset:])
    (store / "file").rename(store / name)
    entry = {"min": 0, "max": 9999, "object": name, "size": len(data),
             "events": meta["events"], "regions": meta["regions"], "lsn": 1, "created": 0,
             "refreshes": 1}

    class Storage:
        name, uuid, compression, encryption, crc = "s", "u", "lz4", "", True

    (store / manifest.NAME).write_bytes(manifest.encode(Storage, [entry]))
    # another repository's file, where a path that climbs out would reach
    other = tmp_path / "bucket" / "other"
    other.mkdir()
    (other / name).write_bytes(data)
    return f"file://{store / manifest.NAME}", rows


def _write(url: str, edit) -> None:
    path = url[len("file://"):]
    doc = json.loads(open(path, "rb").read())
    out = edit(doc)
    data = out if isinstance(out, bytes) else json.dumps(doc).encode()
    with open(path, "wb") as f:
        f.write(data)


def test_the_well_formed_manifest_reads(place):
    url, rows = place
    parts = offline.from_manifest(url)
    assert [(p.min, p.max) for p in parts] == [(0, 9999)]
    assert as_list(offline.read_part(parts[0])) == as_list(rows)


@pytest.mark.parametrize("name, edit", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_a_hostile_manifest_is_refused_by_name(place, name, edit):
    url, _ = place
    _write(url, edit)
    with pytest.raises(MonotoneError) as e:
        offline.from_manifest(url)
    assert url in str(e.value)


# what the manifest says of an object is checked when the object is read
LIES = [
    ("size far past the object (sparse)", {"size": 20 * 2**30}),
    ("size short of the object", {"size": 4096}),
    ("fewer regions than the file", {"regions": 1}),
]


@pytest.mark.parametrize("name, lie", LIES, ids=[row[0] for row in LIES])
def test_a_lie_about_an_object_is_caught_when_it_is_read(place, name, lie):
    url, rows = place
    _write(url, lambda doc: doc["partitions"][0].update(lie))
    parts = offline.from_manifest(url)
    try:
        got = [r for part in offline.split(parts[0]) for r in as_list(offline.read_part(part))]
    except MonotoneError:
        return  # refused: the file is not what the manifest says
    assert got == as_list(rows)  # or read as the file truly is, never more


def test_a_manifest_bigger_than_the_bound_is_refused_unread(place, monkeypatch):
    url, _ = place
    monkeypatch.setattr(manifest, "MAX_BYTES", 1024)
    _write(url, lambda doc: doc.update(padding="x" * 4096))
    with pytest.raises(MonotoneError, match="refused"):
        offline.from_manifest(url)


def test_hostile_manifests_stay_in_bounded_memory(place):
    """The worst rows again in a fresh process, its peak memory measured."""
    url, _ = place
    script = textwrap.dedent(f"""
        import json, resource, sys
        from monotone import offline
        from monotone.errors import MonotoneError
        path = {url[len("file://"):]!r}
        doc = json.load(open(path))
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        refused = 0
        for regions, size in ((10**12, 2**40), (2**24, 2**40), (2**23, 2**40)):
            doc["partitions"][0].update(regions=regions, size=size)
            json.dump(doc, open(path, "w"))
            try:
                parts = offline.from_manifest("file://" + path)
                [p for part in parts for p in offline.split(part)]
            except MonotoneError:
                refused += 1
        grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base
        print(json.dumps({{"refused": refused, "grown_kib": grown}}))
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120, env={**os.environ})
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout.strip().splitlines()[-1])
    # 10**12 regions by the manifest's bound; the others when the plan reads the object's
    # index to split it (the object is not the size the manifest says)
    assert out["refused"] == 3
    assert out["grown_kib"] < 500 * 1024, out
