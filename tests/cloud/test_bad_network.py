"""The cloud as a bad network: the fault proxy (faultproxy.py) in front of the real
S3 server, under the engine's cloud interface and under the engine itself.

ROWS is the interface's table: a fault, and what a cloud with short deadlines
(3 attempts, 1 s timeouts) must make of it: the object's bytes after as many
attempts as it takes, or, once the attempts are spent (or at once, for a
refusal), a CloudError naming the cloud and the object. A new fault is a row.

The engine's tests hold a transfer in a black hole and check what must not wait
for it: an open, other clients' local commands, close(), a cold read.
"""
from __future__ import annotations

import json
import logging
import random
import re
import subprocess
import threading
from dataclasses import dataclass
from typing import Callable

import pytest
from conftest import run_python
from readback import read_all

from cloud.clouds import ACCESS, SECRET, Backend
from cloud.faultproxy import BlackHole, FaultProxy, trickle
from cloud.test_cloud_crashes import settled, want
from cloud.test_conformance import STEP, events, name, open_db, places, setup_cloud
from monotone.cloud import CloudError, ObjectMissing
from monotone.cloud.s3 import S3Cloud
from monotone.errors import MonotoneError
from monotone.settings import CloudSettings

BUCKET, OBJECT = "bad-network", "object"
DATA = random.Random(5).randbytes(64 << 10)
DEADLINE = 60  # seconds anything here may take before the test calls it hung


# the interface, fault by fault ---------------------------------------------------------


@dataclass(frozen=True)
class Row:
    name: str
    fault: Callable[[FaultProxy], object]   # sets the proxy's rule
    attempts: int                           # GETs of the object the read makes
    error: str = ""                         # "": the read gets the bytes


def gets(count=None, *args, **params):
    """A rule for the GETs of the object only (the bucket's requests pass)."""
    def set_rule(fault):
        return lambda proxy: proxy.set(fault, *args, method="GET", path=f"/{OBJECT}",
                                       count=count, **params)
    return set_rule


ROWS = [
    Row("503 SlowDown twice", gets(2, 503)("status"), 3),
    Row("500 once", gets(1, 500)("status"), 2),
    Row("reset mid-body once", gets(1)("reset_mid_body"), 2),
    Row("truncated body once", gets(1)("truncate_body"), 2),
    Row("black hole once", gets(1)(BlackHole()), 2),
    Row("trickle once", gets(1)(trickle(512, 0.5)), 2),
    Row("503 SlowDown always", gets(None, 503)("status"), 3, "after 3 attempts"),
    Row("black hole always", gets()(BlackHole()), 3, "(after 3 attempts): ReadTimeout"),
    Row("403 is not retried", gets(None, 403, code="AccessDenied")("status"), 1,
        "GET 0+65536 failed: "),
]


@pytest.fixture
def objects(fault_proxy):
    """A cloud reached through the proxy, with short deadlines, and its object."""
    settings = CloudSettings("flaky", "s3", login=ACCESS, password=SECRET, url=fault_proxy.url,
                             connect_timeout=1, read_timeout=1, retries=2)
    cloud = S3Cloud(settings, BUCKET)
    cloud.attach()
    cloud.write(OBJECT, DATA)
    return cloud


def object_gets(proxy: FaultProxy) -> int:
    with proxy.lock:
        return sum(1 for s in proxy.log if s.method == "GET" and s.path.endswith(f"/{OBJECT}"))


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_a_fault_is_retried_within_bounds(fault_proxy, objects, row, caplog):
    row.fault(fault_proxy)
    caplog.set_level(logging.WARNING, "monotone")
    if not row.error:
        assert objects.read(OBJECT, 0, len(DATA)) == DATA
    else:
        with pytest.raises(CloudError) as failed:
            objects.read(OBJECT, 0, len(DATA))
        message = str(failed.value)
        assert row.error in message, message
        assert f"cloud 'flaky' (s3) {BUCKET}/{OBJECT}" in message
        assert SECRET not in message
    fault_proxy.release()
    assert object_gets(fault_proxy) == row.attempts
    # every failed attempt but the last said so, naming the cloud, object and attempt
    retried = [r.getMessage() for r in caplog.records if "attempt" in r.getMessage()]
    assert len(retried) == row.attempts - 1
    for n, line in enumerate(retried, 1):
        assert f"cloud flaky: GET 0+65536 {BUCKET}/{OBJECT}: attempt {n} of 3 failed" in line


def test_a_missing_object_is_not_retried(fault_proxy, objects):
    with pytest.raises(ObjectMissing, match=f"{BUCKET}/gone: GET 0\\+10: no such object"):
        objects.read("gone", 0, 10)
    with fault_proxy.lock:
        assert sum(1 for s in fault_proxy.log if s.path.endswith("/gone")) == 1


def test_a_silent_endpoint_fails_an_upload_within_its_deadline(fault_proxy, objects, tmp_path):
    fault_proxy.set(BlackHole(), method="PUT", path=f"/{OBJECT}2")
    local = tmp_path / "file"
    local.write_bytes(DATA)
    with pytest.raises(CloudError, match=f"{BUCKET}/{OBJECT}2: PUT failed \\(after 3 attempts"):
        objects.put(str(local), OBJECT + "2")
    fault_proxy.release()
    fault_proxy.clear()
    objects.put(str(local), OBJECT + "2")
    assert objects.read(OBJECT + "2") == DATA


# the engine ----------------------------------------------------------------------------


def proxied(proxy: FaultProxy, s3, options: str = "") -> Backend:
    return Backend("s3", f"type 's3', url '{proxy.url}', access_key '{ACCESS}', "
                         f"secret_key '{SECRET}'{', ' + options if options else ''}", s3)


