"""A small, synchronous etcd v3 client over etcd's JSON gRPC gateway.

Why not a library (see docs/decisions.md): ``etcd3`` 0.12 cannot import with
protobuf >= 4; ``aetcd`` has no TLS and one endpoint only; ``etcd3gw`` has no
user/password auth and costs ~270 ms of imports per CNI call. This module uses
only the standard library (≈15 ms to import), speaks to every etcd >= 3.4 and
supports what Calico's ``etcd_*`` settings support: several endpoints with
fail-over, TLS with a CA and a client certificate, user/password auth.

It implements ``pybgp.datastore.kv.KVStore``. It owns one keep-alive HTTP
connection per client (plus one per open watch). It never retries a write
whose outcome is unknown: a transaction that failed in flight raises
``DatastoreUnavailable`` and the caller decides (CAS makes a re-run safe).
"""

from __future__ import annotations

import base64
import builtins
import http.client
import json
import socket
import urllib.parse
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from pybgp.datastore.kv import KV, Check, Delete, Op, Put, WatchEvent
from pybgp.datastore.settings import EtcdConfig
from pybgp.errors import (
    AlreadyExistsError,
    CompactedError,
    ConflictError,
    DatastoreError,
    DatastoreUnavailable,
)

# gRPC status codes the gateway returns in its JSON errors.
_GRPC_OUT_OF_RANGE = 11  # "required revision has been compacted"
_GRPC_UNAVAILABLE = 14
_GRPC_UNAUTHENTICATED = 16


def _b64(data: str | bytes) -> str:
    if isinstance(data, str):
        data = data.encode()
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str | None) -> bytes:
    return base64.b64decode(text) if text else b""


def prefix_end(prefix: str) -> bytes:
    """The range_end that selects every key starting with ``prefix``."""
    raw = bytearray(prefix.encode())
    while raw:
        if raw[-1] < 0xFF:
            raw[-1] += 1
            return bytes(raw)
        raw.pop()
    return b"\0"


def _kv(obj: dict[str, Any]) -> KV:
    return KV(
        key=_unb64(obj.get("key")).decode(),
        value=_unb64(obj.get("value")),
        mod_revision=int(obj.get("mod_revision", 0)),
        create_revision=int(obj.get("create_revision", 0)),
        version=int(obj.get("version", 0)),
    )


class _UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a unix socket (etcd's ``unix://`` listener)."""

    def __init__(self, path: str, timeout: float | None):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.unix_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class _Endpoint:
    def __init__(self, url: str, cfg: EtcdConfig):
        parsed = urllib.parse.urlsplit(url if "://" in url else f"http://{url}")
        self.url = url
        self.scheme = parsed.scheme
        self.cfg = cfg
        if parsed.scheme == "unix" and (parsed.path or parsed.netloc):
            # unix:///abs/path or unix://relative (etcd's own spelling)
            self.host, self.port = parsed.netloc + parsed.path, 0
            return
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise DatastoreError(
                f"invalid etcd endpoint {url!r}: expected http(s)://HOST:PORT or unix://PATH"
            )
        self.host = parsed.hostname
        self.port = parsed.port or 2379

    def connect(self, timeout: float | None) -> http.client.HTTPConnection:
        if self.scheme == "unix":
            return _UnixHTTPConnection(self.host, timeout)
        if self.scheme == "https":
            import ssl  # only here: a process whose etcd is not TLS never loads it

            ctx = ssl.create_default_context(cafile=self.cfg.ca_cert_file)
            if self.cfg.cert_file:
                ctx.load_cert_chain(self.cfg.cert_file, self.cfg.key_file)
            return http.client.HTTPSConnection(self.host, self.port, timeout=timeout, context=ctx)
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)


