"""S3 failing under the engine: server errors (5xx) from a proxy in front of the
real server, and the server gone. Each fails its command with a clear error
naming the cloud, loses nothing, and the same command works once S3 does."""
from __future__ import annotations

import socket

import pytest
from readback import read_all

from cloud.clouds import ACCESS, SECRET, Backend
from cloud.test_cloud_crashes import settled, want
from cloud.test_conformance import STEP, events, open_db, places, setup_cloud
from monotone.errors import MonotoneError


def test_server_errors_fail_the_command_and_a_retry_works(repo, s3, fault_proxy):
    proxy = fault_proxy
    # no retries: a command fails at the first error (test_bad_network retries)
    backend = Backend("s3", f"type 's3', url '{proxy.url}', access_key '{ACCESS}', "
                            f"secret_key '{SECRET}', retries 0", s3)
    db = open_db(repo)
    uuid = setup_cloud(db, backend)
    db.write(events(0, STEP))
    proxy.set("status", 500, method="PUT")
    with pytest.raises(MonotoneError, match="cloud 'c'") as failed:
        db.execute("REFRESH PARTITION 0")
    assert proxy.applied["status"] and SECRET not in str(failed.value)
    assert places(db) == {0: (True, False)}
    settled(repo, backend, uuid, db)
    proxy.clear()
    db.execute("UPLOAD PARTITION 0")
    db.execute("DROP PARTITION 0 ON STORAGE")
    assert places(db) == {0: (False, True)}
    proxy.set("status", 500, method="GET")
    with pytest.raises(MonotoneError, match="cloud 'c'"):
        read_all(db)
    with pytest.raises(MonotoneError, match="cloud 'c'"):
        db.execute("DOWNLOAD PARTITION 0")
    settled(repo, backend, uuid, db)
    proxy.clear()
    assert read_all(db) == want(events(0, STEP))
    db.execute("DOWNLOAD PARTITION 0")
    assert places(db) == {0: (True, True)}
    db.close()


def _closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def test_s3_server_down(repo, s3):
    """Uploads and cold reads fail with a clear error while the server is away;
    nothing is lost, and the same commands work once it is back."""
    backend = Backend("s3", f"type 's3', url '{s3.url}', access_key 'k', secret_key "
                            "'hidden-secret', retries 0", s3)
    db = open_db(repo)
    uuid = setup_cloud(db, backend)
    db.write(events(0, 2 * STEP))
    db.execute(f"REFRESH PARTITION {STEP}")
    db.execute(f"ALTER CLOUD c SET (url 'http://127.0.0.1:{_closed_port()}')")
    with pytest.raises(MonotoneError, match="cloud 'c'") as failed:
        db.execute("REFRESH PARTITION 0")
    assert "hidden-secret" not in str(failed.value)
    with pytest.raises(MonotoneError, match="cloud 'c'"):
        read_all(db)  # partition STEP lives in the cloud only
    assert places(db) == {0: (True, False), STEP: (False, True)}
    db.execute(f"ALTER CLOUD c SET (url '{s3.url}')")
    db.execute("UPLOAD PARTITION 0")
    assert read_all(db) == want(events(0, 2 * STEP))
    settled(repo, backend, uuid, db)
    db.close()


def test_drop_on_cloud_while_the_cloud_is_away_is_finished_after_a_reopen(repo, s3):
    backend = Backend("s3", f"type 's3', url '{s3.url}', access_key '{ACCESS}', "
                            f"secret_key '{SECRET}'", s3)
    db = open_db(repo)
    uuid = setup_cloud(db, backend, "cloud_drop_local false")
    db.write(events(0, 10))
    db.execute("REFRESH PARTITION 0")
    db.execute(f"ALTER CLOUD c SET (url 'http://127.0.0.1:{_closed_port()}')")
    with pytest.raises(MonotoneError, match="cloud .c."):
        db.execute("DROP PARTITION 0 ON CLOUD")
    assert places(db) == {0: (True, False)}
    assert backend.objects(repo, uuid) == ["00000000000000000000"]  # reported, kept
    db.execute(f"ALTER CLOUD c SET (url '{s3.url}')")
    db.close()
    db = open_db(repo)
    settled(repo, backend, uuid, db)
    assert read_all(db) == want(events(0, 10))
    db.close()
