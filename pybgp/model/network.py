"""Specs of the routing kinds: IPPool, BGPConfiguration, BGPPeer, Node.

Field names, defaults and validation follow projectcalico.org/v3 (libcalico-go
clientv3 defaulting plus the validator and CRD rules).  Where pybgp is
stricter than Calico it says so next to the check.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from pybgp.model import values as v
from pybgp.model.schema import F, Struct, dump_struct, join, struct
from pybgp.model.selector import parse as parse_selector
from pybgp.model.selector import uses_global

ENCAP_MODES = ("Never", "Always", "CrossSubnet")
ALLOWED_USES = ("Workload", "Tunnel", "LoadBalancer")
DEFAULT_BLOCK_SIZE = {4: 26, 6: 122}
BLOCK_SIZE_RANGE = {4: (20, 32), 6: (116, 128)}
_LINK_LOCAL = (ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("fe80::/10"))


def _dump_duration(d: v.Duration) -> str:
    return str(d)


# --- shared sub-structs --------------------------------------------------------

@dataclass
class SecretKeyRef(Struct):
    """Kubernetes ``SecretKeySelector``."""

    name: str = ""
    key: str = ""
    optional: bool | None = None

    FIELDS = (
        F("name", "name", v.string),
        F("key", "key", v.string, required=True),
        F("optional", "optional", v.boolean, ptr=True),
    )


@dataclass
class BGPPassword(Struct):
    """``{secretKeyRef: {name, key}}``: where a TCP-MD5 password lives."""

    secret_key_ref: SecretKeyRef | None = None

    FIELDS = (F("secretKeyRef", "secret_key_ref", struct(SecretKeyRef), dump_struct),)


# --- IPPool ------------------------------------------------------------------

@dataclass
class IPPoolSpec(Struct):
    cidr: str = ""
    vxlan_mode: str = ""
    ipip_mode: str = ""
    nat_outgoing: bool = False
    disabled: bool = False
    disable_bgp_export: bool = False
    block_size: int = 0
    node_selector: str = ""
    namespace_selector: str = ""
    allowed_uses: list[str] = field(default_factory=list)
    assignment_mode: str | None = None

    FIELDS = (
        F("cidr", "cidr", v.canonical_cidr, required=True),
        F("vxlanMode", "vxlan_mode", v.enum(*ENCAP_MODES)),
        F("ipipMode", "ipip_mode", v.enum(*ENCAP_MODES)),
        F("natOutgoing", "nat_outgoing", v.boolean),
        F("disabled", "disabled", v.boolean),
        F("disableBGPExport", "disable_bgp_export", v.boolean),
        F("blockSize", "block_size", v.integer(0, 128)),
        F("nodeSelector", "node_selector", v.selector),
        F("namespaceSelector", "namespace_selector", v.selector),
        F("allowedUses", "allowed_uses", v.list_of(v.enum(*ALLOWED_USES))),
        F("assignmentMode", "assignment_mode", v.enum("Automatic", "Manual"), ptr=True),
    )

    @property
    def network(self) -> v.IPNetwork:
        return ipaddress.ip_network(self.cidr)

    def finish(self, path: str) -> None:
        net = self.network
        # Defaults applied by libcalico-go on create.
        self.block_size = self.block_size or DEFAULT_BLOCK_SIZE[net.version]
        self.node_selector = self.node_selector or "all()"
        self.ipip_mode = self.ipip_mode or "Never"
        self.vxlan_mode = self.vxlan_mode or "Never"
        self.allowed_uses = self.allowed_uses or ["Workload", "Tunnel"]
        self.assignment_mode = self.assignment_mode or "Automatic"

        lo, hi = BLOCK_SIZE_RANGE[net.version]
        if not lo <= self.block_size <= hi:
            raise v.fail(join(path, "blockSize"),
                         f"invalid blockSize {self.block_size} for an IPv{net.version} pool "
                         f"(must be {lo}..{hi})")
        if not self.disabled and net.prefixlen > self.block_size:
            raise v.fail(join(path, "blockSize"),
                         f"pool {self.cidr} is smaller than its blockSize /{self.block_size}")
        if self.ipip_mode != "Never" and self.vxlan_mode != "Never":
            raise v.fail(join(path, "ipipMode"),
                         f"ipipMode '{self.ipip_mode}' and vxlanMode '{self.vxlan_mode}' "
                         "cannot both be enabled")
        if net.version == 6 and self.ipip_mode != "Never":
            raise v.fail(join(path, "ipipMode"),
                         f"ipipMode '{self.ipip_mode}' is not supported on IPv6 pools")
        for ll in _LINK_LOCAL:
            if ll.version == net.version and net.overlaps(ll):
                raise v.fail(join(path, "cidr"),
                             f"CIDR '{self.cidr}' overlaps link-local range {ll}")
        if uses_global(parse_selector(self.node_selector)):
            raise v.fail(join(path, "nodeSelector"),
                         f"global() is not valid in nodeSelector '{self.node_selector}'")
        if "LoadBalancer" in self.allowed_uses and len(set(self.allowed_uses)) > 1:
            raise v.fail(join(path, "allowedUses"),
                         "LoadBalancer cannot be combined with Workload or Tunnel")


# --- BGPConfiguration --------------------------------------------------------

@dataclass
class CIDRBlock(Struct):
    """``{cidr: ...}`` items of serviceClusterIPs / serviceExternalIPs / ..."""

    cidr: str = ""

    FIELDS = (F("cidr", "cidr", v.net),)


@dataclass
class Community(Struct):
    name: str = ""
    value: str = ""

    FIELDS = (F("name", "name", v.name, required=True),
              F("value", "value", v.string, required=True))


@dataclass
class PrefixAdvertisement(Struct):
    cidr: str = ""
    communities: list[str] = field(default_factory=list)

    FIELDS = (F("cidr", "cidr", v.net, required=True),
              F("communities", "communities", v.list_of(v.string), required=True))


LOG_SEVERITIES = ("Trace", "Debug", "Info", "Warning", "Error", "Fatal")
_cidr_blocks = v.list_of(struct(CIDRBlock))
_dump_structs = v.dump_list(dump_struct)


@dataclass
class BGPConfigurationSpec(Struct):
    log_severity_screen: str = ""
    node_to_node_mesh_enabled: bool | None = None
    as_number: int | None = None
    service_load_balancer_ips: list[CIDRBlock] = field(default_factory=list)
    service_external_ips: list[CIDRBlock] = field(default_factory=list)
    service_cluster_ips: list[CIDRBlock] = field(default_factory=list)
    communities: list[Community] = field(default_factory=list)
    prefix_advertisements: list[PrefixAdvertisement] = field(default_factory=list)
    listen_port: int = 0
    node_mesh_password: BGPPassword | None = None
    node_mesh_max_restart_time: v.Duration | None = None
    bind_mode: str | None = None
    ignored_interfaces: list[str] = field(default_factory=list)
    local_workload_peering_ipv4: str = ""
    local_workload_peering_ipv6: str = ""

    FIELDS = (
        F("logSeverityScreen", "log_severity_screen", v.enum(*LOG_SEVERITIES, fold=True)),
        F("nodeToNodeMeshEnabled", "node_to_node_mesh_enabled", v.boolean, ptr=True),
        F("asNumber", "as_number", v.as_number, ptr=True),
        F("serviceLoadBalancerIPs", "service_load_balancer_ips", _cidr_blocks, _dump_structs),
        F("serviceExternalIPs", "service_external_ips", _cidr_blocks, _dump_structs),
        F("serviceClusterIPs", "service_cluster_ips", _cidr_blocks, _dump_structs),
        F("communities", "communities", v.list_of(struct(Community)), _dump_structs),
        F("prefixAdvertisements", "prefix_advertisements",
          v.list_of(struct(PrefixAdvertisement)), _dump_structs),
        F("listenPort", "listen_port", v.integer(1, 65535)),
        F("nodeMeshPassword", "node_mesh_password", struct(BGPPassword), dump_struct, ptr=True),
        F("nodeMeshMaxRestartTime", "node_mesh_max_restart_time", v.duration, _dump_duration,
          ptr=True),
        F("bindMode", "bind_mode", v.enum("None", "NodeIP"), ptr=True),
        F("ignoredInterfaces", "ignored_interfaces", v.list_of(v.string)),
        F("localWorkloadPeeringIPV4", "local_workload_peering_ipv4", v.ip(4)),
        F("localWorkloadPeeringIPV6", "local_workload_peering_ipv6", v.ip(6)),
    )

    @property
    def mesh_enabled(self) -> bool:
        """``nodeToNodeMeshEnabled`` with Calico's default (true)."""
        return self.node_to_node_mesh_enabled is not False

    def finish(self, path: str) -> None:
        if self.node_to_node_mesh_enabled is False:
            for attr, key in (("node_mesh_password", "nodeMeshPassword"),
                              ("node_mesh_max_restart_time", "nodeMeshMaxRestartTime")):
                if getattr(self, attr) is not None:
                    raise v.fail(join(path, key),
                                 f"{key} cannot be set when nodeToNodeMeshEnabled is false")
        if self.communities and not self.prefix_advertisements:
            raise v.fail(join(path, "communities"),
                         "communities are defined but not used in prefixAdvertisements")


