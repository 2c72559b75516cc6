"""Shared pieces of the BGP benchmarks (``fib_learn``, ``pod_route_convergence``).

- BIRD 2 configurations: a *feeder* router originating N static routes, and a
  node configured the way Calico's confd configures BIRD (REFERENCE §1: kernel
  protocol with ``learn``, ``persist``, ``scan time 2``, ``graceful restart``,
  ``merge paths on``; the ``bgp_template`` session options);
- a BIRD process started inside one of the topology's namespaces (by PID, in
  its own process group, stopped by that identity) and a small client for its
  control socket;
- observers of a namespace's kernel: a prefix counter (``fib_triestat``, read
  from a thread that entered the namespace) and a netlink route monitor that
  timestamps every route added;
- peak RSS (``VmHWM``) of a process tree.

Everything here runs inside namespaces a ``Topology`` created; nothing touches
the root namespace.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pybgp.kernel_sync import codec
from pybgp.kernel_sync.netlink import _setns, netns_path, open_netlink_socket
from pybgp.testing.netns import Node, Topology

CLONE_NEWNET = 0x40000000
_FINAL = re.compile(rb"^\d{4} ", re.M)


# -- BIRD control socket -------------------------------------------------------
class BirdCtl:
    """A persistent connection to a BIRD control socket (one command at a time)."""

    def __init__(self, path: str, timeout: float = 10.0) -> None:
        self.path = path
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self.buf = b""

    def _connect(self) -> socket.socket:
        if self.sock is None:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(self.timeout)
            try:
                s.connect(self.path)
            except OSError:
                s.close()
                raise
            self.sock, self.buf = s, b""
            self._read_reply()  # "0001 BIRD 2.0.12 ready."
        return self.sock

    def _read_reply(self) -> str:
        assert self.sock is not None
        while True:
            # A reply ends with a line whose 4-digit code is followed by a space.
            for m in _FINAL.finditer(self.buf):
                end = self.buf.find(b"\n", m.start())
                if end >= 0:
                    out, self.buf = self.buf[: end + 1], self.buf[end + 1 :]
                    return out.decode(errors="replace")
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"BIRD closed {self.path}")
            self.buf += chunk

    def cmd(self, line: str) -> str:
        try:
            s = self._connect()
            s.sendall(line.encode() + b"\n")
            return self._read_reply()
        except (OSError, ConnectionError):
            self.close()
            raise

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def protocol_state(self, name: str) -> tuple[str, float | None]:
        """(BGP state or protocol state, 'since' as epoch seconds if parsable)."""
        out = self.cmd(f"show protocols {name}")
        for raw in out.splitlines():
            line = re.sub(r"^\d{4}[- ]", "", raw) if re.match(r"^\d{4}[- ]", raw) else raw
            parts = line.split()
            if parts and parts[0] == name:
                # name proto table state since(date time) info
                since = _parse_since(parts[4], parts[5]) if len(parts) > 5 else None
                info = " ".join(parts[6:]) if len(parts) > 6 else ""
                return (info or parts[3]), since
        return "", None

    def wait_up(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.cmd("show status")
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"BIRD socket {self.path} not answering") from None
                time.sleep(0.05)


def _parse_since(date: str, clock: str) -> float | None:
    """BIRD's ``iso long ms`` time (local time) as epoch seconds."""
    try:
        t = dt.datetime.strptime(f"{date} {clock}", "%Y-%m-%d %H:%M:%S.%f")
    except ValueError:
        return None
    return t.timestamp()


# -- BIRD processes ----------------------------------------------------------------
@dataclass
class Bird:
    """One BIRD daemon in a topology namespace, identified by its PID."""

    name: str
    node: Node
    dir: Path
    proc: subprocess.Popen[bytes]
    ctl: BirdCtl

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self, timeout: float = 5.0) -> None:
        self.ctl.close()
        stop_process_group(self.proc, timeout)


