"""KernelSync: the desired routes of one owner, kept equal to the kernel's.

Owns: the desired route set of one route protocol number in one table, what
is known of the kernel's, and the two ways of closing the gap —
:meth:`KernelSync.apply` (write the known differences; the fast path after
every change) and :meth:`KernelSync.resync` (dump the kernel's routes of our
protocol, then the same: BIRD's mark-and-sweep; run at start-up and now and
then to repair drift).

What is known of the kernel is kept as the *differences* from the desired
set: a prefix absent from them holds its desired route (or nothing, when
none is desired). After a successful write there is nothing to remember, so
a converged node keeps one map of its routes, not two (~50 B a route: 5 MiB
at 100k learned routes). That map holds no route objects either
(:class:`RouteTable`): most routes share their next hops and differ only in
prefix, so it keeps each prefix with a shared *shape* and builds a
:class:`KRoute` when one is read (another ~80 B a route).

An owner that shares its mark with another writer (the agent: the CNI plugin
writes protocol-80 routes too, before the endpoint that explains them
exists) sets :attr:`KernelSync.spare`: a route of ours where none is
desired is then left in the kernel while ``spare(route)`` says so, and stays
among the known differences, so the apply after ``spare`` changes its mind
deletes it without another dump (:meth:`strays` lists those routes).

Invariants:
- only routes of ``protocol`` are ever written or deleted (the diff ignores
  everything else and every delete names our protocol);
- a restart followed by :meth:`resync` writes nothing for routes that are
  still right, and deletes only stale routes of ours;
- closing deletes nothing (BIRD's ``persist``): routes survive a restart.

Must never: touch the kernel outside :meth:`apply` / :meth:`resync`
(``set_desired`` and ``update`` only record), or flush routes on exit.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from typing import Protocol, overload

from .desired import (
    DEFAULT_PROTOCOL,
    RT_TABLE_MAIN,
    Kind,
    KRoute,
    NextHop,
    Plan,
    canonical_prefix,
    diff_prefixes,
)
from .netlink import ApplyResult, RouteWriter


class RouteBackend(Protocol):
    """What KernelSync needs from the kernel side (RouteWriter, or a fake)."""

    def apply(self, plan: Plan) -> ApplyResult: ...

    @overload
    def dump_routes(self, protocol: int, table: int = ..., *,
                    keep: None = None) -> list[KRoute]: ...

    @overload
    def dump_routes(self, protocol: int, table: int = ..., *,
                    keep: Callable[[KRoute], KRoute | str]) -> list[KRoute | str]: ...

    def ifname(self, index: int) -> str | int: ...

    def close(self) -> None: ...


class KernelSync:
    """Desired state of our routes, applied to the kernel by diff.

    ``backend`` defaults to a :class:`RouteWriter` on ``netns`` (None = the
    current namespace). ``needs_resync`` turns true when an outcome is unknown
    (lost acks); the owner should then call :meth:`resync`.
    """

    def __init__(
        self,
        backend: RouteBackend | None = None,
        *,
        protocol: int = DEFAULT_PROTOCOL,
        table: int = RT_TABLE_MAIN,
        netns: str | None = None,
    ) -> None:
        self.backend: RouteBackend = backend if backend is not None else RouteWriter(netns)
        self.protocol = protocol
        self.table = table
        self._desired = RouteTable()
        # Where the kernel (as far as known) differs from _desired: prefix → the
        # route of ours it holds there, None for none. Every other prefix holds
        # its desired route. These are exactly the prefixes apply() must write.
        self._differs: dict[str, KRoute | None] = {}
        self._extra: list[KRoute] = []  # duplicate routes of ours seen by the last dump
        self.needs_resync = False
        self.synced = False  # no dump read yet: the first apply() resyncs
        self.last_result = ApplyResult()
        #: Consulted for each route of ours where nothing is desired, before it
        #: is deleted: True leaves it in the kernel for now (see module doc).
        self.spare: Callable[[KRoute], bool] | None = None

    # -- desired state (no I/O) ---------------------------------------------
    @property
    def desired(self) -> Mapping[str, KRoute]:
        return self._desired

    @property
    def actual(self) -> Mapping[str, KRoute]:
        """What the kernel had after the last dump and the writes since."""
        return _Actual(self._desired, self._differs)

    def _kernel_has(self, prefix: str) -> KRoute | None:
        differs = self._differs
        return differs[prefix] if prefix in differs else self._desired.get(prefix)

    def _note(self, prefix: str, kernel: KRoute | None) -> None:
        """Record that the kernel holds ``kernel`` (None: nothing of ours) at ``prefix``."""
        if kernel is None:
            right = prefix not in self._desired
        else:
            right = self._desired.holds(prefix, kernel)
        if right:
            self._differs.pop(prefix, None)
        else:
            self._differs[prefix] = kernel

    def _check(self, route: KRoute) -> KRoute:
        if route.protocol != self.protocol or route.table != self.table:
            raise ValueError(
                f"route {route.prefix} is protocol {route.protocol} table {route.table}; "
                f"this KernelSync owns protocol {self.protocol} table {self.table}"
            )
        if any(isinstance(nh.dev, int) for nh in route.nexthops):
            # The kernel reports devices by index, we compare by name.
            hops = tuple(
                NextHop(nh.gateway, self.backend.ifname(nh.dev), nh.onlink, nh.weight)
                if isinstance(nh.dev, int)
                else nh
                for nh in route.nexthops
            )
            route = KRoute(
                route.prefix, route.kind, hops, route.protocol, route.table, route.metric
            )
        return route

    def set_desired(self, routes: Iterable[KRoute] | Mapping[str, KRoute]) -> None:
        """Replace the whole desired set (applied by the next apply/resync)."""
        values = routes.values() if isinstance(routes, Mapping) else routes
        desired = RouteTable()
        for route in values:
            route = self._check(route)
            desired[route.prefix] = route
        kernel = {p: self._kernel_has(p) for p in (*self._desired, *self._differs)
                  if p not in desired}
        kernel.update((p, self._kernel_has(p)) for p in desired)
        self._desired = desired
        self._differs = {}
        for prefix, route in kernel.items():
            self._note(prefix, route)

    def update(self, prefix: str, route: KRoute | None) -> None:
        """Set (``route``) or withdraw (None) the desired route for ``prefix``.

        No I/O: the prefix joins the known differences unless the kernel
        already holds what is now desired, and the next :meth:`apply` writes it.
        """
        if route is None:
            key = prefix if prefix in self._desired or prefix in self._differs else (
                canonical_prefix(prefix))
        else:
            route = self._check(route)
            key = route.prefix
            if key != prefix and key != canonical_prefix(prefix):
                raise ValueError(f"route {route.prefix} given for prefix {prefix}")
        kernel = self._kernel_has(key)
        if route is None:
            self._desired.pop(key, None)
        else:
            self._desired[key] = route
        self._note(key, kernel)

    def plan(self) -> Plan:
        """The writes :meth:`apply` would make now."""
        differs = self._differs
        plan = diff_prefixes(self._desired, differs, list(differs), self.protocol)
        spare = self.spare
        if spare is not None and plan.delete:
            desired = self._desired
            plan.delete = [r for r in plan.delete if r.prefix in desired or not spare(r)]
        plan.delete += self._extra
        return plan

    def strays(self) -> list[KRoute]:
        """Routes of ours the kernel holds (as known) where none is desired."""
        desired = self._desired
        return [r for p, r in self._differs.items() if r is not None and p not in desired]

    # -- kernel I/O ---------------------------------------------------------
    def apply(self) -> ApplyResult:
        """Write the known differences between the desired routes and the kernel's.

        Failed writes stay in the difference, so the next apply retries them.
        Before the first :meth:`resync` nothing is known of the kernel, so the
        first apply is a resync (a restart must not re-add what is there).
        """
        if not self.synced:
            return self.resync()
        plan = self.plan()
        if not plan:
            self.last_result = ApplyResult()
            return self.last_result
        result = self.backend.apply(plan)
        # Only what was done is noted: failed writes stay among the differences,
        # so the next apply retries them.
        extra = {id(r) for r in self._extra}
        for op, route in result.done:
            prefix = route.prefix
            if op != "delete":
                self._note(prefix, route)
            elif id(route) in extra:
                self._extra = [r for r in self._extra if r is not route]
            elif self._kernel_has(prefix) is route:
                # (a delete of another route at the prefix, e.g. the old metric
                # of a route that moved, leaves the one we know of in place)
                self._note(prefix, None)
        # Lost acks leave outcomes unknown; EEXIST on an add means the kernel
        # holds a route we did not know of (ours: the resync adopts it;
        # another owner's: it stays untouched and the add keeps failing).
        if any(e.errno in (errno.ENOBUFS, errno.EEXIST) for e in result.errors):
            self.needs_resync = True
        self.last_result = result
        return result

    def resync(self) -> ApplyResult:
        """Mark and sweep: read our routes back from the kernel, then apply.

        Routes of ours that are not desired are deleted, missing ones added,
        wrong ones replaced; right ones are left alone. Other protocols'
        routes are never read into the diff.
        """
        found = self._read_kernel(by_count=True)
        if found is None:  # some desired route is missing or doubled: look closer
            found = self._read_kernel(by_count=False)
        assert found is not None
        differs, extra = found
        self._differs = differs
        self._extra = extra
        self.needs_resync = False
        self.synced = True
        return self.apply()

    def _read_kernel(self, by_count: bool,
                     ) -> tuple[dict[str, KRoute | None], list[KRoute]] | None:
        """One dump of our routes: (the differences from the desired routes,
        the duplicates to sweep).

        A right route is not held: ``by_count``, it is only counted (the usual
        case, where every desired route is there once: ~10 MiB less at the
        peak of a 100k-route resync), and None is returned when the count
        cannot prove that, so the caller reads again without ``by_count``:
        each right route is then held as its prefix, to name the missing.
        """
        desired = self._desired
        holds = desired.holds

        def keep(route: KRoute) -> KRoute | str:
            if holds(route.prefix, route):
                return "" if by_count else route.prefix
            return route

        differs: dict[str, KRoute | None] = {}
        seen: set[str] = set()
        extra: list[KRoute] = []
        right = 0
        for item in self.backend.dump_routes(self.protocol, self.table, keep=keep):
            if isinstance(item, str):  # the desired route is there
                right += 1
                if by_count:
                    continue
                # (a wrong route of ours seen first for the prefix is swept)
                wrong = differs.pop(item, None)
                if wrong is not None:
                    extra.append(wrong)
                seen.add(item)
                continue
            route = item
            if route.protocol != self.protocol or route.table != self.table:
                continue  # defence in depth: never sweep what is not ours
            prefix = route.prefix
            if by_count and prefix in desired:
                return None  # a wrong route where one is desired: which is there?
            if prefix in seen:
                # Two routes of ours for one prefix (different metrics): keep the
                # one that is desired (or the first), sweep the other.
                extra.append(route)
                continue
            seen.add(prefix)
            differs[prefix] = route
        if by_count:
            # Each desired prefix can be right once (its metric is part of it).
            return (differs, extra) if right == len(desired) else None
        for prefix in desired:
            if prefix not in seen:
                differs[prefix] = None
        return differs, extra

    def close(self) -> None:
        """Close the kernel connection. Deletes nothing: our routes persist."""
        self.backend.close()


#: What a route is apart from its prefix: (kind, next hops, protocol, table, metric).
Shape = tuple[Kind, tuple[NextHop, ...], int, int, int]


class RouteTable(MutableMapping[str, KRoute]):
    """Routes by prefix, each stored as its prefix and a shared :data:`Shape`.

    Reading gives an equal :class:`KRoute` built then (not the object put in).
    Shapes are interned, so 100k learned routes over a few next hops cost one
    dict entry each. The intern table is bounded; past that, new shapes are
    simply not shared.
    """

    INTERN_MAX = 4096

    def __init__(self) -> None:
        self._shapes: dict[str, Shape] = {}
        self._intern: dict[Shape, Shape] = {}
        self._last: Shape | None = None

    def __getitem__(self, prefix: str) -> KRoute:
        return KRoute.trusted(prefix, *self._shapes[prefix])

    def get(self, prefix: str, default: KRoute | None = None) -> KRoute | None:  # type: ignore[override]
        shape = self._shapes.get(prefix)
        return default if shape is None else KRoute.trusted(prefix, *shape)

    def holds(self, prefix: str, route: KRoute) -> bool:
        """Is ``route`` (as the kernel has it) right for ``prefix``? Without
        building the desired route when it shares its shape's next hops."""
        shape = self._shapes.get(prefix)
        if shape is None:
            return False
        kind, hops, protocol, table, metric = shape
        if route.nexthops is hops:
            return (route.prefix == prefix and route.kind == kind and route.protocol == protocol
                    and route.table == table and route.metric == metric)
        return KRoute.trusted(prefix, *shape).matches(route)

    def __setitem__(self, prefix: str, route: KRoute) -> None:
        if route.prefix != prefix:
            raise ValueError(f"route {route.prefix} stored as {prefix}")
        shape: Shape = (route.kind, route.nexthops, route.protocol, route.table, route.metric)
        last = self._last
        if last is not None and route.nexthops is last[1] and shape == last:
            self._shapes[prefix] = last  # the common case: the same shape as before
            return
        intern = self._intern
        shared = intern.get(shape)
        if shared is None:
            if len(intern) >= self.INTERN_MAX:
                intern.clear()
            shared = intern[shape] = shape
        self._shapes[prefix] = self._last = shared

    def __delitem__(self, prefix: str) -> None:
        del self._shapes[prefix]

    def __contains__(self, prefix: object) -> bool:
        return prefix in self._shapes

    def __iter__(self) -> Iterator[str]:
        return iter(self._shapes)

    def __len__(self) -> int:
        return len(self._shapes)


class _Actual(Mapping[str, KRoute]):
    """The kernel's routes of ours as known: the desired ones, overlaid by
    the known differences (a read-only view; nothing is copied)."""

    def __init__(self, desired: Mapping[str, KRoute], differs: dict[str, KRoute | None]):
        self._desired = desired
        self._differs = differs

    def __getitem__(self, prefix: str) -> KRoute:
        route = self._differs[prefix] if prefix in self._differs else self._desired[prefix]
        if route is None:
            raise KeyError(prefix)
        return route

    def __iter__(self) -> Iterator[str]:
        differs = self._differs
        for prefix in self._desired:
            if prefix not in differs:
                yield prefix
        for prefix, route in differs.items():
            if route is not None:
                yield prefix

    def __len__(self) -> int:
        differs = self._differs
        in_desired = sum(1 for p in differs if p in self._desired)
        held = sum(1 for r in differs.values() if r is not None)
        return len(self._desired) - in_desired + held
