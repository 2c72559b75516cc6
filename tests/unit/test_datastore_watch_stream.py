"""The watch's HTTP exchange without etcd: chunked JSON lines split anywhere,
etcd's cancellations and errors, and the end of the stream."""

from __future__ import annotations

import base64
import json

import pytest

from pybgp.datastore.etcdv3 import WatchStream
from pybgp.errors import CompactedError, DatastoreError, DatastoreUnavailable


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def line(result: dict) -> bytes:
    return json.dumps({"result": result}).encode() + b"\n"


def put(key: str, value: str, rev: int) -> dict:
    return {"type": "PUT", "kv": {"key": b64(key), "value": b64(value), "mod_revision": str(rev)}}


def chunked(*parts: bytes, end: bool = False) -> bytes:
    out = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts)
    return out + (b"0\r\n\r\n" if end else b"")


HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n")


def feed_split(stream: WatchStream, data: bytes, size: int) -> list:
    batches = []
    for i in range(0, len(data), size):
        batches += stream.feed(data[i:i + size])
    return batches


def test_request_is_a_watch_from_the_revision_with_the_headers() -> None:
    req = WatchStream("/calico/x/", 42, {"Authorization": "tok"}).request()
    head, _, body = req.partition(b"\r\n\r\n")
    assert head.startswith(b"POST /v3/watch HTTP/1.1\r\n")
    assert b"\r\nAuthorization: tok" in head and b"Content-Length: %d" % len(body) in head
    create = json.loads(body)["create_request"]
    assert base64.b64decode(create["key"]) == b"/calico/x/"
    assert base64.b64decode(create["range_end"]) == b"/calico/x0"
    assert create["start_revision"] == "42"


@pytest.mark.parametrize("size", [1, 2, 7, 64, 100000])
def test_events_come_out_whole_however_the_bytes_are_split(size: int) -> None:
    created = line({"created": True})
    first = line({"events": [put("/a", "1", 5), put("/b", "2", 5)]})
    second = line({"events": [{"type": "DELETE", "kv": {"key": b64("/a"), "mod_revision": "6"}}]})
    # a JSON line may span chunks, and a chunk may hold parts of two lines
    data = HEAD + chunked(created, first[:10], first[10:] + second[:3], second[3:])
    batches = feed_split(WatchStream("/", 5, {}), data, size)
    assert [[(e.type, e.kv.key, e.kv.value, e.kv.mod_revision) for e in b] for b in batches] == [
        [("put", "/a", b"1", 5), ("put", "/b", b"2", 5)], [("delete", "/a", b"", 6)]]


def test_the_end_of_the_stream_comes_after_its_last_events() -> None:
    stream = WatchStream("/", 1, {})
    batches = stream.feed(HEAD + chunked(line({"events": [put("/a", "1", 2)]}), end=True))
    assert len(batches) == 1
    with pytest.raises(DatastoreUnavailable, match="closed the watch"):
        stream.feed(b"")


def test_a_compacted_start_revision_is_a_compacted_error() -> None:
    stream = WatchStream("/", 3, {})
    cancel = line({"canceled": True, "compact_revision": "9"})
    with pytest.raises(CompactedError) as err:
        feed_split(stream, HEAD + chunked(line({"created": True}), cancel), 5)
    assert err.value.compact_revision == 9


def test_a_cancelled_watch_says_why() -> None:
    with pytest.raises(DatastoreUnavailable, match="cancelled the watch: no leader"):
        WatchStream("/", 3, {}).feed(
            HEAD + chunked(line({"canceled": True, "cancel_reason": "no leader"})))


@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_an_http_error_is_etcd_s_error(framing: str) -> None:
    body = json.dumps({"code": 16, "message": "invalid auth token"}).encode()
    if framing == "length":
        data = b"HTTP/1.1 401 Unauthorized\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    else:
        data = (b"HTTP/1.1 401 Unauthorized\r\nTransfer-Encoding: chunked\r\n\r\n"
                + chunked(body, end=True))
    stream = WatchStream("/", 1, {})
    assert stream.feed(data[:-5]) == []  # not whole yet
    with pytest.raises(DatastoreError, match="invalid auth token"):
        stream.feed(data[-5:])


@pytest.mark.parametrize("data", [
    b"SSH-2.0-OpenSSH\r\n\r\n",
    HEAD + b"zz\r\n",
    HEAD + chunked(b"{not json\n"),
])
def test_what_is_not_etcd_s_gateway_is_unavailable(data: bytes) -> None:
    with pytest.raises(DatastoreUnavailable):
        WatchStream("/", 1, {}).feed(data)
