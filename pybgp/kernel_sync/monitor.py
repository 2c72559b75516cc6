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
import errno
import select
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

from . import codec
from .desired import RT_TABLE_MAIN
from .netlink import RouteWriter, open_netlink_socket

GROUPS = (codec.RTNLGRP_LINK, codec.RTNLGRP_IPV4_ROUTE, codec.RTNLGRP_IPV6_ROUTE)


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

    def __init__(self, ifname_prefix: str = "cali", table: int = RT_TABLE_MAIN) -> None:
        self.ifname_prefix = ifname_prefix
        self.table = table
        self._links: dict[int, _Link] = {}
        self._routes: dict[int, dict[str, int]] = {}  # ifindex -> {prefix: family}
        self._reported: dict[int, dict[str, str]] = {}  # ifindex -> {prefix: ifname}

    def current(self) -> set[tuple[str, str]]:
        """The (prefix, ifname) pairs reported as present."""
        return {(p, n) for per in self._reported.values() for p, n in per.items()}

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
        if msg.type == codec.RTM_DELLINK:
            self._links.pop(link.index, None)
            self._routes.pop(link.index, None)  # all its routes are gone
        else:
            up = bool(link.flags & codec.IFF_UP)
            self._links[link.index] = _Link(link.name, up)
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
        self._links = {i: _Link(ln.name, bool(ln.flags & codec.IFF_UP)) for i, ln in links.items()}
        self._routes = {}
        for raw in routes:
            if self.is_host_route(raw):
                self._routes.setdefault(raw.oif, {})[raw.prefix] = raw.family
        events: list[RouteEvent] = []
        for index in set(self._reported) | set(self._routes):
            self._sync_link(index, events)
        return events


class RouteMonitor:
    """Watches host routes on interfaces whose name starts with ``ifname_prefix``."""

    RECV_SIZE = 1 << 18

    def __init__(
        self,
        netns: str | None = None,
        ifname_prefix: str = "cali",
        table: int = RT_TABLE_MAIN,
    ) -> None:
        self.netns = netns
        self.state = HostRoutes(ifname_prefix, table)
        self.sock = open_netlink_socket(netns, GROUPS)
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
    ) -> None:
        """Call ``callback(events)`` from ``loop`` whenever the kernel reports changes."""
        self._loop = loop or asyncio.get_running_loop()

        def readable() -> None:
            events = self.read_events()
            if events:
                callback(events)

        self._loop.add_reader(self.sock.fileno(), readable)

    def detach(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self.sock.fileno())
            self._loop = None
