"""Self-tests of the fault proxy (faultproxy.py) in front of the S3 server: what
a client sees of each fault, with boto3 (retries off, 1 s timeouts) and with
plain http.client where the bytes on the wire matter."""
from __future__ import annotations

import http.client
import random
import socket
import threading

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ReadTimeoutError,
    ResponseStreamingError,
)

from cloud.clouds import ACCESS, SECRET
from cloud.faultproxy import FAULTS, BlackHole, FaultProxy, Status, trickle

BUCKET = "proxied"
DATA = random.Random(7).randbytes(300_000)


def _client(url: str, read_timeout: float = 10.0):
    return boto3.client("s3", endpoint_url=url, aws_access_key_id=ACCESS,
                        aws_secret_access_key=SECRET, region_name="us-east-1",
                        config=Config(connect_timeout=1, read_timeout=read_timeout,
                                      retries={"total_max_attempts": 1}))


@pytest.fixture
def connect(fault_proxy):
    """connect(read_timeout=10): a boto3 client through the proxy, closed after the
    test (a timeout of 1 s where one is expected, more where none is)."""
    made = []

    def make(read_timeout: float = 10.0):
        made.append(_client(fault_proxy.url, read_timeout))
        return made[-1]
    yield make
    for client in made:
        client.close()


@pytest.fixture
def filled(s3):
    """BUCKET holding `obj` (DATA, readable without signing) and `small`, made
    straight on the S3 server, so the proxy has seen nothing yet."""
    direct = _client(s3.url)
    direct.create_bucket(Bucket=BUCKET)
    direct.put_object(Bucket=BUCKET, Key="obj", Body=DATA, ACL="public-read")
    direct.put_object(Bucket=BUCKET, Key="small", Body=b"small object", ACL="public-read")
    direct.close()


def _get(client, key: str = "obj", **kw) -> bytes:
    return client.get_object(Bucket=BUCKET, Key=key, **kw)["Body"].read()


def _raw_get(proxy: FaultProxy, path: str = f"/{BUCKET}/obj"):
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=5)
    conn.request("GET", path)
    return conn, conn.getresponse()


def test_the_registry_names_every_fault():
    assert {"pass", "black_hole", "delay", "reset_mid_body", "truncate_body", "status",
            "reset", "reset_mid_request"} <= set(FAULTS)


