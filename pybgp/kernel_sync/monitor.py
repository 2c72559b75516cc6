"""Event-driven watch of the kernel's workload host routes (``/32 dev cali…``).

Owns: one rtnetlink socket subscribed to RTNLGRP_LINK, RTNLGRP_IPV4_ROUTE and
RTNLGRP_IPV6_ROUTE; the table of device host routes (/32, /128, no gateway,
unicast, one table) per interface; and the events "this prefix appeared on /
vanished from a ``cali*`` interface" derived from it.

How: :meth:`RouteMonitor.seed` dumps links and routes once (after
subscribing, so nothing falls between the dump and the events); after that
only kernel notifications are read — no periodic full scan. Link events
matter too: the kernel deletes IPv4 routes of a removed or downed interface
*without* notifying, so a link going away or down drops its IPv4 routes here;
a rename moves its routes in or out of the ``cali`` set. A receive-queue
overrun (ENOBUFS) triggers a re-dump, which is the only other full scan.

Use from asyncio with :meth:`attach` (non-blocking socket + loop.add_reader),
or, in tests and threads, with the blocking :meth:`wait` / :meth:`events`.

Must never: write to the kernel, block inside :meth:`read_events`, report a
route twice without a change in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import select
import socket
import struct
import sys
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from typing import Literal

from . import codec
from .desired import RT_TABLE_MAIN
from .netlink import RouteWriter, open_netlink_socket

GROUPS = (codec.RTNLGRP_LINK, codec.RTNLGRP_IPV4_ROUTE, codec.RTNLGRP_IPV6_ROUTE)
_RTM_PROTOCOL = 5  # offset of rtm_protocol in struct rtmsg


@dataclass(frozen=True, slots=True)
class RouteEvent:
    action: Literal["add", "delete"]
    prefix: str
    ifname: str


@dataclass(slots=True)
class _Link:
    name: str
    up: bool


class HostRoutes:
    """Pure state: links, device host routes per link, and what was reported.

    Fed with rtnetlink messages (:meth:`feed`) or a full dump (:meth:`reset`);
    returns the (prefix, ifname) changes of the watched set. No I/O.
    """

    def __init__(self, ifname_prefix: str = "cali", table: int = RT_TABLE_MAIN,
                 ignore_protocols: Collection[int] = (), track_links: bool = False) -> None:
        self.ifname_prefix = ifname_prefix
        # With ``track_links``, watched interfaces that appeared, went up or
        # down, or vanished since the last take_link_changes() (name → up;
        # None: gone) — the agent programs an endpoint when its link comes up.
        self.track_links = track_links
        self.link_changes: dict[str, bool | None] = {}
        self.table = table
        # Route protocols whose notifications are dropped before parsing (an
        # owner that knows its routes are never host routes, e.g. the speaker's).
        self.ignore_protocols = frozenset(ignore_protocols)
        self._links: dict[int, _Link] = {}
        self._routes: dict[int, dict[str, int]] = {}  # ifindex -> {prefix: family}
        self._reported: dict[int, dict[str, str]] = {}  # ifindex -> {prefix: ifname}

    def current(self) -> set[tuple[str, str]]:
        """The (prefix, ifname) pairs reported as present."""
        return {(p, n) for per in self._reported.values() for p, n in per.items()}

    def links(self) -> dict[str, bool]:
        """Watched interfaces (name starts with the prefix) → up."""
        return {ln.name: ln.up for ln in self._links.values()
                if ln.name.startswith(self.ifname_prefix)}

    def take_link_changes(self) -> dict[str, bool | None]:
        changes, self.link_changes = self.link_changes, {}
        return changes

    def _link_changed(self, old: _Link | None, new: _Link | None) -> None:
        if not self.track_links:
            return
        prefix = self.ifname_prefix
        if old is not None and old.name.startswith(prefix) and (
                new is None or new.name != old.name):
            self.link_changes[old.name] = None
        if new is not None and new.name.startswith(prefix) and (
                old is None or old.name != new.name or old.up != new.up):
            self.link_changes[new.name] = new.up

    def is_host_route(self, raw: codec.RawRoute) -> bool:
        full = 32 if raw.family == socket.AF_INET else 128
        return (
            raw.dst_len == full
            and raw.rtype == codec.RTN_UNICAST
            and raw.table == self.table
            and raw.gateway is None
            and not raw.multipath
            and raw.oif > 0
            and not raw.flags & codec.RTM_F_CLONED
        )

    def _watched(self, index: int) -> str | None:
        """The interface's name if it is watched (name starts with the prefix)."""
        link = self._links.get(index)
        if link is None or not link.name.startswith(self.ifname_prefix):
            return None
        return link.name

    def _sync_link(self, index: int, events: list[RouteEvent]) -> None:
        name = self._watched(index)
        want: dict[str, str] = {}
        if name is not None:
            want = {p: name for p in self._routes.get(index, {})}
        have = self._reported.get(index, {})
        for p, n in have.items():
            if want.get(p) != n:
                events.append(RouteEvent("delete", p, n))
        for p, n in want.items():
            if have.get(p) != n:
                events.append(RouteEvent("add", p, n))
        if want:
            self._reported[index] = want
        else:
            self._reported.pop(index, None)

    def _on_route(self, msg: codec.Message, events: list[RouteEvent]) -> None:
        ignore = self.ignore_protocols
        if ignore and msg.data[codec.HDR_LEN + _RTM_PROTOCOL] in ignore:
            return
        raw = codec.parse_route(msg)
        if raw is None or not self.is_host_route(raw):
            return
        index = raw.oif
        if msg.type == codec.RTM_NEWROUTE:
            self._routes.setdefault(index, {})[raw.prefix] = raw.family
        else:
            per = self._routes.get(index)
            if per is None or per.pop(raw.prefix, None) is None:
                return
            if not per:
                del self._routes[index]
        # Incremental: only this prefix on this interface can have changed.
        name = self._watched(index)
        reported = self._reported.get(index, {})
        present = raw.prefix in self._routes.get(index, {})
        shown = reported.get(raw.prefix)
        if present and name is not None:
            if shown != name:
                if shown is not None:
                    events.append(RouteEvent("delete", raw.prefix, shown))
                events.append(RouteEvent("add", raw.prefix, name))
                self._reported.setdefault(index, {})[raw.prefix] = name
        elif shown is not None:
            events.append(RouteEvent("delete", raw.prefix, shown))
            del reported[raw.prefix]
            if not reported:
                del self._reported[index]

    def _on_link(self, msg: codec.Message, events: list[RouteEvent]) -> None:
        link = codec.parse_link(msg)
        old = self._links.get(link.index)
        if msg.type == codec.RTM_DELLINK:
            self._links.pop(link.index, None)
            self._routes.pop(link.index, None)  # all its routes are gone
            self._link_changed(old, None)
        else:
            up = bool(link.flags & codec.IFF_UP)
            self._links[link.index] = _Link(link.name, up)
            self._link_changed(old, self._links[link.index])
            if not up and link.index in self._routes:
                # IPv4 routes of a downed device are flushed without a notification.
                per = {p: f for p, f in self._routes[link.index].items() if f != socket.AF_INET}
                if per:
                    self._routes[link.index] = per
                else:
                    del self._routes[link.index]
        self._sync_link(link.index, events)

    def feed(self, data: bytes) -> list[RouteEvent]:
        """Apply the messages in ``data`` (one recv's worth); return the changes."""
        events: list[RouteEvent] = []
        for msg in codec.iter_messages(data):
            if msg.type in (codec.RTM_NEWROUTE, codec.RTM_DELROUTE):
                self._on_route(msg, events)
            elif msg.type in (codec.RTM_NEWLINK, codec.RTM_DELLINK):
                self._on_link(msg, events)
        return events

    def reset(
        self, links: dict[int, codec.RawLink], routes: list[codec.RawRoute]
    ) -> list[RouteEvent]:
        """Replace the state by a full dump; return the changes against what was
        reported before (at start-up: one "add" per watched route)."""
        before = self._links
        self._links = {i: _Link(ln.name, bool(ln.flags & codec.IFF_UP)) for i, ln in links.items()}
        if self.track_links:
            for i in set(before) | set(self._links):
                self._link_changed(before.get(i), self._links.get(i))
        self._routes = {}
        for raw in routes:
            if self.is_host_route(raw) and raw.protocol not in self.ignore_protocols:
                self._routes.setdefault(raw.oif, {})[raw.prefix] = raw.family
        events: list[RouteEvent] = []
        for index in set(self._reported) | set(self._routes):
            self._sync_link(index, events)
        return events


