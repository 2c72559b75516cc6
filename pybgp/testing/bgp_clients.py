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
import asyncio
import json
import resource
import socket
import struct
import sys
import time
from collections.abc import Iterable, Sequence
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
                                 forwarding=frozenset({IPV4_UNICAST}), families=(IPV4_UNICAST,))
        caps = Caps(asn4=self.asn, route_refresh=True, graceful_restart=gr)
        self.send(wire.encode_open(self.asn, self.hold_time, self.router_id, caps))
        deadline = time.monotonic() + timeout
        got_open = False
        while True:
            kind, body = self._next(deadline)
            if kind == wire.OPEN:
                msg = wire.decode_open(body)
                self.remote_caps = msg.caps
                self._decoder = codec.UpdateDecoder(self.remote, msg.router_id, asn4=True)
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


class _Client(asyncio.Protocol):
    """One counting session of the swarm."""

    def __init__(self, swarm: Swarm, address: str):
        self.swarm, self.address = swarm, address
        self.framer = wire.Framer()
        self.transport: asyncio.Transport | None = None
        self.state = "connecting"
        self.count = 0
        self.withdrawn = 0
        self.done_at: float | None = None
        self.bad = 0
        self.eor = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.state = "OpenSent"
        sw = self.swarm
        transport.write(wire.encode_open(sw.asn, sw.hold_time, self.address,
                                         Caps(asn4=sw.asn, route_refresh=True)))

    def data_received(self, data: bytes) -> None:
        sw = self.swarm
        try:
            messages = self.framer.feed(data)
        except wire.WireError:
            self.bad += 1
            return
        for kind, body in messages:
            if kind == wire.UPDATE:
                self._update(body)
            elif kind == wire.KEEPALIVE:
                if self.state == "OpenConfirm":
                    self.state = "Established"
                    sw.established += 1
                    sw.wake()
            elif kind == wire.OPEN:
                assert self.transport is not None
                self.transport.write(wire.KEEPALIVE_MESSAGE)
                self.state = "OpenConfirm"
            elif kind == wire.NOTIFICATION:
                code, sub, _ = wire.decode_notification(body)
                self.state = f"closed: NOTIFICATION {code}/{sub}"

    def _update(self, body: bytes) -> None:
        sw = self.swarm
        wlen = (body[0] << 8) | body[1]
        if wlen:
            self.withdrawn += wlen // 5
        alen = (body[2 + wlen] << 8) | body[3 + wlen]
        if alen == 0 and wlen == 0:
            self.eor = True
            return
        nlri = body[4 + wlen + alen:]
        if not nlri:
            return
        n = len(nlri) // 5
        if len(nlri) % 5 or nlri[0::5].count(32) != n:
            self.bad += 1  # not all /32s: not what was injected
            return
        attrs = body[4 + wlen:4 + wlen + alen]
        if attrs is not sw.last_attrs and attrs != sw.last_attrs:
            if not sw.check_attributes(attrs):
                self.bad += n
                return
            sw.last_attrs = attrs
        self.count += n
        if self.count >= sw.routes and self.done_at is None:
            self.done_at = time.time()
            sw.completed += 1
            sw.wake()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.state == "Established":
            self.swarm.established -= 1
        self.state = "closed"


class Swarm:
    """C counting clients and one injector, all from ``addresses`` (the first
    is the injector), connected to ``reflector``."""

    def __init__(self, reflector: str, addresses: Sequence[str], routes: int, *,
                 asn: int = 64512, hold_time: int = 240, cluster_id: str | None = None,
                 port: int = 179):
        self.reflector, self.port = reflector, port
        self.injector_address, self.addresses = addresses[0], list(addresses[1:])
        self.routes, self.asn, self.hold_time = routes, asn, hold_time
        self.cluster_id = cluster_id
        self.clients: list[_Client] = []
        self.injector: _Client | None = None
        self.established = 0
        self.completed = 0
        self.last_attrs: bytes | None = None
        self._event = asyncio.Event()
        self.wrong_attributes = ""

    def wake(self) -> None:
        self._event.set()

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
        if seen.get(3) != inj:
            problems.append("NEXT_HOP")
        if seen.get(9) != inj:
            problems.append("ORIGINATOR_ID")
        if self.cluster_id is not None and seen.get(10, b"")[:4] != socket.inet_aton(
                self.cluster_id):
            problems.append("CLUSTER_LIST")
        if problems:
            self.wrong_attributes = ", ".join(problems)
        return not problems

    async def _wait(self, pred: object, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not pred():  # type: ignore[operator]
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._event.clear()
            try:
                await asyncio.wait_for(self._event.wait(), min(left, 0.5))
            except TimeoutError:
                pass
        return True

    async def _open(self, address: str) -> _Client:
        loop = asyncio.get_running_loop()
        for attempt in range(20):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((address, 0))
            sock.setblocking(False)
            try:
                await asyncio.wait_for(loop.sock_connect(sock, (self.reflector, self.port)), 5)
                _t, proto = await loop.create_connection(
                    lambda: _Client(self, address), sock=sock)
                return proto
            except (OSError, TimeoutError):
                sock.close()
                await asyncio.sleep(min(0.2 * (attempt + 1), 2.0))
        raise ConnectionError(f"{address}: cannot connect to {self.reflector}")

    async def connect_all(self, timeout: float) -> float:
        t0 = time.monotonic()
        sem = asyncio.Semaphore(64)  # connections being opened at once

        async def one(address: str) -> _Client:
            async with sem:
                return await self._open(address)

        self.clients = list(await asyncio.gather(*(one(a) for a in self.addresses)))
        self.injector = await self._open(self.injector_address)
        want = len(self.clients) + 1
        if not await self._wait(lambda: self.established >= want, timeout):
            raise TimeoutError(f"{self.established} of {want} sessions established")
        return time.monotonic() - t0

    def messages(self) -> bytes:
        attrs = attributes(self.injector_address)
        return b"".join(update(attrs, injected_prefixes(self.routes)))

    async def keepalives(self) -> None:
        while True:
            await asyncio.sleep(max(1.0, self.hold_time / 3))
            for c in [*self.clients, self.injector]:
                if c is not None and c.transport is not None and not c.transport.is_closing():
                    c.transport.write(wire.KEEPALIVE_MESSAGE)

    async def inject(self, timeout: float) -> dict[str, object]:
        assert self.injector is not None and self.injector.transport is not None
        data = self.messages()
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.time()
        self.injector.transport.write(data)
        done = await self._wait(lambda: self.completed >= len(self.clients), timeout)
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


async def _main(args: argparse.Namespace) -> int:
    addresses = host_addresses(args.base, args.clients + 1)
    swarm = Swarm(args.reflector, addresses, args.routes, asn=args.asn,
                  cluster_id=args.cluster_id, hold_time=args.hold_time)
    setup = await swarm.connect_all(args.timeout)
    ka = asyncio.get_running_loop().create_task(swarm.keepalives())
    print(json.dumps({"ready": True, "established": swarm.established, "setup_s": setup}),
          flush=True)
    loop = asyncio.get_running_loop()
    line = await loop.run_in_executor(None, sys.stdin.readline)  # "go" (EOF: stop)
    if line.strip() != "go":
        return 1
    result = await swarm.inject(args.timeout)
    print(json.dumps(result), flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)  # hold the sessions until told
    ka.cancel()
    return 0


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
    args = ap.parse_args(argv)
    return asyncio.run(_main(args))


if __name__ == "__main__":
    sys.exit(main())
