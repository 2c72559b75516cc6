"""Route reflection on a node acting as a reflector, as ExaBGP commands (pure).

A Calico Node with ``spec.bgp.routeReflectorClusterID`` leaves the mesh and
reflects what it learns (``peers`` marks its same-AS peers outside its
cluster as clients). ExaBGP runs its sessions, so reflecting is a matter of
commands: per changed prefix, its new best path is announced to the
established iBGP peers ``rr.send_to`` allows (``neighbor A , neighbor B
announce attributes next-hop <its own> … originator-id … cluster-list [ … ]
nlri …``), and withdrawn from those that had the old one and may not have
the new. A peer coming up gets the reflected table after our own routes.
The same RFC 4456 rules as ``pybgp reflector`` (``rr``); as Calico's BIRD
does, only prefixes inside an enabled IP pool are exported
(``calico_export_to_bgp_peers``).

ExaBGP encodes per peer (no update groups): fine for the tens of peers a
node reflector serves; hundreds of clients are ``pybgp reflector``'s job.
Large communities and unknown attributes are not carried (ExaBGP's JSON
and command line do not round-trip them).

Must never: do I/O, or touch anything when the node is no reflector (the
speaker creates this only with a cluster id).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from pybgp.speaker import exabgp_api as exa
from pybgp.speaker import rr
from pybgp.speaker.peers import PeerSpec
from pybgp.speaker.policy import Pool, reflectable
from pybgp.speaker.rib import Path, Rib
from pybgp.speaker.rr import Role


def roles(specs: Iterable[PeerSpec]) -> dict[str, Role]:
    """Peer address → role, for the iBGP peers (eBGP peers get no reflection)."""
    return {s.address: Role.CLIENT if s.rr_client else Role.NON_CLIENT
            for s in specs if s.ibgp}


class NodeReflector:
    def __init__(self, cluster_id: str):
        self.cluster_id = cluster_id
        self.pending: dict[str, Path | None] = {}

    def note(self, rib: Rib, prefixes: Iterable[str]) -> None:
        """Call before the RIB changes ``prefixes``: remembers their best path."""
        pending = self.pending
        for p in prefixes:
            if p not in pending:
                pending[p] = rib.best_path(p)

    def _attrs(self, path: Path) -> exa.Attributes:
        originator, clusters = rr.reflected(path.originator_id, path.cluster_list,
                                            path.peer_router_id or path.peer, self.cluster_id)
        return exa.Attributes(origin=path.origin, local_pref=path.local_pref,
                              as_path=path.as_path, med=path.med,
                              communities=path.communities, originator_id=originator,
                              cluster_list=clusters)

    def commands(self, rib: Rib, established: Iterable[str], peer_roles: Mapping[str, Role],
                 pools: Iterable[Pool]) -> list[str]:
        """The ExaBGP commands for every change noted since the last call."""
        pending, self.pending = self.pending, {}
        targets = [(a, peer_roles[a]) for a in established if a in peer_roles]
        if not pending or not targets:
            return []
        pools = list(pools)
        announce: dict[tuple[int, tuple[str, ...]], tuple[Path, list[str]]] = {}
        withdraw: dict[tuple[str, ...], list[str]] = {}
        for prefix, old in pending.items():
            new = rib.best_path(prefix)
            if new == old:
                continue
            ok = reflectable(prefix, pools)
            gets = tuple(a for a, role in targets if ok and new is not None and rr.send_to(
                peer_roles.get(new.peer, Role.CLIENT), new.peer, role, a))
            had = tuple(a for a, role in targets if ok and old is not None and rr.send_to(
                peer_roles.get(old.peer, Role.CLIENT), old.peer, role, a) and a not in gets)
            if gets and new is not None:
                entry = announce.setdefault((id(new), gets), (new, []))
                entry[1].append(prefix)
            if had:
                withdraw.setdefault(had, []).append(prefix)
        out: list[str] = []
        for to, prefixes in withdraw.items():
            out += exa.withdraw_batch(prefixes, neighbor=list(to))
        for (_, to), (path, prefixes) in announce.items():
            out += exa.announce_batch(path.next_hop, prefixes, self._attrs(path),
                                      neighbor=list(to))
        return out

    def table_for(self, rib: Rib, peer: str, peer_roles: Mapping[str, Role],
                  pools: Iterable[Pool]) -> list[str]:
        """What a peer that just came up must be sent (before our End-of-RIB)."""
        role = peer_roles.get(peer)
        if role is None:
            return []
        pools = list(pools)
        buckets: dict[int, tuple[Path, list[str]]] = {}
        for prefix, path in rib.best_paths():
            if rr.send_to(peer_roles.get(path.peer, Role.CLIENT), path.peer, role, peer) \
                    and reflectable(prefix, pools):
                buckets.setdefault(id(path), (path, []))[1].append(prefix)
        out: list[str] = []
        for path, prefixes in buckets.values():
            out += exa.announce_batch(path.next_hop, prefixes, self._attrs(path), neighbor=peer)
        return out