# --- BGPPeer -----------------------------------------------------------------

@dataclass
class BGPPeerSpec(Struct):
    node: str = ""
    node_selector: str = ""
    peer_ip: str = ""
    as_number: int = 0
    local_as_number: int | None = None
    peer_selector: str = ""
    keep_original_next_hop: bool = False
    next_hop_mode: str | None = None
    password: BGPPassword | None = None
    source_address: str = ""
    max_restart_time: v.Duration | None = None
    keepalive_time: v.Duration | None = None
    num_allowed_local_as_numbers: int | None = None
    ttl_security: int | None = None
    reachable_by: str = ""
    filters: list[str] = field(default_factory=list)
    local_workload_selector: str = ""
    reverse_peering: str | None = None

    FIELDS = (
        F("node", "node", v.name),
        F("nodeSelector", "node_selector", v.selector),
        F("peerIP", "peer_ip", v.ip_port),
        F("asNumber", "as_number", v.as_number),
        F("localASNumber", "local_as_number", v.as_number, ptr=True),
        F("peerSelector", "peer_selector", v.selector),
        F("keepOriginalNextHop", "keep_original_next_hop", v.boolean),
        F("nextHopMode", "next_hop_mode", v.enum("Auto", "Self", "Keep"), ptr=True),
        F("password", "password", struct(BGPPassword), dump_struct, ptr=True),
        F("sourceAddress", "source_address", v.enum("UseNodeIP", "None")),
        F("maxRestartTime", "max_restart_time", v.duration, _dump_duration, ptr=True),
        F("keepaliveTime", "keepalive_time", v.duration, _dump_duration, ptr=True),
        F("numAllowedLocalASNumbers", "num_allowed_local_as_numbers", v.integer(0, 10),
          ptr=True),
        F("ttlSecurity", "ttl_security", v.integer(0, 255), ptr=True),
        F("reachableBy", "reachable_by", v.ip()),
        F("filters", "filters", v.list_of(v.name)),
        F("localWorkloadSelector", "local_workload_selector", v.selector),
        F("reversePeering", "reverse_peering", v.enum("Auto", "Manual"), ptr=True),
    )

    @property
    def peer_address(self) -> str:
        """``peerIP`` without any port."""
        parsed = v.split_ip_port(self.peer_ip)
        return parsed[0] if parsed else ""

    @property
    def peer_port(self) -> int | None:
        parsed = v.split_ip_port(self.peer_ip)
        return parsed[1] if parsed else None

    @property
    def is_global(self) -> bool:
        """A peering for every node (neither ``node`` nor ``nodeSelector``)."""
        return not self.node and not self.node_selector

    def finish(self, path: str) -> None:
        if self.node and self.node_selector:
            raise v.fail(join(path, "nodeSelector"), "node and nodeSelector cannot both be set")
        if self.peer_ip and self.peer_selector:
            raise v.fail(join(path, "peerSelector"), "peerIP and peerSelector cannot both be set")
        if self.peer_selector and self.as_number:
            raise v.fail(join(path, "asNumber"), "asNumber must be empty when peerSelector is set")
        # pybgp is stricter than Calico here: a peer must say whom to peer with,
        # and an explicit peerIP needs the peer's AS number.
        if not self.peer_ip and not self.peer_selector:
            raise v.fail(join(path, "peerIP"), "one of peerIP or peerSelector is required")
        if self.peer_ip and not self.as_number:
            raise v.fail(join(path, "asNumber"),
                         f"asNumber is required with peerIP '{self.peer_ip}'")
        if self.keep_original_next_hop and self.next_hop_mode not in (None, "Keep"):
            raise v.fail(join(path, "nextHopMode"),
                         "keepOriginalNextHop conflicts with nextHopMode "
                         f"'{self.next_hop_mode}'")
        if self.reachable_by and self.peer_ip:
            reach = ipaddress.ip_address(self.reachable_by)
            if reach.version != ipaddress.ip_address(self.peer_address).version:
                raise v.fail(join(path, "reachableBy"),
                             "reachableBy and peerIP address family mismatched")