class EtcdClient:
    """``KVStore`` backed by real etcd. Not thread-safe: one client per thread."""

    def __init__(self, config: EtcdConfig | None = None):
        self.config = config or EtcdConfig()
        if not self.config.endpoints:
            raise DatastoreError("no etcd endpoints configured")
        self._endpoints = [_Endpoint(u, self.config) for u in self.config.endpoints]
        self._current = 0
        self._conn: http.client.HTTPConnection | None = None
        self._token: str | None = None

    # -- transport ---------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self._token:
            headers["Authorization"] = self._token
        return headers

    def _post(self, conn: http.client.HTTPConnection, path: str, body: dict[str, Any]) -> Any:
        conn.request("POST", path, json.dumps(body), self._headers())
        resp = conn.getresponse()
        data = resp.read()
        try:
            payload = json.loads(data) if data else {}
        except ValueError as exc:
            raise DatastoreError(f"etcd answered {path} with non-JSON: {data[:200]!r}") from exc
        if resp.status != 200:
            if not isinstance(payload, dict) or "code" not in payload:
                ep = self._endpoints[self._current].url
                raise DatastoreError(
                    f"{ep} answered {path} with HTTP {resp.status}: is it an etcd v3 endpoint?"
                )
            raise _gateway_error(payload, resp.status)
        return payload

    def _authenticate(self, conn: http.client.HTTPConnection) -> None:
        self._token = None
        reply = self._post(
            conn,
            "/v3/auth/authenticate",
            {"name": self.config.username, "password": self.config.password},
        )
        self._token = reply.get("token")

    def _open(self) -> http.client.HTTPConnection:
        """A connected connection to the first endpoint that answers."""
        errors = []
        n = len(self._endpoints)
        for i in range(n):
            ep = self._endpoints[(self._current + i) % n]
            conn = ep.connect(self.config.timeout)
            try:
                conn.connect()
                if self.config.username:
                    self._authenticate(conn)
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                errors.append(f"{ep.url}: {_reason(exc)}")
                continue
            self._current = (self._current + i) % n
            return conn
        raise DatastoreUnavailable("etcd unreachable (" + "; ".join(errors) + ")")

    def request(self, path: str, body: dict[str, Any], *, idempotent: bool = True) -> Any:
        """POST ``body`` to ``path``; fail over to other endpoints on connection errors.

        A non-idempotent request (a write) is not re-sent after it may have
        reached the server.
        """
        for attempt in range(2):
            if self._conn is None:
                self._conn = self._open()
            try:
                return self._post(self._conn, path, body)
            except _Unauthenticated:
                if not self.config.username or attempt:
                    raise DatastoreError("etcd refused the credentials") from None
                self._authenticate(self._conn)
            except (OSError, http.client.HTTPException) as exc:
                url = self._endpoints[self._current].url
                self._drop()
                self._current = (self._current + 1) % len(self._endpoints)
                if not idempotent or attempt:
                    raise DatastoreUnavailable(
                        f"etcd connection to {url} lost: {_reason(exc)}") from exc
        raise DatastoreUnavailable("etcd request failed")  # pragma: no cover

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def close(self) -> None:
        self._drop()

    # -- KVStore -------------------------------------------------------------

    def get(self, key: str) -> KV | None:
        reply = self.request("/v3/kv/range", {"key": _b64(key)})
        kvs = reply.get("kvs") or []
        return _kv(kvs[0]) if kvs else None

    def list(self, prefix: str) -> tuple[builtins.list[KV], int]:
        reply = self.request(
            "/v3/kv/range",
            {"key": _b64(prefix), "range_end": _b64(prefix_end(prefix))},
        )
        revision = int(reply["header"]["revision"])
        return [_kv(o) for o in reply.get("kvs") or []], revision

    def revision(self) -> int:
        reply = self.request("/v3/kv/range", {"key": _b64("\0"), "count_only": True})
        return int(reply["header"]["revision"])

    def txn(self, checks: Sequence[Check], ops: Sequence[Op]) -> int:
        body = {
            "compare": [
                {
                    "key": _b64(c.key),
                    "target": "MOD",
                    "result": "EQUAL",
                    "mod_revision": str(c.mod_revision),
                }
                for c in checks
            ],
            "success": [_op(op) for op in ops],
            # On failure read back every checked key to name the culprit.
            "failure": [{"request_range": {"key": _b64(c.key)}} for c in checks],
        }
        reply = self.request("/v3/kv/txn", body, idempotent=False)
        if reply.get("succeeded"):
            return int(reply["header"]["revision"])
        for check, resp in zip(checks, reply.get("responses") or [], strict=False):
            kvs = (resp.get("response_range") or {}).get("kvs") or []
            actual = int(kvs[0]["mod_revision"]) if kvs else 0
            if actual != check.mod_revision:
                if check.mod_revision == 0:
                    raise AlreadyExistsError(f"{check.key} already exists", key=check.key)
                what = "changed" if kvs else "deleted"
                raise ConflictError(f"{check.key} was {what} by someone else", key=check.key)
        raise ConflictError("transaction conflict")

    def read_many(
        self, keys: Sequence[str], prefixes: Sequence[str]
    ) -> tuple[dict[str, KV | None], dict[str, builtins.list[KV]], int]:
        """Several keys and prefixes read at one revision, in one round trip."""
        ops = [{"request_range": {"key": _b64(k)}} for k in keys]
        ops += [{"request_range": {"key": _b64(p), "range_end": _b64(prefix_end(p))}}
                for p in prefixes]
        reply = self.request("/v3/kv/txn", {"compare": [], "success": ops})
        results = [[_kv(o) for o in (r.get("response_range") or {}).get("kvs") or []]
                   for r in reply.get("responses") or []]
        got: dict[str, KV | None] = {
            k: (r[0] if r else None) for k, r in zip(keys, results[:len(keys)], strict=True)}
        listed = dict(zip(prefixes, results[len(keys):], strict=True))
        return got, listed, int(reply["header"]["revision"])

    def compact(self, revision: int) -> None:
        self.request("/v3/kv/compaction", {"revision": str(revision), "physical": True})

    def watch(self, prefix: str, start_revision: int) -> Iterable[builtins.list[WatchEvent]]:
        return EtcdWatch(self, prefix, start_revision)

    def open_watch(self, prefix: str, start_revision: int) -> tuple[socket.socket, WatchStream]:
        """A watch's own connection (blocking, no timeout: a watch may stay
        idle for ever) to the current endpoint, with its request sent."""
        ep = self._endpoints[self._current]
        stream = WatchStream(prefix, start_revision, self._headers())
        conn = ep.connect(None)
        try:
            conn.connect()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise DatastoreUnavailable(f"etcd watch lost: {_reason(exc)}") from exc
        sock, conn.sock = conn.sock, None  # the socket is the caller's now
        try:
            sock.sendall(stream.request())
        except OSError as exc:
            sock.close()
            raise DatastoreUnavailable(f"etcd watch lost: {_reason(exc)}") from exc
        return sock, stream