def test_pass_round_trips_objects_byte_exact_on_one_connection(fault_proxy, connect):
    client = connect()
    client.create_bucket(Bucket=BUCKET)
    client.put_object(Bucket=BUCKET, Key="obj", Body=DATA)
    assert _get(client) == DATA
    ranged = client.get_object(Bucket=BUCKET, Key="obj", Range="bytes=1000-4999")
    assert ranged["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert ranged["ContentRange"] == f"bytes 1000-4999/{len(DATA)}"
    assert ranged["Body"].read() == DATA[1000:5000]
    assert client.head_object(Bucket=BUCKET, Key="obj")["ContentLength"] == len(DATA)
    assert fault_proxy.seen == {"PUT": 2, "GET": 2, "HEAD": 1}
    assert not fault_proxy.applied and {s.fault for s in fault_proxy.log} == {"pass"}
    assert fault_proxy.connections == 1  # kept alive, though the server closes each
    assert [s.headers["Expect"] for s in fault_proxy.log if s.method == "PUT"] == \
        [None, "100-continue"]


def test_pass_serves_s3fs_puts_multipart_uploads_and_ranged_reads(fault_proxy, filled):
    import s3fs
    fs = s3fs.S3FileSystem(key=ACCESS, secret=SECRET, endpoint_url=fault_proxy.url,
                           skip_instance_cache=True, use_listings_cache=False,
                           config_kwargs={"connect_timeout": 1, "read_timeout": 10,
                                          "retries": {"max_attempts": 1}})
    try:
        fs.pipe_file(f"{BUCKET}/piped", DATA)
        big = random.Random(8).randbytes(6 * 2**20)
        with fs.open(f"{BUCKET}/parts", "wb", block_size=5 * 2**20) as f:
            f.write(big[:5 * 2**20])  # a part of its own
            f.write(big[5 * 2**20:])
        assert fs.cat_file(f"{BUCKET}/piped", start=10, end=70_000) == DATA[10:70_000]
        assert fs.cat_file(f"{BUCKET}/parts") == big
    finally:
        s3fs.S3FileSystem.close_session(fs.loop, fs._s3creator)
    puts = [s for s in fault_proxy.log if s.method == "PUT"]
    assert len(puts) == 3 and sum("partNumber=" in s.path for s in puts) == 2
    # s3fs (aiobotocore) sends Content-Length bodies, each after a '100 Continue'
    assert all(s.headers["Expect"] == "100-continue" and "Transfer-Encoding" not in s.headers
               and int(s.headers["Content-Length"]) > 0 for s in puts)
    assert fault_proxy.seen["POST"] == 2  # the multipart upload's start and end


def test_pass_forwards_a_chunked_request_body(fault_proxy, connect, filled):
    conn = http.client.HTTPConnection("127.0.0.1", fault_proxy.port, timeout=5)
    conn.request("PUT", f"/{BUCKET}/chunked", body=iter([DATA[:1000], DATA[1000:2500]]),
                 headers={"Transfer-Encoding": "chunked"}, encode_chunked=True)
    reply = conn.getresponse()
    assert reply.status == 200, reply.read()
    reply.read()
    conn.close()
    assert fault_proxy.log[0].headers["Transfer-Encoding"] == "chunked"
    assert _get(connect(), "chunked") == DATA[:2500]


def test_black_hole_reads_the_request_and_never_answers_until_released(
        fault_proxy, connect, filled):
    rule = fault_proxy.set("black_hole")
    with pytest.raises(ReadTimeoutError):
        _get(connect(read_timeout=1))
    assert fault_proxy.seen == {"GET": 1} and rule.applied == 1
    assert fault_proxy.wait(lambda p: p.held == 1)
    fault_proxy.release()
    assert fault_proxy.wait(lambda p: p.held == 0)
    fault_proxy.clear()
    assert _get(connect()) == DATA


def test_black_hole_that_reads_nothing(fault_proxy, connect, filled):
    fault_proxy.set(BlackHole(read="none"), count=1)
    with pytest.raises(ReadTimeoutError):
        _get(connect(read_timeout=1))
    assert fault_proxy.wait(lambda p: p.held == 1)
    assert fault_proxy.seen == {} and fault_proxy.applied == {"black_hole": 1}
    # released with after="pass", a held connection is served as if nothing happened
    fault_proxy.set(BlackHole(read="none", after="pass"), count=1)
    client, got = connect(), []
    thread = threading.Thread(target=lambda: got.append(_get(client, "small")))
    thread.start()
    assert fault_proxy.wait(lambda p: p.held == 2)
    fault_proxy.release()
    thread.join(10)
    assert not thread.is_alive() and got == [b"small object"]
    assert fault_proxy.seen == {"GET": 1}


def test_delay_answers_late_and_trickles_the_body(fault_proxy, connect, filled):
    impatient = connect(read_timeout=1)
    fault_proxy.set("delay", 30, method="GET", count=1)
    with pytest.raises(ReadTimeoutError):
        _get(impatient)
    fault_proxy.set(trickle(30_000, 0.001), method="GET", count=1)
    assert _get(connect()) == DATA
    fault_proxy.set(trickle(1000, 30), method="GET", count=1)
    conn, reply = _raw_get(fault_proxy)  # the head and 1000 bytes come, then nothing
    assert reply.getheader("Content-Length") == str(len(DATA))
    assert reply.read(1000) == DATA[:1000]
    conn.sock.settimeout(0.5)
    with pytest.raises(TimeoutError):
        reply.read(1)
    conn.close()
    assert fault_proxy.applied == {"delay": 3}


def test_reset_mid_body_sends_part_then_resets(fault_proxy, connect, filled):
    fault_proxy.set("reset_mid_body", method="GET", keep=100_000)
    conn, reply = _raw_get(fault_proxy)
    assert reply.status == 200 and reply.getheader("Content-Length") == str(len(DATA))
    assert reply.read(100_000) == DATA[:100_000]
    with pytest.raises(ConnectionResetError):
        reply.read()
    conn.close()
    with pytest.raises(ResponseStreamingError, match="Connection reset"):
        _get(connect())


def test_truncate_body_sends_part_then_closes(fault_proxy, connect, filled):
    fault_proxy.set("truncate_body", method="GET", keep=1234)
    conn, reply = _raw_get(fault_proxy)
    assert reply.status == 200 and reply.getheader("Content-Length") == str(len(DATA))
    with pytest.raises(http.client.IncompleteRead) as cut:
        reply.read()
    assert cut.value.partial == DATA[:1234]
    conn.close()
    with pytest.raises(ResponseStreamingError, match="IncompleteRead"):
        _get(connect())


def test_a_burst_of_503_then_pass(fault_proxy, s3, connect, filled):
    client = connect()
    rule = fault_proxy.set("status", 503, count=2)
    for _ in range(2):
        with pytest.raises(ClientError) as failed:
            _get(client)
        assert failed.value.response["Error"]["Code"] == "SlowDown"
        assert failed.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert _get(client) == DATA
    assert rule.applied == 2 and rule.remaining == 0 and not fault_proxy.rules
    assert fault_proxy.applied == {"status": 2} and fault_proxy.connections == 1
    assert s3.count("GET", f"/{BUCKET}/obj") == 1  # the errors never reached the server


def test_500_for_puts_only(fault_proxy, s3, connect, filled):
    client = connect()
    fault_proxy.set(Status(500), method="PUT")
    with pytest.raises(ClientError, match="InternalError"):
        client.put_object(Bucket=BUCKET, Key="new", Body=b"new")
    assert _get(client) == DATA
    assert s3.count("PUT", f"/{BUCKET}/new") == 0
    assert fault_proxy.seen == {"PUT": 1, "GET": 1} and fault_proxy.applied == {"status": 1}


def test_filters_apply_only_to_matching_requests(fault_proxy, connect, filled):
    client = connect()
    rule = fault_proxy.set("status", 503, method="GET", path=f"/{BUCKET}/obj", count=1)
    client.head_bucket(Bucket=BUCKET)
    client.head_object(Bucket=BUCKET, Key="obj")
    assert _get(client, "small") == b"small object"
    client.put_object(Bucket=BUCKET, Key="obj", Body=DATA)
    with pytest.raises(ClientError, match="SlowDown"):
        _get(client)
    assert _get(client) == DATA  # the count is spent
    assert [(s.method, s.fault) for s in fault_proxy.log] == [
        ("HEAD", "pass"), ("HEAD", "pass"), ("GET", "pass"), ("PUT", "pass"),
        ("GET", "status"), ("GET", "pass")]
    assert rule.applied == 1
    # rules in order, the first matching one applies
    fault_proxy.set("status", 500, method=["PUT", "DELETE"])
    fault_proxy.add("status", 503)
    with pytest.raises(ClientError, match="InternalError"):
        client.delete_object(Bucket=BUCKET, Key="obj")
    with pytest.raises(ClientError, match="SlowDown"):
        _get(client)
    # an error to a HEAD (no body) leaves the connection usable
    fault_proxy.set("status", 503, method="HEAD", count=1)
    with pytest.raises(ClientError, match="503"):
        client.head_object(Bucket=BUCKET, Key="obj")
    assert _get(client, "small") == b"small object" and fault_proxy.connections == 1
    with pytest.raises(ValueError):
        fault_proxy.set(BlackHole(read="none"), method="GET")
    with pytest.raises(ValueError):
        fault_proxy.set("status", count=0)


def test_reset_answers_nothing(fault_proxy, connect, filled):
    client = connect()
    fault_proxy.set("reset", method="GET", count=1)
    with pytest.raises(ConnectionClosedError):
        _get(client)
    # forwarded first: the server did it, the answer was lost
    fault_proxy.set("reset", forward=True, method="PUT", count=1)
    with pytest.raises(ConnectionClosedError):
        client.put_object(Bucket=BUCKET, Key="done", Body=b"done")
    assert _get(client, "done") == b"done"
    # an upload cut off halfway
    fault_proxy.set("reset_mid_request", method="PUT", count=1)
    with pytest.raises(ConnectionClosedError):
        client.put_object(Bucket=BUCKET, Key="cut", Body=DATA * 10)
    with pytest.raises(ClientError, match="NoSuchKey"):
        _get(client, "cut")
    assert fault_proxy.applied == {"reset": 2, "reset_mid_request": 1}


def test_stop_closes_every_connection_and_ends_every_thread(s3, filled):
    proxy = FaultProxy(s3.url)
    held = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    idle = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=5)
    try:
        proxy.set("black_hole", path="/held")
        held.sendall(f"GET /{BUCKET}/held HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert proxy.wait(lambda p: p.held == 1)
        idle.request("GET", f"/{BUCKET}/small")
        assert idle.getresponse().read() == b"small object"
        proxy.set(trickle(1000, 60))
        slow, reply = _raw_get(proxy)
        assert reply.read(1000) == DATA[:1000]
        proxy.stop()
        assert not [t for t in threading.enumerate()
                    if t.name.split("-")[:2] == ["faultproxy", str(proxy.port)]]
        assert held.recv(10) == b""
        assert idle.sock.recv(10) == b""
        with pytest.raises(http.client.IncompleteRead):
            reply.read()
        slow.close()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    finally:
        proxy.stop()
        held.close()
        idle.close()
    assert not proxy.errors