CLIENT = r"""
import json, sys
import monotone
db = monotone.Monotone()
db.open(sys.argv[1])
out = []
for command in json.loads(sys.argv[2]):
    try:
        db.execute(command)
        out.append("ok")
    except monotone.MonotoneError as e:
        out.append(f"error: {e}")
db.close()
print(json.dumps(out))
"""


def another_client(repo: str, commands: list[str]) -> list[str]:
    """Run commands from another process; what each answered."""
    child = run_python(CLIENT, repo, json.dumps(commands), stdout=subprocess.PIPE, text=True)
    out, _ = child.communicate(timeout=DEADLINE)
    assert child.returncode == 0
    return json.loads(out)


def closed_within_deadline(db) -> None:
    closing = threading.Thread(target=db.close)
    closing.start()
    closing.join(DEADLINE)
    assert not closing.is_alive(), "close() waited on a hung transfer"


def test_nothing_local_waits_on_a_hung_upload(repo, s3, fault_proxy):
    """An upload held by a silent endpoint (read_timeout 600: it would hang ten
    minutes): another client's local commands answer meanwhile, a change that
    would take the cloud from under it is refused, close() cuts it short, and the
    next open uploads it."""
    backend = proxied(fault_proxy, s3, "read_timeout 600, retries 0")
    db = open_db(repo, workers_upload=2)
    uuid = setup_cloud(db, backend, "cloud_drop_local false")
    db.write(events(0, 100))
    fault_proxy.set("status", 403, code="AccessDenied", method="PUT", path=name(0), count=1)
    with pytest.raises(MonotoneError,
                       match=rf"{name(0)}\.[0-9a-f]{{16}}: PUT failed: .*Access Denied"):
        db.execute("REFRESH PARTITION 0")  # written, its upload refused: it stays local
    fault_proxy.set(BlackHole(), method="PUT", path=name(0))
    db.execute("UPLOAD PARTITION 0")  # scheduled: an upload worker takes it
    assert fault_proxy.wait(lambda p: p.held == 1, DEADLINE)

    answers = another_client(repo, [
        "CREATE STORAGE other", "ALTER STORAGE other SET (refresh_wm 1000000)",
        "SET wal_rotate_wm TO 200000000", "SHOW PARTITIONS", "CHECKPOINT", "DROP STORAGE other",
        "ALTER CLOUD c SET (url 'http://127.0.0.1:9')",
        "ALTER STORAGE t SET (cloud_drop_local true)",
    ])
    assert answers[:6] == ["ok"] * 6
    assert answers[6].startswith("error: storage 't': busy (") and "under way" in answers[6]
    assert answers[7] == "ok"
    assert fault_proxy.held == 1  # all of it answered while the upload still hung
    db.write(events(STEP, STEP + 10))
    db.execute(f"REFRESH PARTITION {STEP}")  # its upload goes by the other worker
    assert places(db)[STEP] == (False, True)

    closed_within_deadline(db)
    assert backend.objects(repo, uuid) == [name(STEP)]  # cut short: not there
    fault_proxy.release()
    fault_proxy.clear()
    db = open_db(repo)
    settled(repo, backend, uuid, db)  # SERVICE resumes the upload
    assert places(db) == {0: (False, True), STEP: (False, True)}
    assert read_all(db) == want(events(0, 100) + events(STEP, STEP + 10))
    db.close()


def test_an_open_answers_while_the_cloud_is_silent(repo, s3, fault_proxy):
    """The cloud answers no connection at all: an open (whose manifests are
    rewritten in the background) answers, local reads work, close() returns."""
    backend = proxied(fault_proxy, s3, "read_timeout 600, retries 0")
    db = open_db(repo)
    setup_cloud(db, backend, "cloud_drop_local false")
    db.write(events(0, 100))
    db.execute("REFRESH PARTITION 0")
    db.close()
    fault_proxy.set(BlackHole(read="none"))
    db = open_db(repo, workers_upload=1)
    assert fault_proxy.wait(lambda p: p.held >= 1, DEADLINE)  # the manifest's rewrite
    assert read_all(db) == want(events(0, 100))  # the local copy
    closed_within_deadline(db)
    fault_proxy.release()


def test_a_cold_read_through_a_silent_endpoint_fails_naming_the_cloud_and_object(
        repo, s3, fault_proxy):
    backend = proxied(fault_proxy, s3, "connect_timeout 1, read_timeout 1, retries 1")
    db = open_db(repo)
    uuid = setup_cloud(db, backend)
    db.write(events(0, 100))
    db.execute("REFRESH PARTITION 0")
    assert places(db) == {0: (False, True)}
    fault_proxy.set(BlackHole(), method="GET", path=name(0))
    with pytest.raises(CloudError) as failed:
        read_all(db)
    message = str(failed.value)
    assert re.search(rf"cloud 'c' \(s3\) {uuid}/{name(0)}\.[0-9a-f]{{16}}: GET", message)
    assert "after 2 attempts" in message and SECRET not in message
    fault_proxy.release()
    fault_proxy.clear()
    assert read_all(db) == want(events(0, 100))
    db.close()


def test_the_deadlines_are_settings_of_the_cloud(repo):
    db = open_db(repo)
    db.execute("CREATE CLOUD c (type 'mock', read_timeout 7)")
    shown = json.loads(db.execute("SHOW CLOUD c"))
    assert (shown["connect_timeout"], shown["read_timeout"], shown["retries"]) == (5, 7, 3)
    with pytest.raises(MonotoneError, match="retries 21 is out of range"):
        db.execute("ALTER CLOUD c SET (retries 21)")
    db.close()
    db = open_db(repo)
    assert json.loads(db.execute("SHOW CLOUD c"))["read_timeout"] == 7
    db.close()

