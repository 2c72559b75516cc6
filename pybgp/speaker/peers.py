"""The node's desired BGP sessions, computed like Calico's confd (pure).

Owns: the rules that turn Nodes, the BGPConfiguration and BGPPeers into
``PeerSpec`` values — the full iBGP mesh (``Mesh_<ip>``), global peers
(``Global_<ip>``), node-specific and reverse peerings (``Node_<ip>``, with
``_port_<n>`` when a port is given), route-reflector client marking, mesh
passivity (we are passive towards a peer whose address is greater, compared
as strings exactly as confd does, so mixed clusters with calico-node agree)
— and the diff that lets unchanged sessions live on.

Must never: read the datastore, parse selectors itself (the caller passes a
``matches(selector, labels)`` callable), or touch ExaBGP.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

Matcher = Callable[[str, Mapping[str, str]], bool]


@dataclass(frozen=True)
class NodeInfo:
    name: str
    ipv4: str | None  # "198.18.0.11" or CIDR form "198.18.0.11/24"
    as_number: int | None = None
    rr_cluster_id: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def address(self) -> str | None:
        return self.ipv4.split("/", 1)[0] if self.ipv4 else None


@dataclass(frozen=True)
class BgpConfig:
    node_to_node_mesh: bool = True
    as_number: int = 64512
    listen_port: int = 179
    node_mesh_password: str | None = None
    node_mesh_max_restart_time: int = 120


@dataclass(frozen=True)
class BgpPeer:
    name: str
    node: str | None = None
    peer_ip: str | None = None  # "198.18.0.1", "198.18.0.1:1179", "[2001:db8::1]:1179"
    as_number: int | None = None
    node_selector: str | None = None
    peer_selector: str | None = None
    password: str | None = None
    max_restart_time: int | None = None


@dataclass(frozen=True)
class PeerSpec:
    name: str
    address: str
    port: int
    peer_as: int
    local_as: int
    local_address: str
    passive: bool = False
    md5_password: str | None = None
    restart_time: int = 120
    rr_client: bool = False
    cluster_id: str | None = None
    peer_type: str = "mesh"  # mesh | global | node

    @property
    def ibgp(self) -> bool:
        return self.peer_as == self.local_as


def split_host_port(value: str, default_port: int = 179) -> tuple[str, int]:
    """``ip``, ``ip:port`` or ``[v6]:port`` → (ip, port)."""
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default_port
    if value.count(":") == 1:
        host, port = value.split(":")
        return host, int(port)
    return value, default_port


def _name(prefix: str, ip: str, port: int | None) -> str:
    base = f"{prefix}_{ip.replace('.', '_').replace(':', '_')}"
    return f"{base}_port_{port}" if port else base


@dataclass(frozen=True)
class _Candidate:
    ip: str
    as_number: int
    rr_cluster_id: str | None
    calico_node: bool
    port: int | None  # explicit port from peerIP
    source: BgpPeer


def desired_peers(local: NodeInfo, nodes: Iterable[NodeInfo], config: BgpConfig,
                  bgp_peers: Iterable[BgpPeer], matches: Matcher) -> dict[str, PeerSpec]:
    """Every session this node should have, by protocol name."""
    my_ip = local.address
    if not my_ip:
        return {}
    nodes = [n for n in nodes if n.name != local.name]
    all_nodes = [local, *nodes]
    local_as = local.as_number or config.as_number
    my_cid = local.rr_cluster_id or None
    out: dict[str, PeerSpec] = {}

    def node_as(n: NodeInfo) -> int:
        return n.as_number or config.as_number

    def add(spec: PeerSpec) -> None:
        out.setdefault(spec.name, spec)

    # node-to-node mesh
    if config.node_to_node_mesh and not my_cid:
        for n in nodes:
            ip = n.address
            if not ip or ip == my_ip or n.rr_cluster_id:
                continue
            peer_as = node_as(n)
            add(PeerSpec(
                name=_name("Mesh", ip, None), address=ip, port=config.listen_port,
                peer_as=peer_as, local_as=local_as, local_address=my_ip,
                passive=ip > my_ip, md5_password=config.node_mesh_password,
                restart_time=config.node_mesh_max_restart_time, peer_type="mesh",
                rr_client=False, cluster_id=None))

    def candidates(p: BgpPeer) -> list[_Candidate]:
        if p.peer_selector:
            return [_Candidate(n.address, node_as(n), n.rr_cluster_id, True, None, p)
                    for n in all_nodes if n.address and matches(p.peer_selector, n.labels)]
        if not p.peer_ip:
            return []
        ip, port = split_host_port(p.peer_ip, 0)
        return [_Candidate(ip, p.as_number or config.as_number, None, False,
                           port or None, p)]

    def spec(c: _Candidate, prefix: str) -> PeerSpec:
        passive = prefix == "Global" and c.calico_node and c.ip > my_ip
        rr_client, cluster_id = _rr(my_cid, c.as_number, local_as, c.rr_cluster_id)
        return PeerSpec(
            name=_name(prefix, c.ip, c.port), address=c.ip,
            port=c.port or config.listen_port, peer_as=c.as_number, local_as=local_as,
            local_address=my_ip, passive=passive, md5_password=c.source.password,
            restart_time=c.source.max_restart_time or 120, peer_type=prefix.lower(),
            rr_client=rr_client, cluster_id=cluster_id)

    peers = sorted(bgp_peers, key=lambda p: p.name)
    global_ips: set[str] = set()
    for p in peers:  # global pass
        if p.node or p.node_selector:
            continue
        for c in candidates(p):
            if c.ip != my_ip:
                global_ips.add(c.ip)
                add(spec(c, "Global"))
    for p in peers:  # node-specific pass
        if not (p.node or p.node_selector):
            continue
        applies = (p.node == local.name) if p.node else matches(p.node_selector or "",
                                                                 local.labels)
        if not applies:
            continue
        for c in candidates(p):
            if c.ip != my_ip and c.ip not in global_ips:
                add(spec(c, "Node"))
    for p in peers:  # reverse peerings: we are on the remote side of p
        if not _is_remote_side(p, local, local_as, config, matches):
            continue
        if p.node_selector:
            remote = [n for n in all_nodes if matches(p.node_selector, n.labels)]
        elif p.node:
            remote = [n for n in all_nodes if n.name == p.node]
        else:
            remote = list(all_nodes)
        for n in remote:
            ip = n.address
            if not ip or ip == my_ip or ip in global_ips:
                continue
            add(spec(_Candidate(ip, node_as(n), n.rr_cluster_id, True, None, p), "Node"))
    return out


def _is_remote_side(p: BgpPeer, local: NodeInfo, local_as: int, config: BgpConfig,
                    matches: Matcher) -> bool:
    if p.peer_selector:
        return matches(p.peer_selector, local.labels)
    if not p.peer_ip:
        return False
    ip, _ = split_host_port(p.peer_ip, 0)
    return ip == local.address and (p.as_number or config.as_number) == local_as


def _rr(my_cid: str | None, peer_as: int, local_as: int,
        peer_cid: str | None) -> tuple[bool, str | None]:
    """Route reflector: we reflect to same-AS peers outside our cluster."""
    if my_cid and peer_as == local_as and peer_cid != my_cid:
        return True, my_cid
    return False, None


def diff_peers(old: Mapping[str, PeerSpec], new: Mapping[str, PeerSpec]
               ) -> tuple[list[PeerSpec], list[PeerSpec], list[PeerSpec]]:
    """(added, removed, changed) by name; equal specs are left alone."""
    added = [new[k] for k in sorted(new.keys() - old.keys())]
    removed = [old[k] for k in sorted(old.keys() - new.keys())]
    changed = [new[k] for k in sorted(new.keys() & old.keys()) if new[k] != old[k]]
    return added, removed, changed


def by_address(specs: Sequence[PeerSpec]) -> dict[str, PeerSpec]:
    return {s.address: s for s in specs}