SO_ATTACH_FILTER = 26
_BPF_LD_B_ABS = 0x30  # BPF_LD | BPF_B | BPF_ABS
_BPF_JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_BPF_RET_K = 0x06  # BPF_RET | BPF_K
_SOCK_FILTER = struct.Struct("=HBBI")


def protocol_filter(protocols: Collection[int]) -> list[tuple[int, int, int, int]]:
    """A classic BPF program (code, jt, jf, k) for a netlink socket that drops
    RTM_NEWROUTE/RTM_DELROUTE messages whose rtm_protocol is in ``protocols``
    and accepts everything else.

    Only for sockets that receive notifications (one message per datagram):
    the program looks at the first message of a datagram only.
    """
    protos = sorted(set(protocols))
    if not protos or not all(0 <= p < 256 for p in protos):
        raise ValueError(f"protocols must be 0..255: {protocols!r}")
    lo, hi = (4, 5) if sys.byteorder == "little" else (5, 4)  # nlmsg_type, host order
    n = len(protos)
    # Layout: 0 ld hi; 1 jeq 0; 2 ld lo; 3 jeq NEW; 4 jeq DEL; 5 ld proto;
    # 6 .. 5+n jeq p; 6+n accept; 7+n drop.
    accept, drop = 6 + n, 7 + n
    prog = [
        (_BPF_LD_B_ABS, 0, 0, hi),
        (_BPF_JEQ_K, 0, accept - 2, 0),
        (_BPF_LD_B_ABS, 0, 0, lo),
        (_BPF_JEQ_K, 1, 0, codec.RTM_NEWROUTE),
        (_BPF_JEQ_K, 0, accept - 5, codec.RTM_DELROUTE),
        (_BPF_LD_B_ABS, 0, 0, codec.HDR_LEN + _RTM_PROTOCOL),
    ]
    for i, p in enumerate(protos):
        at = 6 + i
        prog.append((_BPF_JEQ_K, drop - at - 1, 0, p))
    prog += [(_BPF_RET_K, 0, 0, 0xFFFFFFFF), (_BPF_RET_K, 0, 0, 0)]
    return prog


