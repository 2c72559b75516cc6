"""Desired kernel routes and the desired-vs-actual diff (pure core, no I/O).

Owns: the value types for a kernel route (:class:`KRoute`, :class:`NextHop`),
the :class:`Plan` of writes, and :func:`diff`, which turns "what we want" and
"what the kernel has" into the smallest plan that makes them equal.

Must never: import a socket, netlink or pyroute2; plan a write to a route
whose route protocol number is not ours (mark-and-sweep by owner, as BIRD's
``krt`` does); plan a write for a route that is already right.

Route protocol number
---------------------
:data:`RTPROT_BIRD` (12, ``proto bird`` in ``/etc/iproute2/rt_protos``) is the
default owner mark for the speaker's learned routes and blackhole aggregates.
pybgp's speaker replaces BIRD on a Calico node, so it takes BIRD's mark on
purpose: operators' habits (``ip route show proto bird``) keep working, and a
speaker started on a node where BIRD persisted routes adopts them and sweeps
the stale ones instead of leaving orphans. It is distinct from Felix's 80
(:data:`RTPROT_FELIX`, the agent's workload routes), so the speaker and the
agent can never sweep each other's routes. Every API takes the number as a
parameter; nothing else in this package hard-codes it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

RTPROT_STATIC = 4
RTPROT_BIRD = 12
RTPROT_FELIX = 80
#: Default route protocol number of the speaker's routes (see module docstring).
DEFAULT_PROTOCOL = RTPROT_BIRD

RT_TABLE_MAIN = 254
#: The kernel stores IPv6 routes given metric 0 with this metric.
IP6_RT_PRIO_USER = 1024

Kind = Literal["unicast", "blackhole", "unreachable", "prohibit"]
KINDS: tuple[str, ...] = ("unicast", "blackhole", "unreachable", "prohibit")


def canonical_prefix(prefix: str) -> str:
    """``"198.19.0.5"`` → ``"198.19.0.5/32"``; raises ValueError if host bits are set."""
    return str(ipaddress.ip_network(prefix, strict=True))


@dataclass(frozen=True, slots=True)
class NextHop:
    """One next hop: a gateway and/or an output device.

    ``dev`` is an interface name (preferred) or an ifindex. ``None`` means
    "let the kernel resolve it from the gateway"; such a desired next hop
    matches an actual next hop on any device. ``weight`` is the ECMP weight
    (1..256).
    """

    gateway: str | None = None
    dev: str | int | None = None
    onlink: bool = False
    weight: int = 1

    def __post_init__(self) -> None:
        if self.gateway is not None:
            object.__setattr__(self, "gateway", str(ipaddress.ip_address(self.gateway)))
        if self.gateway is None and self.dev is None:
            raise ValueError("a next hop needs a gateway or a device")
        if not 1 <= self.weight <= 256:
            raise ValueError(f"ECMP weight out of range: {self.weight}")

    @classmethod
    def trusted(
        cls, gateway: str | None, dev: str | int | None, onlink: bool, weight: int
    ) -> NextHop:
        """Build without validation, for values decoded from the kernel (canonical already)."""
        nh = object.__new__(cls)
        setattr_ = object.__setattr__
        setattr_(nh, "gateway", gateway)
        setattr_(nh, "dev", dev)
        setattr_(nh, "onlink", onlink)
        setattr_(nh, "weight", weight)
        return nh

    def matches(self, actual: NextHop) -> bool:
        """True when the kernel's next hop ``actual`` satisfies this desired one."""
        return (
            self.gateway == actual.gateway
            and (self.dev is None or self.dev == actual.dev)
            and self.onlink == actual.onlink
            and self.weight == actual.weight
        )


@dataclass(frozen=True, slots=True)
class KRoute:
    """A kernel route as pybgp owns it.

    ``prefix`` is normalised to canonical ``addr/len`` (a bare address gets
    /32 or /128; host bits must be zero). An IPv6 metric of 0 is stored as
    1024, as the kernel does, so desired and dumped routes compare equal.
    """

    prefix: str
    kind: Kind = "unicast"
    nexthops: tuple[NextHop, ...] = ()
    protocol: int = DEFAULT_PROTOCOL
    table: int = RT_TABLE_MAIN
    metric: int = 0

    def __post_init__(self) -> None:
        net = ipaddress.ip_network(self.prefix, strict=True)
        object.__setattr__(self, "prefix", str(net))
        if not isinstance(self.nexthops, tuple):
            object.__setattr__(self, "nexthops", tuple(self.nexthops))
        if self.kind not in KINDS:
            raise ValueError(f"unknown route kind {self.kind!r}")
        if self.kind == "unicast" and not self.nexthops:
            raise ValueError(f"unicast route {self.prefix} needs at least one next hop")
        if self.kind != "unicast" and self.nexthops:
            raise ValueError(f"{self.kind} route {self.prefix} takes no next hops")
        if not 0 < self.protocol < 256:
            raise ValueError(f"route protocol out of range: {self.protocol}")
        if not 0 < self.table < 2**32:
            raise ValueError(f"route table out of range: {self.table}")
        if net.version == 6 and self.metric == 0:
            object.__setattr__(self, "metric", IP6_RT_PRIO_USER)
        for nh in self.nexthops:
            if nh.gateway is not None and ipaddress.ip_address(nh.gateway).version != net.version:
                raise ValueError(f"next hop {nh.gateway} is not of the family of {self.prefix}")

    @classmethod
    def trusted(
        cls,
        prefix: str,
        kind: Kind,
        nexthops: tuple[NextHop, ...],
        protocol: int,
        table: int,
        metric: int,
    ) -> KRoute:
        """Build without validation, for values decoded from the kernel (canonical
        already: ~10x cheaper, which matters when a resync reads 100k routes)."""
        route = object.__new__(cls)
        setattr_ = object.__setattr__
        setattr_(route, "prefix", prefix)
        setattr_(route, "kind", kind)
        setattr_(route, "nexthops", nexthops)
        setattr_(route, "protocol", protocol)
        setattr_(route, "table", table)
        setattr_(route, "metric", metric)
        return route

    @property
    def is_ipv6(self) -> bool:
        return ":" in self.prefix

    def matches(self, actual: KRoute) -> bool:
        """True when the kernel's ``actual`` route needs no write to equal this one."""
        if (
            self.prefix != actual.prefix
            or self.kind != actual.kind
            or self.protocol != actual.protocol
            or self.table != actual.table
            or self.metric != actual.metric
            or len(self.nexthops) != len(actual.nexthops)
        ):
            return False
        # ECMP next hops are a set: order carries no meaning in the kernel.
        remaining = list(actual.nexthops)
        for want in self.nexthops:
            for i, have in enumerate(remaining):
                if want.matches(have):
                    del remaining[i]
                    break
            else:
                return False
        return True