# --- Node --------------------------------------------------------------------

@dataclass
class NodeBGPSpec(Struct):
    as_number: int | None = None
    ipv4_address: str = ""
    ipv6_address: str = ""
    ipv4_ipip_tunnel_addr: str = ""
    route_reflector_cluster_id: str = ""

    FIELDS = (
        F("asNumber", "as_number", v.as_number, ptr=True),
        F("ipv4Address", "ipv4_address", v.interface_cidr(4)),
        F("ipv6Address", "ipv6_address", v.interface_cidr(6)),
        F("ipv4IPIPTunnelAddr", "ipv4_ipip_tunnel_addr", v.ip(4)),
        F("routeReflectorClusterID", "route_reflector_cluster_id", v.ip(4)),
    )

    @property
    def ipv4(self) -> str:
        """The bare IPv4 address (router id / peering address), or ""."""
        return self.ipv4_address.split("/")[0]

    @property
    def ipv6(self) -> str:
        return self.ipv6_address.split("/")[0]


@dataclass
class OrchRef(Struct):
    orchestrator: str = ""
    node_name: str = ""

    FIELDS = (F("nodeName", "node_name", v.string),
              F("orchestrator", "orchestrator", v.string, always=True))


@dataclass
class NodeAddress(Struct):
    address: str = ""
    type: str = ""

    FIELDS = (F("address", "address", v.net, always=True),
              F("type", "type", v.enum("CalicoNodeIP", "InternalIP", "ExternalIP")))