def stop_process_group(proc: subprocess.Popen[Any], timeout: float = 5.0) -> None:
    """SIGTERM the group we started (its own session), then SIGKILL; by PID only."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    else:  # the leader is gone: its group may still hold children
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


def start_bird(topo: Topology, node: Node, workdir: Path, name: str, config: str,
               timeout: float = 60.0) -> Bird:
    d = workdir / name
    d.mkdir(parents=True, exist_ok=True)
    conf = d / "bird.conf"
    conf.write_text(config)
    sock = d / "bird.ctl"
    check = topo.exec(node, "bird", "-p", "-c", str(conf), check=False, timeout=60)
    if check.returncode != 0:
        raise RuntimeError(f"BIRD rejects {conf}: {check.stderr.strip() or check.stdout}")
    log = open(d / "bird.out", "ab")  # noqa: SIM115 - the child owns it
    try:
        proc = topo.popen(node, "bird", "-f", "-c", str(conf), "-s", str(sock),
                          stdout=log, stderr=subprocess.STDOUT)
    finally:
        log.close()
    ctl = BirdCtl(str(sock))
    bird = Bird(name, node, d, proc, ctl)
    try:
        deadline = time.monotonic() + timeout
        while not sock.exists():
            if proc.poll() is not None:
                raise RuntimeError(f"BIRD {name} exited {proc.returncode}: see {d / 'bird.out'}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"BIRD {name} did not create {sock}")
            time.sleep(0.05)
        ctl.wait_up(max(1.0, deadline - time.monotonic()))
    except BaseException:
        bird.stop()
        raise
    return bird


def wait_bgp_established(ctl: BirdCtl, protocol: str, timeout: float,
                         step: float = 0.005) -> float:
    """Poll until ``protocol`` is Established; return when (BIRD's 'since', ms)."""
    deadline = time.monotonic() + timeout
    while True:
        state, since = ctl.protocol_state(protocol)
        if state.startswith("Established"):
            return since if since is not None else time.time()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{protocol} not Established after {timeout:.0f}s ({state!r})")
        time.sleep(step)


# -- configurations ------------------------------------------------------------------
@dataclass(frozen=True)
class BgpNeighbor:
    name: str
    address: str
    asn: int
    passive: bool = False


def feeder_prefixes(n: int, start: str = "198.18.1.0") -> Iterator[str]:
    """n /32s counted up from ``start`` (198.18.1.0 … at most 198.19.255.255)."""
    a, b, c, d = (int(x) for x in start.split("."))
    base = (a << 24) | (b << 16) | (c << 8) | d
    last = (198 << 24) | (19 << 16) | 0xFFFF
    if base + n - 1 > last:
        raise ValueError(f"{n} routes from {start} leave 198.18.0.0/15")
    for i in range(base, base + n):
        yield f"{i >> 24}.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}/32"


def feeder_config(router_id: str, asn: int, neighbors: Sequence[BgpNeighbor],
                  prefixes: Iterable[str]) -> str:
    """A router originating ``prefixes`` (static blackholes) over eBGP; sessions disabled
    until enabled over the control socket, and quick to (re)connect."""
    out = [f"router id {router_id};", "timeformat protocol iso long ms;",
           "protocol device { scan time 10; }",
           "protocol static feed {", "  ipv4;"]
    out += [f"  route {p} blackhole;" for p in prefixes]
    out.append("}")
    for n in neighbors:
        out += [f"protocol bgp {n.name} {{", "  disabled;",
                f"  local {router_id} as {asn};",
                f"  neighbor {n.address} as {n.asn};",
                "  connect delay time 1; connect retry time 1; error wait time 1, 2;",
                "  ipv4 { import none; export all; };", "}"]
    return "\n".join(out) + "\n"


def calico_config(router_id: str, asn: int, neighbors: Sequence[BgpNeighbor],
                  pools: Sequence[str] = ("198.19.0.0/16",),
                  blocks: Sequence[str] = ()) -> str:
    """BIRD 2 configured as Calico's confd configures BIRD (bird.cfg.template,
    bird_aggr.cfg.template, bird_ipam.cfg.template).

    Kernel protocol: learn alien routes, persist, scan every 2 s, graceful
    restart, ECMP; export everything (no IPIP pools here) to the kernel.
    Sessions from ``bgp_template``: multihop, recursive gateway, import all,
    export only routes inside the pools, add paths, graceful restart.

    ``blocks``: the IPAM blocks affine to this node (confirmed). As in
    bird_aggr.cfg: an unnamed ``protocol static`` (BIRD names it ``static1``)
    with ``route <block> blackhole;`` per block, and the export filter's
    aggregation step (``calico_aggr``) accepting each block itself and
    rejecting anything inside it, ahead of the pools' accept.
    """
    pool_set = ", ".join(f"{p}+" for p in pools)
    aggr: list[str] = []
    for b in blocks:
        aggr += [f"  if ( net = {b} ) then accept;   # block {b} is confirmed",
                 f"  if ( net ~ {b} ) then reject;"]
    out = [
        f"router id {router_id};",
        "timeformat protocol iso long ms;",
        "filter calico_export_to_bgp_peers {",
        *aggr,
        f"  if ( net ~ [ {pool_set} ] ) then accept;",
        "  reject;",
        "}",
        "filter calico_kernel_programming {",
        "  # BIRD 1.6 (Calico's) never exports device routes to the kernel",
        "  # ('device routes' off); BIRD 2 has no such switch: say it here.",
        "  if ( source = RTS_DEVICE ) then reject;",
        "  accept;",
        "}",
        "protocol kernel {",
        "  learn;             # learn all alien routes from the kernel",
        "  persist;           # don't remove routes on bird shutdown",
        "  scan time 2;       # scan the kernel routing table every 2 seconds",
        "  ipv4 { import all; export filter calico_kernel_programming; };",
        "  graceful restart;",
        "  merge paths on;    # ECMP",
        "}",
        "protocol device { scan time 2; }",
        "protocol direct {",
        "  ipv4;",
        '  interface -"cali*", -"kube-ipvs*", "*";',
        "}",
    ]
    if blocks:
        out += ["protocol static {", "  ipv4;", "  # IP blocks for this host."]
        out += [f"  route {b} blackhole;" for b in blocks]
        out.append("}")
    else:
        out.append("# No IP blocks or static routes for this host.")
    out += [
        "template bgp bgp_template {",
        '  description "Connection to BGP peer";',
        f"  local {router_id} as {asn};",
        "  multihop;",
        "  ipv4 {",
        "    gateway recursive;",
        "    import all;",
        "    export filter calico_export_to_bgp_peers;",
        "    add paths on;",
        "  };",
        "  graceful restart;",
        "  connect delay time 2;",
        "  connect retry time 5;",
        "  error wait time 5,30;",
        "}",
    ]
    for n in neighbors:
        out += [f"protocol bgp {n.name} from bgp_template {{",
                f"  neighbor {n.address} as {n.asn};"]
        if n.passive:
            out.append("  passive on;")
        out.append("}")
    return "\n".join(out) + "\n"


def mesh_name(ip: str) -> str:
    return "Mesh_" + ip.replace(".", "_")


# -- observing a namespace's kernel --------------------------------------------------------
class _NetnsThread:
    """A daemon thread living inside ``netns`` (setns affects only that thread).

    Subclasses set their own state, then call ``__init__``; ``_open`` runs in
    the namespace and returns what ``_serve`` then uses until ``_stop``.
    """

    def __init__(self, netns: str, name: str) -> None:
        self.netns = netns
        self._stop = False
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"{name}-{netns}", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        try:
            fd = os.open(netns_path(self.netns), os.O_RDONLY | os.O_CLOEXEC)
            try:
                _setns(fd)
            finally:
                os.close(fd)
            resource = self._open()
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self._serve(resource)

    def _open(self) -> Any:
        raise NotImplementedError

    def _serve(self, resource: Any) -> None:
        raise NotImplementedError


class FibCounter(_NetnsThread):
    """Counts the prefixes of a namespace's main FIB (``/proc/net/fib_triestat``).

    A thread enters the namespace (setns affects only that thread) and reads
    its own ``/proc/thread-self/net/fib_triestat``: one cheap read, no
    process started, no route dump.
    """

    def __init__(self, netns: str) -> None:
        self._req: list[tuple[threading.Event, list[int]]] = []
        self._cv = threading.Condition()
        super().__init__(netns, "fib")

    def _open(self) -> Any:
        return open("/proc/thread-self/net/fib_triestat", "rb")  # noqa: SIM115

    def _serve(self, fh: Any) -> None:
        with fh:
            while True:
                with self._cv:
                    while not self._req and not self._stop:
                        self._cv.wait()
                    if self._stop:
                        return
                    ev, box = self._req.pop(0)
                fh.seek(0)
                text = fh.read()
                m = re.search(rb"Main:.*?Prefixes:\s*(\d+)", text, re.S)
                box.append(int(m.group(1)) if m else -1)
                ev.set()

    def count(self) -> int:
        ev, box = threading.Event(), []  # type: ignore[var-annotated]
        with self._cv:
            self._req.append((ev, box))
            self._cv.notify()
        if not ev.wait(10):
            raise TimeoutError("fib counter stuck")
        return int(box[0])

    def wait_for(self, target: int, timeout: float, step: float = 0.01) -> float | None:
        """Poll until the count reaches ``target``; the time it was seen, None on timeout."""
        return self.wait_marks([target], timeout, step)[0]

    def wait_marks(self, targets: Sequence[int], timeout: float,
                   step: float = 0.01) -> list[float | None]:
        """Poll until the count reaches max(targets); when each target was first
        seen (None: not within ``timeout``)."""
        seen: list[float | None] = [None] * len(targets)
        deadline = time.monotonic() + timeout
        while True:
            count = self.count()
            now = time.time()
            for i, t in enumerate(targets):
                if seen[i] is None and count >= t:
                    seen[i] = now
            if all(x is not None for x in seen) or time.monotonic() > deadline:
                return seen
            time.sleep(step)

    def close(self) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify()
        self._thread.join(5)


@dataclass
class RouteWatch:
    """Timestamps (``time.time()`` at receipt) of IPv4 routes added in a namespace,
    from a netlink socket subscribed to RTNLGRP_IPV4_ROUTE, read by a thread."""

    netns: str
    seen: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._sock = open_netlink_socket(self.netns, groups=[codec.RTNLGRP_IPV4_ROUTE],
                                         rcvbuf=32 << 20)
        self._sock.settimeout(0.2)
        self._cv = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name=f"watch-{self.netns}",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                data = self._sock.recv(1 << 20)
            except TimeoutError:
                continue
            except OSError:  # ENOBUFS: we only look for adds of prefixes we wait for
                continue
            now = time.time()
            added: list[str] = []
            for msg in codec.iter_messages(data):
                if msg.type != codec.RTM_NEWROUTE:
                    continue
                raw = codec.parse_route(msg)
                if raw is not None and raw.table == 254:
                    added.append(raw.prefix)
            if added:
                with self._cv:
                    for p in added:
                        self.seen.setdefault(p, now)
                    self._cv.notify_all()

    def wait(self, prefix: str, timeout: float) -> float | None:
        deadline = time.monotonic() + timeout
        with self._cv:
            while prefix not in self.seen:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cv.wait(left)
            return self.seen[prefix]

    def close(self) -> None:
        self._stop = True
        self._thread.join(5)
        self._sock.close()


class RouteClock:
    """Like :class:`RouteWatch` for several namespaces, and when a node's
    affinity was first seen confirmed in etcd, with the time read by a
    process of its own (``benchmarks._route_clock``): not delayed while this
    process's other threads hold the GIL. ``wait(netns, prefix)``,
    ``wait("etcd", block)``."""

    def __init__(self, namespaces: Sequence[str], etcd: str | None = None,
                 nodes: Sequence[str] = ()) -> None:
        import sys

        self.seen: dict[tuple[str, str], float] = {}
        self._cv = threading.Condition()
        argv = [sys.executable, "-m", "benchmarks._route_clock"]
        if etcd is not None:
            argv += ["--etcd", etcd] + [a for n in nodes for a in ("--node", n)]
        # It exits when our end of its stdin closes, however this process ends.
        self.proc = subprocess.Popen([*argv, *namespaces], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, start_new_session=True)
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            self.close()
            raise RuntimeError("the route clock did not start")
        self._thread = threading.Thread(target=self._run, name="route-clock", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            words = line.split()
            key = (words[1], words[2]) if words[0] == "route" else ("etcd", words[1])
            with self._cv:
                self.seen.setdefault(key, float(words[-1]))
                self._cv.notify_all()

    def wait(self, where: str, prefix: str, timeout: float) -> float | None:
        deadline = time.monotonic() + timeout
        with self._cv:
            while (where, prefix) not in self.seen:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cv.wait(left)
            return self.seen[(where, prefix)]

    def close(self) -> None:
        stop_process_group(self.proc)


class BgpWireWatch(_NetnsThread):
    """When BGP UPDATEs carrying a prefix crossed a namespace's interfaces.

    An AF_PACKET socket opened by a thread that entered the namespace keeps
    every TCP segment to or from port 179 with a BGP payload longer than a
    KEEPALIVE, with the kernel's receive timestamp (``SO_TIMESTAMPNS``:
    outgoing packets are stamped as they reach the device). ``first(p)`` finds
    the earliest stored segment holding ``p`` as an NLRI (length byte and the
    significant octets, which is how an UPDATE encodes it). Bounded: the last
    ``keep`` segments only.
    """

    ETH_P_ALL = 0x0003
    SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)

    def __init__(self, netns: str, keep: int = 20000) -> None:
        self.keep = keep
        self.segments: list[tuple[float, bytes]] = []
        self._cv = threading.Condition()
        super().__init__(netns, "wire")

    def _open(self) -> Any:
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(self.ETH_P_ALL))
        s.setsockopt(socket.SOL_SOCKET, self.SO_TIMESTAMPNS, 1)
        s.settimeout(0.2)
        return s

    def _serve(self, s: Any) -> None:
        with s:
            while not self._stop:
                try:
                    data, anc, _flags, _addr = s.recvmsg(65536, 64)
                except TimeoutError:
                    continue
                except OSError:
                    continue
                ts = time.time()
                for level, kind, raw in anc:
                    if (level, kind) == (socket.SOL_SOCKET, self.SO_TIMESTAMPNS) and len(raw) >= 16:
                        sec, nsec = struct.unpack("qq", raw[:16])
                        ts = sec + nsec / 1e9
                payload = _bgp_payload(data)
                if payload is None or len(payload) <= 19:
                    continue
                with self._cv:
                    self.segments.append((ts, payload))
                    if len(self.segments) > self.keep:
                        del self.segments[: len(self.segments) - self.keep]
                    self._cv.notify_all()

    def first(self, prefix: str, since: float, timeout: float = 1.0) -> float | None:
        """Earliest segment at or after ``since`` carrying NLRI ``prefix``."""
        net, _, plen_s = prefix.partition("/")
        plen = int(plen_s)
        pattern = bytes([plen]) + socket.inet_aton(net)[: (plen + 7) // 8]
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                for ts, payload in self.segments:
                    if ts >= since and pattern in payload:
                        return ts
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cv.wait(left)

    def close(self) -> None:
        self._stop = True
        self._thread.join(5)


def _bgp_payload(frame: bytes) -> bytes | None:
    """The TCP payload of an Ethernet/IPv4 frame to or from port 179, else None."""
    if len(frame) < 14 + 20 + 20 or frame[12:14] != b"\x08\x00":
        return None
    ip = frame[14:]
    ihl = (ip[0] & 0x0F) * 4
    if ip[9] != 6 or len(ip) < ihl + 20:
        return None
    total = int.from_bytes(ip[2:4], "big")
    tcp = ip[ihl:total]
    sport, dport = int.from_bytes(tcp[0:2], "big"), int.from_bytes(tcp[2:4], "big")
    if 179 not in (sport, dport):
        return None
    return tcp[(tcp[12] >> 4) * 4:]


# -- memory ---------------------------------------------------------------------------------
def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        with contextlib.suppress(OSError):
            out += [int(x) for x in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()]
    return out


def process_tree(pid: int) -> list[int]:
    seen, todo = [], [pid]
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.append(p)
        todo += _children(p)
    return seen


def vm_hwm_kib(pid: int) -> int:
    """Peak resident set size of one process (VmHWM), KiB; 0 if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def proc_name(pid: int) -> str:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    words = [w.decode(errors="replace") for w in cmd if w]
    for w in words:
        if w in ("exabgp", "bird") or w.endswith("/exabgp") or w.endswith("/bird"):
            return os.path.basename(w)
        if w == "pybgp.speaker.exabgp_main":  # how the speaker runs ExaBGP
            return "exabgp"
    if "speaker" in words:
        return "speaker"
    return os.path.basename(words[0]) if words else "?"


def tree_hwm(pid: int) -> dict[str, int]:
    """VmHWM (KiB) of every process in the tree under ``pid``, by role name."""
    out: dict[str, int] = {}
    for p in process_tree(pid):
        name = proc_name(p)
        out[name] = out.get(name, 0) + vm_hwm_kib(p)
    return out


def median(xs: Sequence[float]) -> float:
    s = sorted(xs)
    n = len(s)
    if n == 0:
        return float("nan")
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def percentile(xs: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    s = sorted(xs)
    if not s:
        return float("nan")
    k = max(0, min(len(s) - 1, int(-(-q * len(s) // 100)) - 1))
    return s[k]
