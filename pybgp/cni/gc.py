"""CNI GC: remove this node's attachments of this network that the runtime no longer knows.

Input: ``cni.dev/valid-attachments`` ({containerID, ifname} each). Three sweeps,
in this order so nothing is orphaned by a crash of GC itself:

1. IPAM: release every handle ``<network>.<containerID>`` with an allocation
   whose ``node`` attribute is this node and whose containerID is not valid;
2. WorkloadEndpoints of this node whose containerID is not valid (CAS delete);
3. host ``cali*`` veths (in this network namespace) that no remaining
   endpoint of this node names.

Invariants (conservative): an address held under a valid attachment's
handle is never released; other nodes' allocations and endpoints are never
touched; a ``cali*`` veth carrying an IPv4 route that pybgp did not write
(protocol other than 80) is left alone — it is not ours.
"""

from __future__ import annotations

import logging

from pybgp.cni import endpoint
from pybgp.cni.config import Settings
from pybgp.datastore.kv import KVStore

log = logging.getLogger("pybgp.cni")
WORKLOAD_ROUTE_PROTO = 80


def stale_handles(kv: KVStore, s: Settings, valid: set[str]) -> list[str]:
    from pybgp.ipam import block as blk
    from pybgp.ipam import read_snapshot

    prefix = s.network + "."
    found: set[str] = set()
    for b in read_snapshot(kv).blocks.values():
        for _, attr in blk.allocated(b):
            if attr is None or not attr.handle_id or not attr.handle_id.startswith(prefix):
                continue
            if attr.secondary.get("node") != s.nodename:
                continue
            if attr.handle_id[len(prefix):] not in valid:
                found.add(attr.handle_id)
    return sorted(found)


def collect_ipam(kv: KVStore, s: Settings, valid: set[str]) -> list[str]:
    from pybgp.cni.ipam_plugin import make_ipam

    ipam = make_ipam(kv, s)
    released = []
    for h in stale_handles(kv, s, valid):
        ips = ipam.release_by_handle(h)
        log.info("GC: released %s (handle %s)", ", ".join(ips) or "nothing", h)
        released += ips
    return released


def collect_endpoints(kv: KVStore, s: Settings, valid: set[str]) -> set[str]:
    """Delete stale endpoints; return the host interface names of those that remain."""
    keep: set[str] = set()
    for item, doc in endpoint.of_node(kv, s.nodename):
        spec = doc.get("spec") or {}
        if spec.get("containerID") in valid:
            keep.add(str(spec.get("interfaceName")))
        elif endpoint.delete_exact(kv, item):
            log.info("GC: deleted WorkloadEndpoint %s", item.key)
        else:
            keep.add(str(spec.get("interfaceName")))  # changed meanwhile: leave it
    return keep


def collect_veths(keep: set[str]) -> list[str]:
    from pyroute2 import IPRoute

    from pybgp.cni.wiring import unwire

    removed = []
    with IPRoute() as ipr:
        links = [(link["index"], str(link.get_attr("IFLA_IFNAME"))) for link in ipr.get_links()]
        candidates = []
        for index, name in links:
            if not name.startswith("cali") or name in keep:
                continue
            routes = ipr.get_routes(family=2, oif=index)
            if any(r["proto"] != WORKLOAD_ROUTE_PROTO for r in routes):
                continue  # someone else's interface
            candidates.append(name)
    for name in candidates:
        if unwire(name):
            log.info("GC: removed host veth %s", name)
            removed.append(name)
    return removed


def collect(kv: KVStore, s: Settings, valid: set[str]) -> None:
    if s.ipam_in_process:
        collect_ipam(kv, s, valid)
    else:
        log.info("GC: IPAM %s is external; its allocations are not garbage collected here",
                 s.ipam_type)
    collect_veths(collect_endpoints(kv, s, valid))