def attach_protocol_filter(sock: socket.socket, protocols: Collection[int]) -> None:
    """Attach :func:`protocol_filter` to ``sock`` (SO_ATTACH_FILTER)."""
    prog = protocol_filter(protocols)
    code = b"".join(_SOCK_FILTER.pack(*ins) for ins in prog)
    buf = ctypes.create_string_buffer(code, len(code))
    fprog = struct.pack("@HP", len(prog), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)  # the kernel copies it


class RouteMonitor:
    """Watches host routes on interfaces whose name starts with ``ifname_prefix``."""

    RECV_SIZE = 1 << 18

    def __init__(
        self,
        netns: str | None = None,
        ifname_prefix: str = "cali",
        table: int = RT_TABLE_MAIN,
        ignore_protocols: Collection[int] = (),
        track_links: bool = False,
    ) -> None:
        self.netns = netns
        self.state = HostRoutes(ifname_prefix, table, ignore_protocols, track_links)
        self.sock = open_netlink_socket(netns, GROUPS)
        if ignore_protocols:
            # Best effort: the kernel then drops those notifications before they
            # reach us (no wake-up, no copy); HostRoutes skips them anyway.
            with contextlib.suppress(OSError):
                attach_protocol_filter(self.sock, ignore_protocols)
        self.sock.setblocking(False)
        self._buf = bytearray(self.RECV_SIZE)
        self.overruns = 0
        self._loop: asyncio.AbstractEventLoop | None = None

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        if self._loop is not None:
            self.detach()
        self.sock.close()

    def __enter__(self) -> RouteMonitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def current(self) -> set[tuple[str, str]]:
        """The (prefix, ifname) pairs reported as present."""
        return self.state.current()

    # -- full scans: start-up and after an overrun only ---------------------
    def seed(self) -> list[RouteEvent]:
        """Dump links and routes (already subscribed, so nothing is missed),
        then apply any events queued meanwhile. Returns the resulting events:
        at start-up, one "add" per existing workload route."""
        with RouteWriter(self.netns) as reader:
            links = reader.links()
            routes: list[codec.RawRoute] = []
            for family in (socket.AF_INET, socket.AF_INET6):
                routes += reader.raw_routes(family, table=self.state.table)
        return self.state.reset(links, routes) + self.read_events()

    rescan = seed

    # -- reading events ----------------------------------------------------
    def read_events(self) -> list[RouteEvent]:
        """Everything the kernel has queued, as events; never blocks."""
        events: list[RouteEvent] = []
        while True:
            try:
                n = self.sock.recv_into(self._buf, self.RECV_SIZE, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return events
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                self.overruns += 1  # events were lost: re-read the whole state
                return events + self.seed()
            events += self.state.feed(bytes(self._buf[:n]))

    def wait(self, timeout: float | None = None) -> list[RouteEvent]:
        """Block until at least one event (or ``timeout`` seconds); return them."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([self.sock], [], [], left)
            events = self.read_events() if ready else []
            if events or (deadline is not None and time.monotonic() >= deadline):
                return events

    def events(self, timeout: float | None = None) -> Iterator[RouteEvent]:
        """Yield events as they come; stop after ``timeout`` seconds without any."""
        while True:
            batch = self.wait(timeout)
            if not batch:
                return
            yield from batch

    def attach(
        self,
        callback: Callable[[list[RouteEvent]], object],
        loop: asyncio.AbstractEventLoop | None = None,
        on_links: Callable[[dict[str, bool | None]], object] | None = None,
    ) -> None:
        """Call ``callback(events)`` from ``loop`` whenever the kernel reports
        changes (and, with ``track_links``, ``on_links(changes)`` when watched
        interfaces appear, go up or down, or vanish)."""
        self._loop = loop or asyncio.get_running_loop()

        def readable() -> None:
            events = self.read_events()
            if events:
                callback(events)
            if on_links is not None and self.state.link_changes:
                on_links(self.state.take_link_changes())

        self._loop.add_reader(self.sock.fileno(), readable)

    def detach(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self.sock.fileno())
            self._loop = None
