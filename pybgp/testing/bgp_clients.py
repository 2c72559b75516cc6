"""Scripted BGP clients for tests and benchmarks: real sessions, little code.

Two tools over the same wire format (``pybgp.reflector.wire``/``codec``):

* ``ScriptedPeer`` — one blocking iBGP session opened from inside a test's
  namespace (``run_in_netns``), for tests that must craft exactly what a
  peer says: announce with any ORIGINATOR_ID/CLUSTER_LIST, withdraw, End-of-
  RIB, graceful-restart capability, a TCP-MD5 key, an abrupt close (a crash,
  as graceful restart sees it). What it receives is decoded into ``routes``
  (prefix → path) by the reflector's own decoder.
* ``Swarm`` (``python -m pybgp.testing.bgp_clients``) — many sessions in one
  asyncio process for ``benchmarks.rr_fanout``: C clients that only count
  what they receive (the /32 NLRI of each UPDATE, with byte operations in C:
  a slice and a count per message; attributes checked once per distinct
  attribute section), and one injector that sends R /32s, packed ~800 to an
  UPDATE, when told to. It prints one JSON line of timings (its clock) and
  its own CPU time, so a benchmark can show what the tool itself cost.

Every wait is bounded. Must never: connect anywhere but the address given
(a reflector in a test's namespace), or run in the root namespace during
tests (the caller puts it in one).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import socket
import struct
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from pybgp.reflector import codec, md5, wire
from pybgp.reflector.wire import IPV4_UNICAST, Caps, GracefulRestart

ORIGIN_IGP = bytes((0x40, 1, 1, 0))
EMPTY_AS_PATH = bytes((0x40, 2, 0))


def attributes(next_hop: str, *, local_pref: int | None = 100,
               originator_id: str | None = None, cluster_list: Sequence[str] = (),
               as_path: Sequence[int] = (), med: int | None = None,
               extra: bytes = b"") -> bytes:
    """An iBGP path attribute section (what a Calico node sends, plus options)."""
    out = ORIGIN_IGP
    if as_path:
        seg = bytes((2, len(as_path))) + b"".join(struct.pack("!I", a) for a in as_path)
        out += bytes((0x40, 2, len(seg))) + seg
    else:
        out += EMPTY_AS_PATH
    out += bytes((0x40, 3, 4)) + socket.inet_aton(next_hop)
    if med is not None:
        out += bytes((0x80, 4, 4)) + struct.pack("!I", med)
    if local_pref is not None:
        out += bytes((0x40, 5, 4)) + struct.pack("!I", local_pref)
    if originator_id is not None:
        out += bytes((0x80, 9, 4)) + socket.inet_aton(originator_id)
    if cluster_list:
        out += bytes((0x80, 10, 4 * len(cluster_list))) + b"".join(
            socket.inet_aton(c) for c in cluster_list)
    return out + extra


def update(attrs: bytes, prefixes: Sequence[str]) -> list[bytes]:
    """UPDATE messages announcing IPv4 ``prefixes`` with ``attrs``."""
    return codec.announce_messages(IPV4_UNICAST, attrs, b"", prefixes)


def raw_update(attrs: bytes, nlri: bytes, withdrawn: bytes = b"") -> bytes:
    """One UPDATE exactly as given (for malformed ones)."""
    body = (struct.pack("!H", len(withdrawn)) + withdrawn + struct.pack("!H", len(attrs))
            + attrs + nlri)
    return wire.frame(wire.UPDATE, body)


# -- one scripted session ----------------------------------------------------------------
@dataclass
class ScriptedPeer:
    """A blocking BGP session from ``local`` (in ``netns``) to ``remote``."""

    netns: str
    local: str
    remote: str
    asn: int = 64512
    router_id: str = ""
    hold_time: int = 90
    restart_time: int | None = None
    restarting: bool = False
    password: str | None = None
    port: int = 179
    families: tuple[wire.Family, ...] = (IPV4_UNICAST,)
    routes: dict[str, codec.RPath] = field(default_factory=dict)
    eor: bool = False
    notification: tuple[int, int] | None = None
    remote_caps: Caps | None = None

    def __post_init__(self) -> None:
        self.router_id = self.router_id or self.local
        self.sock: socket.socket | None = None
        self._framer = wire.Framer()
        self._decoder: codec.UpdateDecoder | None = None

    def connect(self, timeout: float = 10.0) -> ScriptedPeer:
        from pybgp.kernel_sync.netlink import run_in_netns

        def make() -> socket.socket:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                if self.password:
                    md5.set_key(s, self.remote, self.password)
                s.bind((self.local, 0))
                s.settimeout(timeout)
                s.connect((self.remote, self.port))
            except BaseException:
                s.close()
                raise
            return s

        self.sock = run_in_netns(self.netns, make)
        self.routes, self.eor, self.notification = {}, False, None
        self._framer = wire.Framer()
        gr = None
        if self.restart_time is not None:
            gr = GracefulRestart(self.restart_time, self.restarting,
                                 forwarding=frozenset(self.families), families=self.families)
        caps = Caps(families=self.families, asn4=self.asn, route_refresh=True,
                    graceful_restart=gr)
        self.send(wire.encode_open(self.asn, self.hold_time, self.router_id, caps))
        deadline = time.monotonic() + timeout
        got_open = False
        while True:
            kind, body = self._next(deadline)
            if kind == wire.OPEN:
                msg = wire.decode_open(body)
                self.remote_caps = msg.caps
                self._decoder = codec.UpdateDecoder(self.remote, msg.router_id, asn4=True,
                                                    families=self.families)
                self.send(wire.KEEPALIVE_MESSAGE)
                got_open = True
            elif kind == wire.KEEPALIVE and got_open:
                return self
            elif kind == wire.NOTIFICATION:
                self.notification = wire.decode_notification(body)[:2]
                raise ConnectionError(f"NOTIFICATION {self.notification} from {self.remote}")

    def send(self, data: bytes | Iterable[bytes]) -> None:
        assert self.sock is not None
        self.sock.sendall(data if isinstance(data, bytes) else b"".join(data))

    def announce(self, prefixes: Sequence[str], **attrs: object) -> None:
        self.send(update(attributes(attrs.pop("next_hop", self.local), **attrs),  # type: ignore[arg-type]
                         prefixes))

    def announce6(self, prefixes: Sequence[str], next_hop: str, **attrs: object) -> None:
        """IPv6 unicast prefixes in MP_REACH_NLRI (RFC 4760)."""
        a = attributes(self.local, **attrs)  # type: ignore[arg-type]
        a = a[:7] + a[14:]  # ORIGIN, AS_PATH; no NEXT_HOP attribute for IPv6
        nh = socket.inet_pton(socket.AF_INET6, next_hop)
        self.send(codec.announce_messages(wire.IPV6_UNICAST, a, nh, prefixes))

    def withdraw(self, prefixes: Sequence[str]) -> None:
        self.send(codec.withdraw_messages(IPV4_UNICAST, prefixes))

    def end_of_rib(self) -> None:
        self.send(wire.end_of_rib(IPV4_UNICAST))

    def _next(self, deadline: float) -> tuple[int, bytes]:
        assert self.sock is not None
        while True:
            if self._pending:
                return self._pending.pop(0)
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"nothing from {self.remote} in time")
            self.sock.settimeout(left)
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError(f"{self.remote} closed the connection")
            self._pending.extend(self._framer.feed(data))

    @property
    def _pending(self) -> list[tuple[int, bytes]]:
        if not hasattr(self, "_queue"):
            self._queue: list[tuple[int, bytes]] = []
        return self._queue

    def poll(self, seconds: float) -> None:
        """Read and apply what arrives for ``seconds`` (answers keepalives)."""
        deadline = time.monotonic() + seconds
        try:
            while True:
                self._apply(*self._next(deadline))
        except TimeoutError:
            return

    def wait_for(self, pred: object, timeout: float, what: str = "routes") -> None:
        """Read until ``pred(self)`` holds (bounded by ``timeout``)."""
        deadline = time.monotonic() + timeout
        while not pred(self):  # type: ignore[operator]
            try:
                self._apply(*self._next(deadline))
            except TimeoutError:
                raise TimeoutError(f"{self.local}: timed out waiting for {what}; have "
                                   f"{sorted(self.routes)}") from None

    def _apply(self, kind: int, body: bytes) -> None:
        if kind == wire.KEEPALIVE:
            return
        if kind == wire.NOTIFICATION:
            self.notification = wire.decode_notification(body)[:2]
            raise ConnectionError(f"NOTIFICATION {self.notification} from {self.remote}")
        if kind != wire.UPDATE:
            return
        assert self._decoder is not None
        upd = self._decoder.decode(body)
        if upd.eor is not None:
            self.eor = True
            return
        for p in upd.withdrawn:
            self.routes.pop(p, None)
        for path, prefixes in upd.groups:
            for p in prefixes:
                self.routes[p] = path

    def crash(self) -> None:
        """Close abruptly with a RST and no NOTIFICATION (a process dying)."""
        if self.sock is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.sock.close()
            self.sock = None

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


# -- many sessions, for the benchmark --------------------------------------------------------
def host_addresses(base: str, n: int) -> list[str]:
    start = int.from_bytes(socket.inet_aton(base), "big")
    return [socket.inet_ntoa((start + i).to_bytes(4, "big")) for i in range(n)]


def injected_prefixes(n: int, base: str = "198.19.0.0") -> list[str]:
    if n > 65536:
        raise ValueError("at most 65536 /32s inside 198.19.0.0/16")
    return [a + "/32" for a in host_addresses(base, n)]


class _Client:
    """One counting session of the swarm (non-blocking socket, epoll)."""

    __slots__ = ("swarm", "address", "sock", "buf", "state", "count", "withdrawn",
                 "done_at", "bad", "eor", "out", "target", "retry_at", "last_error")

    def __init__(self, swarm: Swarm, address: str):
        self.swarm, self.address = swarm, address
        self.sock: socket.socket | None = None
        self.buf = b""
        self.state = "connecting"
        self.count = 0
        self.withdrawn = 0
        self.done_at: float | None = None
        self.bad = 0
        self.eor = False
        self.out = b""  # not yet written (only ever a few small messages)
        self.target = swarm.routes  # routes to count before it is done
        self.retry_at = 0.0  # a session refused before Established is retried from then
        self.last_error = ""

    def write(self, data: bytes) -> None:
        self.out += data
        self.flush()

    def flush(self) -> None:
        if self.out and self.sock is not None:
            try:
                n = self.sock.send(self.out)
            except BlockingIOError:
                return
            self.out = self.out[n:]

    def opened(self) -> None:
        sw = self.swarm
        self.state = "OpenSent"
        self.write(wire.encode_open(sw.asn, sw.hold_time, self.address,
                                    Caps(asn4=sw.asn, route_refresh=True)))

    def feed(self, data: bytes) -> None:
        # One pass over the bytes, no object per message but a slice of the
        # attributes (compared with the last ones seen, in C) and one of the
        # NLRI: a reflector that sends one prefix per UPDATE sends millions.
        buf = self.buf + data if self.buf else data
        pos, end = 0, len(buf)
        sw = self.swarm
        while end - pos >= 19:
            length = (buf[pos + 16] << 8) | buf[pos + 17]
            if length < 19 or buf[pos] != 0xFF:
                self.bad += 1
                self.buf = b""
                return
            if end - pos < length:
                break
            kind = buf[pos + 18]
            stop = pos + length
            if kind == wire.UPDATE:
                b = pos + 19
                wlen = (buf[b] << 8) | buf[b + 1]
                if wlen:
                    self.withdrawn += wlen // 5
                a = b + 2 + wlen
                alen = (buf[a] << 8) | buf[a + 1]
                nstart = a + 2 + alen
                n, rest = divmod(stop - nstart, 5)
                if n and not rest and buf[nstart:stop:5].count(32) == n:
                    attrs = buf[a + 2:nstart]
                    if attrs == sw.last_attrs or attrs in sw.good or sw.check_attributes(attrs):
                        sw.last_attrs = attrs
                        self.count += n
                        if self.count >= self.target and self.done_at is None:
                            self.done_at = time.time()
                            sw.completed += 1
                    else:
                        self.bad += n
                elif n or rest:
                    self.bad += 1  # not all /32s: not what was injected
                elif not wlen and not alen:
                    self.eor = True
            elif kind == wire.KEEPALIVE:
                if self.state == "OpenConfirm":
                    self.state = "Established"
                    sw.established += 1
            elif kind == wire.OPEN:
                self.write(wire.KEEPALIVE_MESSAGE)
                self.state = "OpenConfirm"
            elif kind == wire.NOTIFICATION:
                self.state = f"closed: NOTIFICATION {buf[pos + 19]}/{buf[pos + 20]}"
            pos = stop
        self.buf = buf[pos:] if pos < end else b""


class Swarm:
    """C counting clients and one injector, all from ``addresses`` (the first
    is the injector), connected to ``reflector``; one epoll loop.

    Reads are coalesced: when a pass of the loop read little per socket (a
    peer writing one small UPDATE at a time, as GoBGP does: one prefix per
    message), the loop waits ``COALESCE`` before the next, so the kernel
    gathers segments and one read takes many messages — the swarm's CPU
    then stays a fraction of the reflector's. A reflector that writes
    whole UPDATEs of hundreds of prefixes never triggers the wait."""

    SMALL_READ = 512  # bytes per read, on average over a pass
    COALESCE = 0.02
    READ = 1 << 18

    def __init__(self, reflector: str, addresses: Sequence[str], routes: int, *,
                 asn: int = 64512, hold_time: int = 240, cluster_id: str | None = None,
                 port: int = 179):
        import select

        self.reflector, self.port = reflector, port
        self.injector_address = addresses[0]
        self.routes, self.asn, self.hold_time = routes, asn, hold_time
        self.cluster_id = cluster_id
        self.injector = _Client(self, addresses[0])
        self.clients = [_Client(self, a) for a in addresses[1:]]
        self.established = 0
        self.completed = 0
        self.last_attrs: bytes | None = None
        self.good: set[bytes] = set()  # attribute sections checked and found right
        self.wrong_attributes = ""
        self.storm = False
        self.ep = select.epoll()
        self.by_fd: dict[int, _Client] = {}
        self.connecting: dict[int, _Client] = {}
        self.next_keepalive = time.monotonic() + max(1.0, hold_time / 3)

    def check_attributes(self, attrs: bytes) -> bool:
        """What a reflector must send: our next hop, ORIGINATOR_ID = the
        injector, CLUSTER_LIST starting with the cluster id."""
        seen: dict[int, bytes] = {}
        pos = 0
        while pos + 3 <= len(attrs):
            flags, code = attrs[pos], attrs[pos + 1]
            if flags & 0x10:
                length, head = int.from_bytes(attrs[pos + 2:pos + 4], "big"), 4
            else:
                length, head = attrs[pos + 2], 3
            seen[code] = attrs[pos + head:pos + head + length]
            pos += head + length
        inj = socket.inet_aton(self.injector_address)
        problems = []
        if self.storm:  # every client announced its own, next hop itself
            if seen.get(3) is None or seen.get(9) != seen.get(3):
                problems.append("ORIGINATOR_ID = NEXT_HOP")
        else:
            if seen.get(3) != inj:
                problems.append("NEXT_HOP")
            if seen.get(9) != inj:
                problems.append("ORIGINATOR_ID")
        if self.cluster_id is not None and seen.get(10, b"")[:4] != socket.inet_aton(
                self.cluster_id):
            problems.append("CLUSTER_LIST")
        if problems:
            self.wrong_attributes = ", ".join(problems)
        elif len(self.good) < 100_000:
            self.good.add(attrs)
        return not problems

    # -- the loop ------------------------------------------------------------------------
    def _start_connect(self, c: _Client) -> None:
        import select

        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.bind((c.address, 0))
        s.connect_ex((self.reflector, self.port))
        c.sock, c.buf, c.state = s, b"", "connecting"
        self.connecting[s.fileno()] = c
        self.ep.register(s.fileno(), select.EPOLLOUT)

    def _connected(self, fd: int) -> None:
        import select

        c = self.connecting.pop(fd)
        assert c.sock is not None
        err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        self.ep.unregister(fd)
        if err:
            c.sock.close()
            c.sock = None
            self._retry_later(c, f"connect: {os.strerror(err)}")
            return
        self.by_fd[fd] = c
        self.ep.register(fd, select.EPOLLIN)
        c.opened()

    def _read(self, c: _Client) -> int:
        assert c.sock is not None
        try:
            data = c.sock.recv(self.READ)
        except BlockingIOError:
            return 0
        except OSError:
            data = b""
        if not data:
            self._drop(c)
            return 0
        c.feed(data)
        return len(data)

    def _drop(self, c: _Client) -> None:
        if c.sock is None:
            return
        fd = c.sock.fileno()
        self.by_fd.pop(fd, None)
        self.connecting.pop(fd, None)
        with contextlib.suppress(OSError, ValueError):
            self.ep.unregister(fd)
        c.sock.close()
        c.sock = None
        if c.state == "Established":
            self.established -= 1
            c.state = "closed"
        else:  # refused while it came up (a reflector still adding its peers)
            self._retry_later(c, c.state if c.state.startswith("closed:")
                              else f"closed in {c.state}")

    @staticmethod
    def _retry_later(c: _Client, why: str) -> None:
        c.state, c.last_error, c.retry_at = "retry", why, time.monotonic() + 0.5

    def run_until(self, pred: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not pred():
            now = time.monotonic()
            if now > deadline:
                return False
            if now >= self.next_keepalive:
                self.next_keepalive = now + max(1.0, self.hold_time / 3)
                for c in [self.injector, *self.clients]:
                    if c.state == "Established":
                        c.write(wire.KEEPALIVE_MESSAGE)
            events = self.ep.poll(min(0.2, max(0.0, deadline - now)))
            got = reads = 0
            for fd, _ev in events:
                if fd in self.connecting:
                    self._connected(fd)
                    continue
                peer = self.by_fd.get(fd)
                if peer is not None:
                    got += self._read(peer)
                    reads += 1
                    peer.flush()
            if reads and got < reads * self.SMALL_READ:
                time.sleep(self.COALESCE)
        return True

    def connect_all(self, timeout: float) -> float:
        t0 = time.monotonic()
        todo = [*self.clients, self.injector]
        want = len(todo)
        deadline = t0 + timeout
        while self.established < want:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.established} of {want} sessions established; "
                                   + ", ".join(sorted({c.state for c in todo}))
                                   + "; last errors: " + ", ".join(
                                       sorted({c.last_error for c in todo if c.last_error})))
            now = time.monotonic()
            for c in todo:  # at most 64 connections being opened at once
                if len(self.connecting) >= 64:
                    break
                if c.sock is None and c.state in ("connecting", "retry") and c.retry_at <= now:
                    self._start_connect(c)
            pending = len(self.connecting)
            self.run_until(lambda n=pending: len(self.connecting) < n  # type: ignore[misc]
                           or self.established >= want, 0.2)
        return time.monotonic() - t0

    def messages(self) -> bytes:
        attrs = attributes(self.injector_address)
        return b"".join(update(attrs, injected_prefixes(self.routes)))

    def inject(self, timeout: float, storm: bool = False) -> dict[str, object]:
        """The injector sends every route; or (``storm``) every client sends its
        own share of them (as nodes re-sending their blocks to a reflector
        that restarted) and each must get everyone else's."""
        inj = self.injector
        assert inj.sock is not None
        self.storm = storm
        if storm:
            prefixes = injected_prefixes(self.routes)
            share = len(prefixes) // len(self.clients)
            sends = []
            for i, c in enumerate(self.clients):
                mine = prefixes[i * share:(i + 1) * share]
                c.target = share * (len(self.clients) - 1)  # everyone's but its own
                sends.append((c, b"".join(update(attributes(c.address), mine))))
            data = b"".join(d for _, d in sends)
        else:
            data = self.messages()
            sends = [(inj, data)]
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.time()
        for c, d in sends:
            assert c.sock is not None
            c.sock.setblocking(True)
            c.sock.sendall(d)
            c.sock.setblocking(False)
        done = self.run_until(lambda: self.completed >= len(self.clients), timeout)
        t1 = time.time()
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        times = sorted(c.done_at - t0 for c in self.clients if c.done_at is not None)
        return {
            "clients": len(self.clients), "routes": self.routes, "complete": len(times),
            "all_done": done, "time_s": (max(times) if done and times else None),
            "wall_s": t1 - t0,
            "median_client_s": times[len(times) // 2] if times else None,
            "first_client_s": times[0] if times else None,
            "tool_cpu_s": (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime),
            "bytes_injected": len(data), "bad": sum(c.bad for c in self.clients),
            "wrong_attributes": self.wrong_attributes,
            "received": sum(c.count for c in self.clients),
            "injector_received": self.injector.count,
        }


def _stdin_line(swarm: Swarm) -> str:
    """Read a line from stdin while keeping the sessions alive."""
    import select

    out: list[str] = []

    def ready() -> bool:
        r, _, _ = select.select([sys.stdin], [], [], 0)
        if r:
            out.append(sys.stdin.readline())
        return bool(out)

    swarm.run_until(ready, 24 * 3600)
    return out[0]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="BGP client swarm for benchmarks.rr_fanout")
    ap.add_argument("--reflector", required=True)
    ap.add_argument("--base", required=True, help="first client address (the injector)")
    ap.add_argument("--clients", type=int, required=True)
    ap.add_argument("--routes", type=int, required=True)
    ap.add_argument("--asn", type=int, default=64512)
    ap.add_argument("--hold-time", type=int, default=240)
    ap.add_argument("--cluster-id")
    ap.add_argument("--timeout", type=float, default=300.0)
    ap.add_argument("--storm", action="store_true",
                    help="every client announces its share of the routes at once")
    args = ap.parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < args.clients + 64 <= hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (args.clients + 64, hard))
    addresses = host_addresses(args.base, args.clients + 1)
    swarm = Swarm(args.reflector, addresses, args.routes, asn=args.asn,
                  cluster_id=args.cluster_id, hold_time=args.hold_time)
    setup = swarm.connect_all(args.timeout)
    print(json.dumps({"ready": True, "established": swarm.established, "setup_s": setup}),
          flush=True)
    if _stdin_line(swarm).strip() != "go":
        return 1
    print(json.dumps(swarm.inject(args.timeout, args.storm)), flush=True)
    _stdin_line(swarm)  # hold the sessions until told (or EOF)
    return 0


if __name__ == "__main__":
    sys.exit(main())
