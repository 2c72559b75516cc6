"""What the speaker reads from etcd, as plain data (pure, no I/O).

``Inputs.apply(key, value)`` folds one datastore update (``value`` None =
deleted) into the speaker's view: Nodes, the default BGPConfiguration,
BGPPeers, IPPools and this node's block affinities. Only confirmed
affinities count (a pending claim is neither advertised nor blackholed).
A value that does not parse is dropped with a reason in ``errors`` rather
than stopping the speaker: one bad resource must not take the node's
routing down.

TCP-MD5 passwords are Calico ``secretKeyRef``s; without a Kubernetes API the
speaker reads them from ``<secrets_dir>/<secret name>/<key>``, the layout of
a mounted Secret volume.
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass, field
from typing import Any

from pybgp.errors import ValidationError
from pybgp.ipam.keys import parse_affinity_key
from pybgp.ipam.records import Affinity
from pybgp.model import parse_json, parse_key
from pybgp.speaker.peers import BgpConfig, BgpPeer, NodeInfo
from pybgp.speaker.policy import Pool

RESOURCE_PLURALS = ("nodes", "bgpconfigurations", "bgppeers", "ippools")
STATE_CONFIRMED = "confirmed"


class Changed(enum.IntFlag):
    """What an update changed, so the core redoes only what depends on it."""

    NOTHING = 0
    PEERS = 1  # Nodes, the BGP configuration, BGP peers: sessions, AS, router id
    EXPORTS = 2  # IP pools and this node's affinities: what it originates


def read_secret(secrets_dir: str, ref: Any) -> str | None:
    """The password a ``{secretKeyRef: {name, key}}`` points at, or None."""
    skr = getattr(ref, "secret_key_ref", None)
    if skr is None or not skr.name or not skr.key:
        return None
    path = os.path.join(secrets_dir, skr.name, skr.key)
    try:
        with open(path) as fh:
            return fh.read().strip() or None
    except OSError:
        return None


def _seconds(duration: Any) -> int | None:
    return int(duration.seconds) if duration is not None else None


@dataclass
class Inputs:
    node: str
    secrets_dir: str = "/etc/pybgp/secrets"
    nodes: dict[str, NodeInfo] = field(default_factory=dict)
    config: BgpConfig = field(default_factory=BgpConfig)
    bgp_peers: dict[str, BgpPeer] = field(default_factory=dict)
    pools: dict[str, Pool] = field(default_factory=dict)
    affine_blocks: set[str] = field(default_factory=set)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def local(self) -> NodeInfo | None:
        info = self.nodes.get(self.node)
        return info if info is not None and info.ipv4 else None

    def apply(self, key: str, value: bytes | None) -> Changed:
        """Fold one update in; what of the speaker's inputs it changed."""
        self.errors.pop(key, None)
        try:
            if "/calico/ipam/v2/host/" in key:
                return self._affinity(key, value)
            return self._resource(key, value)
        except (ValidationError, ValueError) as exc:
            self.errors[key] = str(exc)
            return self._forget(key)

    def _affinity(self, key: str, value: bytes | None) -> Changed:
        parsed = parse_affinity_key(key)
        if parsed is None or parsed[0] != self.node:
            return Changed.NOTHING
        cidr = str(parsed[1])
        before = cidr in self.affine_blocks
        confirmed = False
        if value is not None:
            aff = Affinity.decode(value, key)
            confirmed = aff.state == STATE_CONFIRMED and not aff.deleted
        if confirmed:
            self.affine_blocks.add(cidr)
        else:
            self.affine_blocks.discard(cidr)
        return Changed.EXPORTS if before != confirmed else Changed.NOTHING

    def _resource(self, key: str, value: bytes | None) -> Changed:
        info, _, name = parse_key(key)
        if info.plural not in RESOURCE_PLURALS:
            return Changed.NOTHING
        if value is None:
            return self._forget(key)
        res = parse_json(value)
        spec = res.spec
        if info.plural == "nodes":
            bgp = spec.bgp
            node = NodeInfo(
                name=name,
                ipv4=bgp.ipv4 if bgp else "",
                as_number=bgp.as_number if bgp else None,
                rr_cluster_id=(bgp.route_reflector_cluster_id or None) if bgp else None,
                labels=dict(res.labels),
            )
            changed = self.nodes.get(name) != node
            self.nodes[name] = node
            return _if(changed, Changed.PEERS)
        if info.plural == "bgpconfigurations":
            if name != "default":
                return Changed.NOTHING
            cfg = BgpConfig(
                node_to_node_mesh=spec.mesh_enabled,
                as_number=spec.as_number or 64512,
                listen_port=spec.listen_port or 179,
                node_mesh_password=read_secret(self.secrets_dir, spec.node_mesh_password),
                node_mesh_max_restart_time=_seconds(spec.node_mesh_max_restart_time) or 120,
            )
            changed = cfg != self.config
            self.config = cfg
            return _if(changed, Changed.PEERS)
        if info.plural == "bgppeers":
            peer = BgpPeer(
                name=name,
                node=spec.node or None,
                peer_ip=spec.peer_ip or None,
                as_number=spec.as_number or None,
                node_selector=spec.node_selector or None,
                peer_selector=spec.peer_selector or None,
                password=read_secret(self.secrets_dir, spec.password),
                max_restart_time=_seconds(spec.max_restart_time),
            )
            changed = self.bgp_peers.get(name) != peer
            self.bgp_peers[name] = peer
            return _if(changed, Changed.PEERS)
        pool = Pool(
            cidr=spec.cidr,
            disable_bgp_export=spec.disable_bgp_export,
            disabled=spec.disabled,
            vxlan_mode=spec.vxlan_mode or "Never",
            ipip_mode=spec.ipip_mode or "Never",
        )
        changed = self.pools.get(name) != pool
        self.pools[name] = pool
        return _if(changed, Changed.EXPORTS)

    def _forget(self, key: str) -> Changed:
        try:
            info, _, name = parse_key(key)
        except ValidationError:
            return Changed.NOTHING
        tables: dict[str, tuple[dict[str, Any], Changed]] = {
            "nodes": (self.nodes, Changed.PEERS),
            "bgppeers": (self.bgp_peers, Changed.PEERS),
            "ippools": (self.pools, Changed.EXPORTS),
        }
        if info.plural in tables:
            table, what = tables[info.plural]
            return _if(table.pop(name, None) is not None, what)
        if info.plural == "bgpconfigurations" and name == "default":
            changed = self.config != BgpConfig()
            self.config = BgpConfig()
            return _if(changed, Changed.PEERS)
        return Changed.NOTHING


def _if(changed: bool, what: Changed) -> Changed:
    return what if changed else Changed.NOTHING
