"""Origination, export and import policy of the node speaker (pure).

Owns: what this node advertises and which blackhole aggregates it installs,
given the IP pools, its confirmed-affinity blocks and its local ``cali*``
/32 routes (REFERENCE §1 "Export to peers"), and which learned prefixes may
enter the kernel (everything except VXLAN-owned pools; IPIP pools are
flagged so the kernel layer can route them ``via <peer> dev tunl0 onlink``).

Must never: read the datastore or the kernel, or know about ExaBGP; inputs
and outputs are plain values.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

Net = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Pool:
    cidr: str
    disable_bgp_export: bool = False
    disabled: bool = False
    vxlan_mode: str = "Never"  # Never | Always | CrossSubnet
    ipip_mode: str = "Never"


@dataclass(frozen=True)
class ExportPlan:
    """What to advertise (sorted prefixes) and which blackholes to install."""

    advertise: frozenset[str] = field(default_factory=frozenset)
    blackholes: frozenset[str] = field(default_factory=frozenset)


@functools.lru_cache(maxsize=4096)
def _net(cidr: str) -> Net:
    """Parsed once: the plan is recomputed on every change of the node's
    blocks or workload routes, and parsing was most of its cost. Bounded:
    a node's blocks, pools and workload routes fit; learned prefixes checked
    by ``import_decision`` (VXLAN pools only) just cycle through."""
    return ipaddress.ip_network(cidr, strict=False)


def _within(net: Net, nets: Iterable[Net]) -> bool:
    return any(net.version == n.version and net.subnet_of(n) for n in nets)  # type: ignore[arg-type]


class _Covering:
    """Does any of ``nets`` contain a given network? One set lookup per
    distinct prefix length among ``nets`` (usually one: the block size), where
    ``_within`` tested every block for every workload route."""

    def __init__(self, nets: Iterable[Net]):
        self.lengths = sorted({n.prefixlen for n in nets})
        self.keys = {self._key(n, n.prefixlen) for n in nets}

    @staticmethod
    def _key(net: Net, length: int) -> tuple[int, int, int]:
        return net.version, int(net.network_address) >> (net.max_prefixlen - length), length

    def __call__(self, net: Net) -> bool:
        return any(length <= net.prefixlen and self._key(net, length) in self.keys
                   for length in self.lengths)


PoolNets = list[tuple[Pool, Net]]


def _pool_nets(pools: Iterable[Pool]) -> PoolNets:
    return [(p, _net(p.cidr)) for p in pools]


def _export_refused(net: Net, pools: PoolNets) -> bool:
    """Inside a pool with ``disableBGPExport`` (Calico rejects those first)."""
    return any(p.disable_bgp_export and _within(net, [pn]) for p, pn in pools)


def _exported_pool(net: Net, pools: PoolNets) -> bool:
    """True if ``net`` is inside an enabled pool and no pool holding it
    disables BGP export."""
    inside = [p for p, pn in pools if _within(net, [pn])]
    if any(p.disable_bgp_export for p in inside):
        return False
    return any(not p.disabled for p in inside)


def export_plan(pools: Iterable[Pool], affine_blocks: Iterable[str],
                local_routes: Mapping[str, str]) -> ExportPlan:
    """The node's advertisements and blackhole aggregates, computed whole.

    The speaker keeps them with :class:`Origination`; this plain form is its
    specification (a model test holds one to the other).

    ``affine_blocks``: blocks with *confirmed* affinity to this node (pending
    affinities must not be passed). ``local_routes``: prefix → interface of
    the node's workload routes; only ``cali*`` interfaces count (tunnel and
    overlay devices are never exported). A block inside a pool with
    ``disableBGPExport`` is blackholed but not advertised.
    """
    pool_nets = _pool_nets(pools)
    blocks = {_net(b) for b in affine_blocks}
    blackholes = {str(b) for b in blocks}
    advertise = {str(b) for b in blocks if not _export_refused(b, pool_nets)}
    in_block = _Covering(blocks)
    for prefix, iface in local_routes.items():
        if not iface.startswith("cali"):
            continue
        net = _net(prefix)
        if in_block(net):
            continue  # suppressed: the block aggregate covers it
        if _exported_pool(net, pool_nets):
            advertise.add(str(net))
    return ExportPlan(frozenset(advertise), frozenset(blackholes))


class Origination:
    """:func:`export_plan`, kept up to date change by change.

    The speaker sees a pod come or go, or a block confirmed, far more often
    than a pool change; recomputing the whole plan on each cost time in
    proportion to the node's blocks and pods, on the path of every new
    block. Here a workload route costs a lookup per distinct block length
    plus a test per pool; a new block, a pass over the routes advertised
    now (borrowed ones, few); a released block, a pass over the node's
    workload routes; a pool change, a rebuild. ``advertise`` and
    ``blackholes`` always equal what ``export_plan`` returns for
    ``(pools, blocks, routes)``.
    """

    def __init__(self) -> None:
        self.routes: dict[str, str] = {}  # workload route → interface, as given
        self._pools: tuple[Pool, ...] = ()
        self._pool_nets: PoolNets = []
        self._clear()

    def _clear(self) -> None:
        self._blocks: dict[str, str] = {}  # block as given → normalised
        self._block_count: dict[str, int] = {}  # normalised → how many given
        self._cover: dict[tuple[int, int, int], int] = {}  # _Covering keys, counted
        self._lengths: dict[int, int] = {}  # prefix length → blocks of that length
        self._advertised_routes: dict[str, str] = {}  # route as given → normalised
        self._advertise: dict[str, int] = {}  # normalised prefix → how many reasons

    @property
    def advertise(self) -> frozenset[str]:
        return frozenset(self._advertise)

    @property
    def blackholes(self) -> frozenset[str]:
        return frozenset(self._block_count)

    def plan(self) -> ExportPlan:
        return ExportPlan(self.advertise, self.blackholes)

    def set_pools(self, pools: Iterable[Pool]) -> None:
        pools = tuple(pools)
        if pools == self._pools:
            return
        blocks = list(self._blocks)
        self._clear()
        self._pools, self._pool_nets = pools, _pool_nets(pools)
        self.set_blocks(blocks)
        for prefix, iface in self.routes.items():
            self.set_route(prefix, iface)

    def set_blocks(self, blocks: Iterable[str]) -> None:
        """The node's confirmed blocks, whole (diffed against the last call)."""
        wanted = blocks if isinstance(blocks, (set, frozenset)) else set(blocks)
        have = self._blocks.keys()
        for block in have - wanted:
            self._drop_block(block)
        for block in wanted - have:
            self._add_block(block)

    def set_route(self, prefix: str, iface: str | None) -> None:
        """A workload route added (or changed) on ``iface``, or gone (None)."""
        norm = self._advertised_routes.pop(prefix, None)
        if norm is not None:
            self._unadvertise(norm)
        if iface is None:
            self.routes.pop(prefix, None)
            return
        self.routes[prefix] = iface
        if iface.startswith("cali"):
            net = _net(prefix)
            if not self._covered(net) and _exported_pool(net, self._pool_nets):
                self._advertise_route(prefix, net)

    # -- internals ---------------------------------------------------------------

    def _add_block(self, block: str) -> None:
        net = _net(block)
        norm = self._blocks[block] = str(net)
        self._block_count[norm] = self._block_count.get(norm, 0) + 1
        if not _export_refused(net, self._pool_nets):
            self._advertise[norm] = self._advertise.get(norm, 0) + 1
        key = _Covering._key(net, net.prefixlen)
        self._cover[key] = self._cover.get(key, 0) + 1
        self._lengths[net.prefixlen] = self._lengths.get(net.prefixlen, 0) + 1
        for prefix, rnorm in list(self._advertised_routes.items()):
            if self._inside(_net(prefix), key):
                del self._advertised_routes[prefix]
                self._unadvertise(rnorm)

    def _drop_block(self, block: str) -> None:
        net = _net(block)
        norm = self._blocks.pop(block)
        _decrement(self._block_count, norm)
        if not _export_refused(net, self._pool_nets):
            self._unadvertise(norm)
        key = _Covering._key(net, net.prefixlen)
        _decrement(self._cover, key)
        _decrement(self._lengths, net.prefixlen)
        for prefix, iface in self.routes.items():
            if prefix in self._advertised_routes or not iface.startswith("cali"):
                continue
            rnet = _net(prefix)
            if (self._inside(rnet, key) and not self._covered(rnet)
                    and _exported_pool(rnet, self._pool_nets)):
                self._advertise_route(prefix, rnet)

    def _advertise_route(self, prefix: str, net: Net) -> None:
        norm = self._advertised_routes[prefix] = str(net)
        self._advertise[norm] = self._advertise.get(norm, 0) + 1

    def _unadvertise(self, norm: str) -> None:
        _decrement(self._advertise, norm)

    @staticmethod
    def _inside(net: Net, key: tuple[int, int, int]) -> bool:
        return key[2] <= net.prefixlen and _Covering._key(net, key[2]) == key

    def _covered(self, net: Net) -> bool:
        return any(length <= net.prefixlen and _Covering._key(net, length) in self._cover
                   for length in self._lengths)


