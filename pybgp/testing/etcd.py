"""A real, throwaway etcd server for tests and the lab.

Owns: one `etcd` process (by PID), its temporary data dir and two free ports
on 127.0.0.1 (client and peer, never 2379/2380), plus a few admin calls over
etcd's v3 JSON gateway (put/get/wipe/compact) so tests need no client library.

Must never: listen on anything but 127.0.0.1, signal any process but the one
it started, or remove any directory but the one it created.

For the lab: ``data_root=`` puts everything (data, log, unix socket) in a
directory of the caller's; ``persistent=True`` lets the server outlive this
process (no clean-up at exit); with a ``Journal`` its name, ports and (PID,
start time) are written under "etcd" before and right after it starts, and
``EtcdServer.restore()`` attaches to it from another process. A restored
server is signalled only while its PID still has the recorded start time.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import json
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pybgp.testing.journal import Journal
from pybgp.testing.procs import ProcessRecord, pids_with_cwd_under, wait_gone

PORT_RANGE = (20000, 32000)  # below Linux's default ephemeral range (32768-60999)
RESERVED_PORTS = {2379, 2380}
START_TIMEOUT = 20.0
_UNSUPPORTED_ARCH = {"aarch64": "arm64", "arm64": "arm64", "ppc64le": "ppc64le", "s390x": "s390x"}


@dataclass(frozen=True)
class TLSFiles:
    """PEM files: the CA, and a certificate + key signed by it."""

    ca: str
    cert: str
    key: str


def make_tls(directory: str) -> tuple[TLSFiles, TLSFiles]:
    """A throw-away CA with a server certificate for 127.0.0.1 and a client
    certificate (openssl); returns (server files, client files)."""
    d = Path(directory)
    ca_key, ca = d / "ca.key", d / "ca.pem"

    def run(*argv: str) -> None:
        subprocess.run(["openssl", *argv], check=True, capture_output=True, timeout=60)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
        "/CN=pybgp-test-ca", "-keyout", str(ca_key), "-out", str(ca))
    files = []
    # etcd's JSON gateway dials its own gRPC listener with the server
    # certificate, so that one must be good for client auth as well.
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1\n"
                                 "extendedKeyUsage=serverAuth,clientAuth"),
                      ("client", "extendedKeyUsage=clientAuth")):
        key, csr, pem, extf = (d / f"{name}.key", d / f"{name}.csr", d / f"{name}.pem",
                               d / f"{name}.ext")
        extf.write_text(ext + "\n")
        run("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN=pybgp-{name}",
            "-keyout", str(key), "-out", str(csr))
        run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
            "-CAcreateserial", "-days", "2", "-extfile", str(extf), "-out", str(pem))
        files.append(TLSFiles(str(ca), str(pem), str(key)))
    return files[0], files[1]


class EtcdError(RuntimeError):
    """etcd could not be started, or a gateway call failed."""


def _b64(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode()


def free_port(exclude: set[int] | None = None) -> int:
    """A port on 127.0.0.1 that is free right now (random, outside the ephemeral range)."""
    avoid = RESERVED_PORTS | (exclude or set())
    for _ in range(200):
        port = random.randint(*PORT_RANGE)
        if port in avoid:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise EtcdError("no free port found")


def _data_root() -> str | None:
    shm = Path("/dev/shm")  # tmpfs: fsync is cheap, tests are faster
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


class EtcdServer:
    """One etcd member on 127.0.0.1. `start()` on construction unless `start=False`."""

    def __init__(self, name: str | None = None, *, start: bool = True,
                 binary: str = "etcd", tls: TLSFiles | None = None,
                 data_root: str | Path | None = None, persistent: bool = False,
                 journal: Journal | None = None) -> None:
        path = shutil.which(binary)
        if path is None:
            raise EtcdError(f"{binary!r} not found on PATH (Debian package etcd-server)")
        self.binary = path
        self.name = name or f"pybgp-{os.getpid()}-{random.randrange(16**6):06x}"
        self.journal = journal
        self.persistent = persistent
        self.record: ProcessRecord | None = None  # the running etcd, by identity
        if data_root is None:
            self.data_root = Path(tempfile.mkdtemp(prefix="pybgp-etcd-", dir=_data_root()))
        else:
            self.data_root = Path(data_root).resolve()
            self.data_root.mkdir(parents=True, exist_ok=False)  # ours alone, so ours to remove
        self.data_dir = self.data_root / "data"
        self.log_path = self.data_root / "etcd.log"
        self.client_port = free_port()
        self.peer_port = free_port({self.client_port})
        # An extra https listener (client certificates required) beside the
        # plain one the harness itself uses.
        self.tls = tls
        self.tls_port = free_port({self.client_port, self.peer_port}) if tls else 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._closed = False
        if not persistent:
            atexit.register(self.close)
        self._save()
        if start:
            try:
                self.start()
            except BaseException:
                self.close()
                raise

    # ----- lifecycle -------------------------------------------------------
    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def tls_endpoint(self) -> str:
        if not self.tls:
            raise EtcdError("this server was started without TLS")
        return f"https://127.0.0.1:{self.tls_port}"

    @property
    def unix_endpoint(self) -> str:
        """The same server over a unix socket: reachable from every network namespace."""
        return f"unix://{self.data_root}/etcd.sock:0"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    @property
    def running(self) -> bool:
        if self.proc is not None:
            return self.proc.poll() is None
        return self.record is not None and self.record.alive()

    # ----- persistence -------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        tls = None if self.tls is None else {"ca": self.tls.ca, "cert": self.tls.cert,
                                             "key": self.tls.key}
        return {"name": self.name, "binary": self.binary, "data_root": str(self.data_root),
                "client_port": self.client_port, "peer_port": self.peer_port,
                "tls_port": self.tls_port, "tls": tls, "closed": self._closed,
                "process": self.record.to_dict() if self.record else None}

    @classmethod
    def restore(cls, desc: dict[str, Any], journal: Journal | None = None) -> EtcdServer:
        """Attach to a server another process started (see ``describe``); never starts one."""
        srv = cls.__new__(cls)
        srv.binary = desc["binary"]
        srv.name = desc["name"]
        srv.journal = journal
        srv.persistent = True
        srv.data_root = Path(desc["data_root"])
        srv.data_dir = srv.data_root / "data"
        srv.log_path = srv.data_root / "etcd.log"
        srv.client_port = int(desc["client_port"])
        srv.peer_port = int(desc["peer_port"])
        srv.tls_port = int(desc.get("tls_port") or 0)
        tls = desc.get("tls")
        srv.tls = TLSFiles(tls["ca"], tls["cert"], tls["key"]) if tls else None
        srv.proc = None
        proc = desc.get("process")
        srv.record = ProcessRecord.from_dict(proc) if proc else None
        srv._closed = bool(desc.get("closed", False))
        return srv

    def _save(self) -> None:
        if self.journal is not None:
            self.journal.update("etcd", self.describe())

    def _argv(self) -> list[str]:
        return [
            self.binary,
            "--name", self.name,
            "--data-dir", str(self.data_dir),
            # etcd names a unix listener "unix://NAME:PORT" relative to its cwd
            "--listen-client-urls", ",".join(self._client_urls()),
            "--advertise-client-urls", self.endpoint,
            "--listen-peer-urls", self.peer_url,
            "--initial-advertise-peer-urls", self.peer_url,
            "--initial-cluster", f"{self.name}={self.peer_url}",
            "--initial-cluster-token", self.name,
            "--initial-cluster-state", "new",
            "--logger", "zap",
            "--log-outputs", "stderr",
            "--enable-v2=false",
            *self._tls_args(),
        ]

    def _client_urls(self) -> list[str]:
        # etcd names a unix listener "unix://NAME:PORT" relative to its cwd
        urls = [self.endpoint, "unix://etcd.sock:0"]
        if self.tls:
            urls.append(self.tls_endpoint)
        return urls

    def _tls_args(self) -> list[str]:
        if not self.tls:
            return []
        return ["--cert-file", self.tls.cert, "--key-file", self.tls.key,
                "--trusted-ca-file", self.tls.ca, "--client-cert-auth"]

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}
        arch = _UNSUPPORTED_ARCH.get(platform.machine())
        if arch:
            env["ETCD_UNSUPPORTED_ARCH"] = arch
        return env

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start (or start again, same dir and ports: data is kept) and wait until healthy."""
        if self._closed:
            raise EtcdError("server is closed")
        if self.running:
            return
        # A killed etcd leaves its unix socket behind, and a new one cannot bind over it.
        (self.data_root / "etcd.sock:0").unlink(missing_ok=True)
        with open(self.log_path, "ab") as log:
            # A persistent server gets a session of its own: a terminal's ^C
            # or hang-up aimed at its starter does not reach it.
            self.proc = subprocess.Popen(self._argv(), stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log, env=self._env(),
                                         cwd=self.data_root,
                                         start_new_session=self.persistent)
        try:
            self.record = ProcessRecord.of(self.proc.pid, "etcd " + self.name)
        except ProcessLookupError:
            self.record = None  # died at once: wait_healthy says why
        self._save()
        self.wait_healthy(timeout)

    def wait_healthy(self, timeout: float = START_TIMEOUT) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if not self.running:
                raise EtcdError(f"etcd exited during start-up\n{self.log_tail()}")
            with (
                contextlib.suppress(OSError, ValueError, EtcdError),
                urllib.request.urlopen(self.endpoint + "/health", timeout=1) as resp,
            ):
                if json.load(resp).get("health") == "true" and self._answering_is_us():
                    return
            time.sleep(0.05)
        self.kill()
        raise EtcdError(f"etcd not healthy after {timeout:g}s\n{self.log_tail()}")

    def _answering_is_us(self) -> bool:
        """The server on our port is the member we started (not another process's etcd)."""
        members = self.call("cluster/member/list", {}, timeout=2).get("members", [])
        return self.running and any(m.get("name") == self.name for m in members)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after `timeout`; data dir kept."""
        if self.proc is None:
            if self.record is not None:
                self.record.stop(timeout, group=False)
                self.record = None
                self._save()
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None
        self.record = None
        self._save()

    def kill(self) -> None:
        """SIGKILL (a crash); data dir kept."""
        if self.proc is None:
            if self.record is not None:
                self.record.signal(signal.SIGKILL, group=False)
                wait_gone([self.record], 10.0)
                self.record = None
                self._save()
            return
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None
        self.record = None
        self._save()

    def restart(self, timeout: float = START_TIMEOUT) -> None:
        self.stop()
        self.start(timeout)

    def close(self) -> None:
        """Kill the process (by its PID) and remove the data dir. Idempotent.

        An etcd whose PID was never recorded (its starter was killed between
        fork and record) is found by its working directory, our data dir."""
        self.kill()
        if self.data_root.is_dir():
            for pid in pids_with_cwd_under(self.data_root):
                with contextlib.suppress(ProcessLookupError):
                    rec = ProcessRecord.of(pid, "etcd by its directory")
                    rec.signal(signal.SIGKILL, group=False)
                    wait_gone([rec], 10.0)
        if not self._closed:
            shutil.rmtree(self.data_root, ignore_errors=True)
            self._closed = True
            if not self.persistent:
                atexit.unregister(self.close)
            self._save()

    def __enter__(self) -> EtcdServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----- v3 JSON gateway -------------------------------------------------
    def call(self, path: str, body: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
        """POST a JSON body to the v3 gateway, e.g. call("kv/range", {...})."""
        req = urllib.request.Request(
            f"{self.endpoint}/v3/{path}", data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                result: dict[str, Any] = json.load(resp)
                return result
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            raise EtcdError(f"{path}: HTTP {exc.code}: {detail}") from None

    def put(self, key: str | bytes, value: str | bytes) -> int:
        """Write a key; returns the new store revision."""
        resp = self.call("kv/put", {"key": _b64(key), "value": _b64(value)})
        return int(resp["header"]["revision"])

    def get(self, key: str | bytes, revision: int = 0) -> bytes | None:
        body: dict[str, Any] = {"key": _b64(key)}
        if revision:
            body["revision"] = revision
        kvs = self.call("kv/range", body).get("kvs") or []
        return base64.b64decode(kvs[0].get("value", "")) if kvs else None

    def revision(self) -> int:
        resp = self.call("kv/range", {"key": _b64(b"\0"), "count_only": True})
        return int(resp["header"]["revision"])

    def wipe(self) -> int:
        """Delete every key; returns how many were deleted."""
        resp = self.call("kv/deleterange", {"key": _b64(b"\0"), "range_end": _b64(b"\0")})
        return int(resp.get("deleted", 0))

    def compact(self, revision: int | None = None, physical: bool = True) -> int:
        """Compact history up to `revision` (default: the current one); returns it."""
        rev = revision if revision is not None else self.revision()
        self.call("kv/compaction", {"revision": rev, "physical": physical})
        return rev
