"""The netlink shell: one NETLINK_ROUTE socket that writes and reads routes.

Owns: opening rtnetlink sockets in the current or a named network namespace
(:func:`open_netlink_socket`), the interface name ↔ index cache, applying a
:class:`~pybgp.kernel_sync.desired.Plan` in pipelined batches
(:class:`RouteWriter`) and dumping the kernel's routes of one protocol.

Batching: a chunk of up to ``chunk`` requests (default 1000) is encoded into
one buffer and handed to the kernel in one ``send``; the kernel processes the
messages in order, synchronously. Only the chunk's last request asks for an
acknowledgement (NLM_F_ACK); the kernel answers every failed request anyway,
so once the last answer is read, each request without an answer succeeded
(an ack per request cost half the kernel's time: ~10 against ~5 µs a route,
docs/benchmarks.md). Answers are matched to their route by sequence number:
a delete that finds nothing (ESRCH) is success; every other error is
returned in :class:`ApplyResult.errors`, never dropped. If the receive queue
overflows (ENOBUFS), answers may be lost, so every request without one is
reported as an error too, and the caller resyncs.

Must never: decide what to write (that is :mod:`.desired`), write a route of
another protocol, touch the root namespace when given ``netns``, or create a
network namespace (a missing one is an error: the path is opened read-only,
without O_CREAT).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import select
import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar, overload

from . import codec
from .desired import RT_TABLE_MAIN, KRoute, Plan

CLONE_NEWNET = 0x40000000
SO_SNDBUFFORCE = 32
SO_RCVBUFFORCE = 33
_T = TypeVar("_T")


def _link_of(msg: codec.Message) -> codec.RawLink | None:
    return codec.parse_link(msg) if msg.type == codec.RTM_NEWLINK else None


def netns_path(netns: str) -> str:
    """``/run/netns/<name>`` for a name, or the path itself for an absolute path."""
    if netns.startswith("/"):
        return netns
    if "/" in netns or netns in ("", ".", ".."):
        raise ValueError(f"bad netns name {netns!r}")
    return f"/run/netns/{netns}"


def _setns(fd: int) -> None:
    setns = getattr(os, "setns", None)  # Python >= 3.12
    if setns is not None:
        setns(fd, CLONE_NEWNET)
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def run_in_netns(netns: str | None, fn: Callable[[], _T]) -> _T:
    """Run ``fn`` with the network namespace ``netns`` (None: the current one).

    The switch happens in a short-lived thread of its own (setns on a network
    namespace affects only the calling thread), so the rest of the process
    stays where it is. Sockets created by ``fn`` stay bound to ``netns``.
    """
    if netns is None:
        return fn()
    fd = os.open(netns_path(netns), os.O_RDONLY | os.O_CLOEXEC)  # no O_CREAT, ever
    box: dict[str, object] = {}

    def run() -> None:
        try:
            _setns(fd)
            box["value"] = fn()
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    try:
        t = threading.Thread(target=run, name=f"netns-{netns}", daemon=True)
        t.start()
        t.join()
    finally:
        os.close(fd)
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


def _set_buf(sock: socket.socket, force: int, plain: int, size: int) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, force, size)  # root: beyond rmem_max
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, plain, size)


def open_netlink_socket(
    netns: str | None = None,
    groups: Iterable[int] = (),
    bufsize: int = 8 << 20,
    rcvbuf: int | None = None,
) -> socket.socket:
    """A bound NETLINK_ROUTE socket in ``netns``, subscribed to RTNLGRP ``groups``.

    Options: large buffers (acks and events must not overflow), capped acks
    (no copy of the request in each ack), extended acks (the kernel's error
    text), strict dump checking (the kernel filters dumps by protocol/table).
    """

    def make() -> socket.socket:
        sock = socket.socket(
            socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, codec.NETLINK_ROUTE
        )
        try:
            _set_buf(sock, SO_SNDBUFFORCE, socket.SO_SNDBUF, bufsize)
            _set_buf(sock, SO_RCVBUFFORCE, socket.SO_RCVBUF, rcvbuf or bufsize)
            for opt in (codec.NETLINK_CAP_ACK, codec.NETLINK_EXT_ACK, codec.NETLINK_GET_STRICT_CHK):
                # Older kernels lack some; we still filter dumps in user space.
                with contextlib.suppress(OSError):
                    sock.setsockopt(codec.SOL_NETLINK, opt, 1)
            mask = 0
            for g in groups:
                mask |= 1 << (g - 1)
            sock.bind((0, mask))
        except BaseException:
            sock.close()
            raise
        return sock

    return run_in_netns(netns, make)


@dataclass(frozen=True, slots=True)
class RouteError:
    op: str  # 'add' | 'replace' | 'delete'
    route: KRoute
    errno: int
    message: str = ""

    def __str__(self) -> str:
        why = self.message or os.strerror(self.errno)
        return f"{self.op} {self.route.prefix}: {errno.errorcode.get(self.errno, self.errno)} {why}"


@dataclass(slots=True)
class ApplyResult:
    done: list[tuple[str, KRoute]] = field(default_factory=list)
    errors: list[RouteError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def extend(self, other: ApplyResult) -> None:
        self.done += other.done
        self.errors += other.errors


class RouteWriter:
    """Writes and dumps routes through one rtnetlink socket.

    ``writes`` counts route write requests sent to the kernel since creation
    (tests use it to prove a restart writes nothing).
    """

    RECV_SIZE = 1 << 18
    MAX_SEND = 1 << 20  # bytes per send(); must stay below the socket's sndbuf

    def __init__(
        self,
        netns: str | None = None,
        chunk: int = 1000,
        timeout: float = 30.0,
        rcvbuf: int | None = None,
    ) -> None:
        if chunk < 1:
            raise ValueError("chunk must be >= 1")
        self.netns = netns
        self.chunk = chunk
        self.sock = open_netlink_socket(netns, rcvbuf=rcvbuf)
        self.timeout = timeout
        self._seq = 0
        self._buf = bytearray(self.RECV_SIZE)
        self._by_name: dict[str, int] = {}
        self._by_index: dict[int, str] = {}
        self._nh_cache: codec.NexthopCache = {}
        self.writes = 0

    # -- plumbing -----------------------------------------------------------
    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RouteWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFFFFFF or 1
        return self._seq

    def _recv(self) -> bytes:
        n = self._recv_into()
        return bytes(self._buf[:n])

    def _dump(self, request: Callable[[int], bytes],
              convert: Callable[[codec.Message], _T | None]) -> list[_T]:
        """One dump, each message converted as it arrives (None: skipped), so
        a 100k-route dump never holds every raw message at once; restarts
        (up to 3 times) if the kernel says a concurrent change interrupted it."""
        for _attempt in range(4):
            seq = self._next_seq()
            self.sock.send(request(seq))
            items: list[_T] = []
            interrupted = False
            while True:
                data = self._recv()
                finished = False
                for msg in codec.iter_messages(data):
                    if msg.seq != seq:
                        continue  # a late ack of an earlier request
                    if msg.flags & codec.NLM_F_DUMP_INTR:
                        interrupted = True
                    if msg.type == codec.NLMSG_DONE:
                        finished = True
                        break
                    if msg.type == codec.NLMSG_ERROR:
                        ack = codec.parse_ack(msg)
                        if ack.error in (0, errno.ENOENT):  # ENOENT: no such table
                            finished = True
                            break
                        raise OSError(
                            ack.error, f"netlink dump: {ack.text or os.strerror(ack.error)}"
                        )
                    item = convert(msg)
                    if item is not None:
                        items.append(item)
                if finished:
                    break
            if not interrupted:
                return items
        raise OSError(errno.EINTR, "netlink dump kept being interrupted")

    # -- links --------------------------------------------------------------
    def links(self) -> dict[int, codec.RawLink]:
        """All interfaces of the namespace by index (also refreshes the cache)."""
        links: dict[int, codec.RawLink] = {}
        for link in self._dump(codec.encode_link_dump, _link_of):
            links[link.index] = link
        self._nh_cache.clear()  # indexes may have changed
        self._by_name = {link.name: i for i, link in links.items()}
        self._by_index = {i: link.name for i, link in links.items()}
        return links

    def refresh_links(self) -> None:
        self.links()

    def ifindex(self, dev: str | int) -> int:
        """Index of interface ``dev`` in the writer's namespace (cached)."""
        if isinstance(dev, int):
            return dev
        index = self._by_name.get(dev)
        if index is None:
            self.refresh_links()
            index = self._by_name.get(dev)
            if index is None:
                raise LookupError(f"no such interface {dev!r}")
        return index

    def ifname(self, index: int) -> str | int:
        """Name of interface ``index``, or the index itself if unknown."""
        name = self._by_index.get(index)
        if name is None:
            self.refresh_links()
            name = self._by_index.get(index)
        return index if name is None else name

    # -- writes -------------------------------------------------------------
    def apply(self, plan: Plan) -> ApplyResult:
        """Apply ``plan``: adds and replaces first, then deletes."""
        return self.write(plan.writes())

    def write(self, ops: list[tuple[str, KRoute]]) -> ApplyResult:
        result = ApplyResult()
        for start in range(0, len(ops), self.chunk):
            self._write_chunk(ops[start : start + self.chunk], result)
        return result

    def _write_chunk(self, ops: list[tuple[str, KRoute]], result: ApplyResult) -> None:
        sent: dict[int, tuple[str, KRoute]] = {}
        parts: list[bytes] = []
        encode, ifindex, nh_cache = codec.encode_route, self.ifindex, self._nh_cache
        for op, route in ops:
            seq = self._next_seq()
            try:
                parts.append(encode(op, route, seq, ifindex, nh_cache, ack=False))
            except LookupError as exc:
                result.errors.append(RouteError(op, route, errno.ENODEV, str(exc)))
                continue
            sent[seq] = (op, route)
        if not sent:
            return
        last = next(reversed(sent))
        parts[-1] = encode(*sent[last], last, ifindex, nh_cache, ack=True)
        self._send_all(parts)
        self.writes += len(parts)
        # The kernel handled every request inside send(), in order, and queued
        # an answer for each one that failed and for the last one.
        answered, failed, complete = self._answers(sent, last, result)
        if any(e.errno == errno.ENODEV for e in result.errors):
            self.refresh_links()  # an interface was re-created: indexes changed
        if complete:  # nothing was lost: what did not fail, succeeded
            result.done.extend(item for seq, item in sent.items() if seq not in failed)
            return
        for seq, (op, route) in sent.items():  # answers were dropped: which, we cannot know
            if seq not in answered:
                result.errors.append(RouteError(
                    op, route, errno.ENOBUFS, "ack lost (receive queue overrun); resync"))
            elif seq not in failed:
                result.done.append((op, route))

    def _answers(self, sent: dict[int, tuple[str, KRoute]], last: int,
                 result: ApplyResult) -> tuple[set[int], set[int], bool]:
        """Read the kernel's answers to ``sent`` until the one to ``last``
        (or, after a receive queue overrun, until none is left); a failure
        goes to ``result.errors``. Returns the sequence numbers answered,
        those that failed, and whether no answer can have been lost."""
        answered: set[int] = set()
        failed: set[int] = set()
        buf = self._buf
        unpack_hdr = codec.HDR_ERR.unpack_from
        overrun = False
        while last not in answered:
            try:
                n = self._recv_into(wait=not overrun)
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    overrun = True
                    continue
                if exc.errno == errno.EAGAIN:
                    break  # after an overrun: everything that will come has come
                raise
            off = 0
            while off + codec.HDR_ERR.size <= n:
                length, mtype, flags, seq, _pid, err = unpack_hdr(buf, off)
                if length < codec.HDR_LEN:
                    break
                item = sent.get(seq) if mtype == codec.NLMSG_ERROR else None
                if item is not None:  # else: a late answer to an earlier, overrun chunk
                    answered.add(seq)
                    if err and not (err == -errno.ESRCH and item[0] == "delete"):
                        failed.add(seq)
                        msg = codec.Message(mtype, flags, seq, bytes(buf[off : off + length]))
                        ack = codec.parse_ack(msg)
                        result.errors.append(RouteError(item[0], item[1], ack.error, ack.text))
                off += (length + 3) & ~3
        return answered, failed, last in answered and not overrun

    def _recv_into(self, wait: bool = True) -> int:
        """One datagram into ``self._buf``; waits up to ``timeout`` if ``wait``.

        The socket stays in blocking mode with MSG_DONTWAIT on each call: a
        Python socket timeout would add a poll() before every recv.
        """
        try:
            return self.sock.recv_into(self._buf, self.RECV_SIZE, socket.MSG_DONTWAIT)
        except BlockingIOError:
            if not wait:
                raise
        ready, _, _ = select.select([self.sock], [], [], self.timeout)
        if not ready:
            raise TimeoutError(f"no netlink reply within {self.timeout} s")
        return self.sock.recv_into(self._buf, self.RECV_SIZE, socket.MSG_DONTWAIT)

    def _send_all(self, parts: list[bytes]) -> None:
        batch: list[bytes] = []
        size = 0
        for part in parts:
            if size + len(part) > self.MAX_SEND and batch:
                self.sock.sendall(b"".join(batch))
                batch, size = [], 0
            batch.append(part)
            size += len(part)
        if batch:
            self.sock.sendall(b"".join(batch))

    # -- reads --------------------------------------------------------------
    def raw_routes(self, family: int, protocol: int = 0, table: int = 0) -> list[codec.RawRoute]:
        """Routes of one family as the kernel reports them; 0 = any protocol/table."""
        return self._route_dump(family, protocol, table, lambda raw: raw)

    def _route_dump(self, family: int, protocol: int, table: int,
                    convert: Callable[[codec.RawRoute], _T | None]) -> list[_T]:
        def one(msg: codec.Message) -> _T | None:
            if msg.type != codec.RTM_NEWROUTE:
                return None
            raw = codec.parse_route(msg)
            if raw is None:
                return None
            if (protocol and raw.protocol != protocol) or (table and raw.table != table):
                return None  # the kernel filters too, when it supports strict checking
            return convert(raw)

        request = functools.partial(
            codec.encode_route_dump, family=family, protocol=protocol, table=table
        )
        return self._dump(request, one)

    @overload
    def dump_routes(self, protocol: int, table: int = ...,
                    families: Iterable[int] = ..., keep: None = None) -> list[KRoute]: ...

    @overload
    def dump_routes(self, protocol: int, table: int = ...,
                    families: Iterable[int] = ..., *,
                    keep: Callable[[KRoute], KRoute | str]) -> list[KRoute | str]: ...

    def dump_routes(
        self,
        protocol: int,
        table: int = RT_TABLE_MAIN,
        families: Iterable[int] = (socket.AF_INET, socket.AF_INET6),
        keep: Callable[[KRoute], KRoute | str] | None = None,
    ) -> list[Any]:
        """The kernel's routes of ``protocol`` in ``table`` (devices as names).

        ``keep`` sees each route as it is decoded and returns what to hold
        instead (KernelSync's resync holds a right route as its prefix, so a
        100k-route dump does not hold a second copy of every route).
        """
        if not protocol or not table:
            raise ValueError("dump_routes needs a protocol and a table")
        self.refresh_links()
        ifname = self.ifname

        def convert(raw: codec.RawRoute) -> KRoute | str | None:
            route = codec.to_kroute(raw, ifname)
            return route if route is None or keep is None else keep(route)

        out: list[KRoute | str] = []
        for family in families:
            out += self._route_dump(family, protocol, table, convert)
        return out

    def dump(self, protocol: int, table: int = RT_TABLE_MAIN) -> dict[str, KRoute]:
        """:meth:`dump_routes` keyed by prefix (duplicates: the first one wins)."""
        out: dict[str, KRoute] = {}
        for route in self.dump_routes(protocol, table):
            out.setdefault(route.prefix, route)
        return out
