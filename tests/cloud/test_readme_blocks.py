"""Every Python and language block of README.md runs as printed, so the reference
cannot drift from the code.

The only changes made to a block before it runs are the addresses it names
(an S3 endpoint, a Dask scheduler, manifest URLs), replaced by real ones made
here; each one must still be in the block, so a block rewritten around them
fails here rather than running something else."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from conftest import ROOT

from cloud.clouds import ACCESS, SECRET
from monotone.ddl import parse
from monotone.ddl.lexer import split_statements

README = os.path.join(ROOT, "README.md")


def blocks(language: str) -> list[str]:
    with open(README, encoding="utf-8") as f:
        text = f.read()
    return re.findall(rf"^```{language}\n(.*?)^```$", text, re.M | re.S)


def replaced(block: str, addresses: dict[str, str]) -> str:
    for old, new in addresses.items():
        assert old in block, f"README block no longer names {old!r}:\n{block}"
        block = block.replace(old, new)
    return block


def run(argv: list[str], cwd, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run(argv, cwd=cwd, input=stdin, env=env, capture_output=True,
                          text=True, timeout=300)


def test_the_readme_has_the_blocks_this_test_runs():
    assert len(blocks("sql")) == 1
    assert len(blocks("python")) == 2


def test_every_line_of_the_language_block_runs_as_pasted(tmp_path, s3):
    """Each line is one command (comments and all), and the lines run in order
    from a new repository, as a script given to `monotone REPO`: a script runs a
    line as the prompt runs a line pasted into it."""
    block = replaced(blocks("sql")[0], {"http://127.0.0.1:9000": s3.url,
                                        "access_key 'k', secret_key 's'":
                                        f"access_key '{ACCESS}', secret_key '{SECRET}'"})
    lines = [line for line in block.splitlines() if line.strip()]
    for line in lines:
        assert len(split_statements(line)) == 1, f"not one command: {line}"
        parse(line)
    done = run([sys.executable, "-m", "monotone.scripts.cli", str(tmp_path / "repo")],
               tmp_path, stdin=block)
    assert done.returncode == 0, done.stderr
    assert "error" not in done.stderr, done.stderr
    # each SHOW printed one JSON document, in order
    decoder, text, shown = json.JSONDecoder(), done.stdout.strip(), []
    while text:
        value, end = decoder.raw_decode(text)
        shown.append(value)
        text = text[end:].lstrip()
    shows = [line for line in lines if line.upper().startswith("SHOW")]
    assert len(shown) == len(shows), done.stdout
    assert shown[0] == [1_000_000, 0]  # SHOW interval, ssn
    assert shown[shows.index("SHOW STORAGES")].keys() == {"main", "hot", "cold"}


def test_the_first_python_block_runs(tmp_path):
    done = run([sys.executable, "-c", blocks("python")[0]], tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("0 b'first'\n1 b'second'\n"), done.stdout[:300]
    assert os.path.exists(tmp_path / "repo" / "config.json")


def test_the_python_block_of_several_machines_runs(tmp_path, s3):
    """Two repositories upload to S3, a third is read from its directory, and the
    block's frame over the three holds exactly their events in its range."""
    pytest.importorskip("distributed")
    import monotone
    urls, want = [], []
    cloud = f"type 's3', url '{s3.url}', access_key '{ACCESS}', secret_key '{SECRET}'"
    for name, first in (("a", 10_000_000), ("b", 10_500_000), ("local", 10_900_000)):
        db = monotone.Monotone()
        db.execute("SET interval TO 1000000")
        db.open(str(tmp_path / name))
        ids = [first + i for i in range(50)] + [first - 2_000_000]  # one outside the range
        db.write([monotone.Event(id=i, value=b"%d" % i) for i in ids])
        if name != "local":
            db.execute(f"CREATE CLOUD c ({cloud}, removal_delay 0)")
            db.execute("CREATE STORAGE t (cloud 'c')")
            db.execute("ALTER PIPELINE SET t")
        db.execute("REFRESH PARTITIONS BETWEEN 0 AND 18446744073709551615")
        if name != "local":
            for p in db.show("PARTITIONS"):
                db.execute(f"MOVE PARTITION {p['min']} INTO t")
            urls.append(db.show("STORAGE t")["manifest"])
        want += ids[:-1]
        db.close()
    block = replaced(blocks("python")[1], {
        'Client("scheduler:8786")': "Client(LocalCluster(n_workers=1, processes=False, "
                                    "dashboard_address=None))",
        'import Client': "import Client, LocalCluster",
        '{"key": "…", "secret": "…"}': repr({"key": ACCESS, "secret": SECRET,
                                              "endpoint_url": s3.url}),
        '"s3://events/host-a/manifest.json"': repr(urls[0]),
        '"s3://events/host-b/manifest.json"': repr(urls[1]),
        '"/data/local"': repr(str(tmp_path / "local")),
    })
    block += "\nprint(list(recent.index), list(recent['value']))\n"
    done = run([sys.executable, "-c", block], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    ids, values = done.stdout.strip().splitlines()[-1].split("] [")
    assert [int(i) for i in re.findall(r"\d+", ids)] == sorted(want)
    assert values.count("b'") == len(want)