class WatchStream:
    """One watch's HTTP exchange, sans-IO: :meth:`request` is what to send;
    :meth:`feed` takes what came back (any split) and returns the complete
    batches of events in it. Raises what the watch ended with: the gateway's
    error, :class:`CompactedError`, or :class:`DatastoreUnavailable` when
    etcd cancelled or closed it. Used by :class:`EtcdWatch` (a thread
    blocking on the socket) and by an event loop reading the socket itself
    (:mod:`pybgp.datastore.loop_syncer`)."""

    def __init__(self, prefix: str, start_revision: int, headers: dict[str, str]):
        self.start_revision = start_revision
        body = json.dumps({
            "create_request": {
                "key": _b64(prefix),
                "range_end": _b64(prefix_end(prefix)),
                "start_revision": str(start_revision),
                "prev_kv": True,
            }
        }).encode()
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self._request = (f"POST /v3/watch HTTP/1.1\r\nHost: etcd\r\n{head}"
                         f"Content-Length: {len(body)}\r\n\r\n").encode() + body
        self._head: bytes | None = b""  # None once the status line and headers are read
        self._status = 0
        self._chunked = False
        self._length = -1
        self._raw = b""  # received, not yet de-chunked
        self._body = b""  # de-chunked, not yet a whole line
        self._ended = False

    def request(self) -> bytes:
        return self._request

    def feed(self, data: bytes) -> list[list[WatchEvent]]:
        try:
            return self._feed(data)
        except ValueError as exc:  # not HTTP chunks, not JSON: not etcd's gateway
            raise DatastoreUnavailable(f"etcd watch: bad message: {exc}") from exc

    def _feed(self, data: bytes) -> list[list[WatchEvent]]:
        if self._head is not None:
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                return []
            head, data = self._head[:end].decode("latin-1"), self._head[end + 4:]
            self._head = None
            status_line, *fields = head.split("\r\n")
            parts = status_line.split(" ", 2)
            if len(parts) < 2 or not parts[1].isdigit():
                raise DatastoreUnavailable(f"etcd watch: bad HTTP status line {status_line!r}")
            self._status = int(parts[1])
            headers = dict(f.lower().replace(" ", "").split(":", 1) for f in fields if ":" in f)
            self._chunked = headers.get("transfer-encoding") == "chunked"
            self._length = int(headers.get("content-length", -1))
        self._dechunk(data)
        if self._status != 200:  # an error: its JSON body, once whole
            if self._chunked and not self._ended or len(self._body) < self._length:
                return []
            try:
                payload = json.loads(self._body) if self._body.strip() else {}
            except ValueError:
                payload = {}
            raise _gateway_error(payload, self._status)
        batches = []
        *lines, self._body = self._body.split(b"\n")
        for line in lines:
            if line.strip():
                events = self._result(json.loads(line).get("result") or {})
                if events:
                    batches.append(events)
        if self._ended and not batches:  # (else: the batches first, the end next time)
            raise DatastoreUnavailable("etcd closed the watch stream")
        return batches

    def _dechunk(self, data: bytes) -> None:
        if not self._chunked:
            self._body += data
            return
        raw = self._raw + data
        while not self._ended:
            eol = raw.find(b"\r\n")
            if eol < 0:
                break
            size = int(raw[:eol].split(b";", 1)[0], 16)
            if size == 0:
                self._ended = True
                break
            if len(raw) < eol + 2 + size + 2:
                break
            self._body += raw[eol + 2:eol + 2 + size]
            raw = raw[eol + 2 + size + 2:]
        self._raw = raw

    def _result(self, result: dict[str, Any]) -> list[WatchEvent]:
        if result.get("canceled"):
            compact = int(result.get("compact_revision", 0))
            if compact:
                raise CompactedError(
                    f"watch from revision {self.start_revision} compacted "
                    f"(compact revision {compact})",
                    compact_revision=compact,
                )
            raise DatastoreUnavailable(
                "etcd cancelled the watch: " + result.get("cancel_reason", ""))
        return [_event(e) for e in result.get("events") or []]