def _decrement(counts: dict[Any, int], key: Any) -> None:
    if counts[key] == 1:
        del counts[key]
    else:
        counts[key] -= 1


def reflectable(prefix: str, pools: Iterable[Pool]) -> bool:
    """May a node acting as route reflector pass a learned ``prefix`` on?
    As Calico's export filter: only inside an enabled pool whose BGP export
    is not disabled."""
    return _exported_pool(_net(prefix), _pool_nets(pools))


@dataclass(frozen=True)
class ImportDecision:
    accept: bool
    ipip: bool = False  # route via <peer> dev tunl0 onlink (no ipip module here)
    reason: str = ""


def import_decision(prefix: str, pools: Iterable[Pool]) -> ImportDecision:
    """Whether a learned prefix goes into the kernel, and how.

    Everything is accepted except prefixes inside a VXLAN-owned pool (the
    agent programs those over the VXLAN device). For an IPIP pool the hook
    flags ``ipip`` so the kernel layer can choose the tunnel route.
    """
    net = _net(prefix)
    inside = [p for p in pools if _within(net, [_net(p.cidr)])]
    if any(p.vxlan_mode != "Never" for p in inside):
        return ImportDecision(False, reason="pool is VXLAN-owned")
    return ImportDecision(True, ipip=any(p.ipip_mode != "Never" for p in inside))