def blackhole(prefix: str, protocol: int = DEFAULT_PROTOCOL, table: int = RT_TABLE_MAIN) -> KRoute:
    """A blackhole aggregate (what the speaker installs for its own blocks)."""
    return KRoute(prefix, "blackhole", (), protocol, table)


def via(
    prefix: str,
    *gateways: str,
    dev: str | int | None = None,
    onlink: bool = False,
    protocol: int = DEFAULT_PROTOCOL,
    table: int = RT_TABLE_MAIN,
    metric: int = 0,
) -> KRoute:
    """A unicast route via one gateway, ECMP over several (all on ``dev``), or,
    with no gateway, a device route on ``dev``."""
    hops = tuple(NextHop(gw, dev, onlink) for gw in gateways) or (NextHop(None, dev, onlink),)
    return KRoute(prefix, "unicast", hops, protocol, table, metric)


@dataclass(slots=True)
class Plan:
    """Writes that turn the actual state into the desired one.

    ``add`` are new prefixes, ``replace`` overwrite a route of ours with the
    same key (prefix, table, metric), ``delete`` remove routes of ours. Apply
    adds and replaces before deletes (make before break).
    """

    add: list[KRoute] = field(default_factory=list)
    replace: list[KRoute] = field(default_factory=list)
    delete: list[KRoute] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.add) + len(self.replace) + len(self.delete)

    def __bool__(self) -> bool:
        return len(self) > 0

    def writes(self) -> list[tuple[str, KRoute]]:
        """The plan as ordered (op, route) pairs: 'add'/'replace' first, then 'delete'."""
        out: list[tuple[str, KRoute]] = [("add", r) for r in self.add]
        out += [("replace", r) for r in self.replace]
        out += [("delete", r) for r in self.delete]
        return out


def diff(
    desired: Mapping[str, KRoute],
    actual: Mapping[str, KRoute],
    protocol: int = DEFAULT_PROTOCOL,
) -> Plan:
    """Plan the writes that make ``actual`` equal ``desired`` for ``protocol`` only.

    Routes in ``actual`` whose protocol is not ``protocol`` are invisible: they
    are never deleted or replaced, and a desired route for the same prefix is
    added beside them (the kernel keys IPv4 routes by prefix, table, TOS and
    metric, not by owner). Desired routes must carry ``protocol``.
    """
    ours = {p: r for p, r in actual.items() if r.protocol == protocol}
    order = [*desired, *(p for p in ours if p not in desired)]
    return diff_prefixes(desired, ours, order, protocol)


def diff_prefixes(
    desired: Mapping[str, KRoute],
    actual: Mapping[str, KRoute | None],
    prefixes: Iterable[str],
    protocol: int = DEFAULT_PROTOCOL,
) -> Plan:
    """:func:`diff` restricted to ``prefixes`` (the ones known to have changed):
    the same plan for those keys, at a cost proportional to their number."""
    plan = Plan()
    for prefix in prefixes:
        want = desired.get(prefix)
        have = actual.get(prefix)
        if have is not None and have.protocol != protocol:
            have = None
        if want is None:
            if have is not None:
                plan.delete.append(have)
            continue
        if want.protocol != protocol:
            raise ValueError(f"desired route {prefix} has protocol {want.protocol}, not {protocol}")
        if have is None:
            plan.add.append(want)
        elif want.matches(have):
            continue
        elif have.table == want.table and have.metric == want.metric:
            plan.replace.append(want)
        else:
            plan.add.append(want)
            plan.delete.append(have)
    return plan


def index(routes: Iterable[KRoute]) -> dict[str, KRoute]:
    """Routes keyed by prefix (the shape :func:`diff` takes); later ones win."""
    return {r.prefix: r for r in routes}
