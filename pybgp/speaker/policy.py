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


def _exported_pool(net: Net, pools: Iterable[Pool]) -> bool:
    """True if ``net`` is inside an enabled pool and no pool holding it
    disables BGP export (Calico rejects disableBGPExport pools first)."""
    inside = [p for p in pools if _within(net, [_net(p.cidr)])]
    if any(p.disable_bgp_export for p in inside):
        return False
    return any(not p.disabled for p in inside)


def export_plan(pools: Iterable[Pool], affine_blocks: Iterable[str],
                local_routes: Mapping[str, str]) -> ExportPlan:
    """The node's advertisements and blackhole aggregates.

    ``affine_blocks``: blocks with *confirmed* affinity to this node (pending
    affinities must not be passed). ``local_routes``: prefix → interface of
    the node's workload routes; only ``cali*`` interfaces count (tunnel and
    overlay devices are never exported). A block inside a pool with
    ``disableBGPExport`` is blackholed but not advertised.
    """
    pools = list(pools)
    blocks = sorted({_net(b) for b in affine_blocks}, key=lambda n: (n.version, n))
    blackholes = {str(b) for b in blocks}
    advertise = {str(b) for b in blocks if not any(
        p.disable_bgp_export for p in pools if _within(b, [_net(p.cidr)]))}
    in_block = _Covering(blocks)
    for prefix, iface in local_routes.items():
        if not iface.startswith("cali"):
            continue
        net = _net(prefix)
        if in_block(net):
            continue  # suppressed: the block aggregate covers it
        if _exported_pool(net, pools):
            advertise.add(str(net))
    return ExportPlan(frozenset(advertise), frozenset(blackholes))


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