@dataclass
class NodeInterface(Struct):
    name: str = ""
    addresses: list[str] = field(default_factory=list)

    FIELDS = (F("name", "name", v.string), F("addresses", "addresses", v.list_of(v.string)))


@dataclass
class NodeWireguardSpec(Struct):
    interface_ipv4_address: str = ""
    interface_ipv6_address: str = ""

    FIELDS = (F("interfaceIPv4Address", "interface_ipv4_address", v.ip(4)),
              F("interfaceIPv6Address", "interface_ipv6_address", v.ip(6)))


@dataclass
class NodeSpec(Struct):
    bgp: NodeBGPSpec | None = None
    ipv4_vxlan_tunnel_addr: str = ""
    vxlan_tunnel_mac_addr: str = ""
    ipv6_vxlan_tunnel_addr: str = ""
    vxlan_tunnel_mac_addr_v6: str = ""
    orch_refs: list[OrchRef] = field(default_factory=list)
    wireguard: NodeWireguardSpec | None = None
    addresses: list[NodeAddress] = field(default_factory=list)
    interfaces: list[NodeInterface] = field(default_factory=list)

    FIELDS = (
        F("bgp", "bgp", struct(NodeBGPSpec), dump_struct, ptr=True),
        F("ipv4VXLANTunnelAddr", "ipv4_vxlan_tunnel_addr", v.ip(4)),
        F("vxlanTunnelMACAddr", "vxlan_tunnel_mac_addr", v.mac),
        F("ipv6VXLANTunnelAddr", "ipv6_vxlan_tunnel_addr", v.ip(6)),
        F("vxlanTunnelMACAddrV6", "vxlan_tunnel_mac_addr_v6", v.mac),
        F("orchRefs", "orch_refs", v.list_of(struct(OrchRef)), _dump_structs),
        F("wireguard", "wireguard", struct(NodeWireguardSpec), dump_struct, ptr=True),
        F("addresses", "addresses", v.list_of(struct(NodeAddress)), _dump_structs),
        F("interfaces", "interfaces", v.list_of(struct(NodeInterface)), _dump_structs),
    )