class EtcdWatch:
    """An open watch stream: iterate for batches of events; ``close()`` from any thread."""

    def __init__(self, client: EtcdClient, prefix: str, start_revision: int):
        self._client = client
        self._prefix = prefix
        self._start = start_revision
        self._sock: socket.socket | None = None
        self._closed = False

    def __iter__(self) -> Iterator[list[WatchEvent]]:
        try:
            sock, stream = self._client.open_watch(self._prefix, self._start)
        except DatastoreUnavailable:
            if self._closed:
                return
            raise
        self._sock = sock
        try:
            if self._closed:  # close() came before the socket existed to shut down
                return
            while True:
                try:
                    data = sock.recv(65536)
                except OSError as exc:
                    if self._closed:
                        return
                    raise DatastoreUnavailable(f"etcd watch lost: {_reason(exc)}") from exc
                if not data:
                    if self._closed:
                        return
                    raise DatastoreUnavailable("etcd closed the watch stream")
                yield from stream.feed(data)
        finally:
            sock.close()

    def close(self) -> None:
        self._closed = True
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _event(obj: dict[str, Any]) -> WatchEvent:
    prev = _kv(obj["prev_kv"]) if obj.get("prev_kv") else None
    return WatchEvent(obj.get("type", "PUT").lower(), _kv(obj["kv"]), prev)


def _op(op: Op) -> dict[str, Any]:
    if isinstance(op, Put):
        return {"request_put": {"key": _b64(op.key), "value": _b64(op.value)}}
    if isinstance(op, Delete):
        return {"request_delete_range": {"key": _b64(op.key)}}
    raise TypeError(op)  # pragma: no cover


class _Unauthenticated(DatastoreError):
    pass


def _gateway_error(payload: Any, status: int) -> DatastoreError:
    code = payload.get("code") if isinstance(payload, dict) else None
    message = (payload.get("message") or payload.get("error")) if isinstance(payload, dict) else ""
    message = message or f"HTTP {status}"
    if code == _GRPC_OUT_OF_RANGE and "compacted" in message:
        return CompactedError(message)
    if code == _GRPC_UNAUTHENTICATED or "invalid auth token" in message:
        return _Unauthenticated(message)
    if code == _GRPC_UNAVAILABLE:
        return DatastoreUnavailable(message)
    return DatastoreError(f"etcd error: {message}")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return str(exc) or type(exc).__name__
