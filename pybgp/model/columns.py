"""calicoctl-like table columns for ``pybgp get KIND`` (default and ``-o wide``).

Headings and cell contents follow calicoctl's resource manager templates.
Namespaced kinds get a leading NAMESPACE column, as ``calicoctl get -A``
shows; callers that print one namespace may drop it.  Pure functions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pybgp.model.kinds import lookup_kind
from pybgp.model.resource import Resource

Column = tuple[str, Callable[[Resource[Any]], str]]


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _join(values: list[str]) -> str:
    return ",".join(values)


def _name(r: Resource[Any]) -> str:
    return r.metadata.name


def _namespace(r: Resource[Any]) -> str:
    return r.metadata.namespace


def _peer_node(r: Resource[Any]) -> str:
    s = r.spec
    return s.node or s.node_selector or "(global)"


def _node_asn(r: Resource[Any]) -> str:
    bgp = r.spec.bgp
    if bgp is None:
        return ""
    return str(bgp.as_number) if bgp.as_number is not None else "(64512)"


def _order(r: Resource[Any]) -> str:
    order = r.spec.order
    if order is None:
        return ""
    return str(int(order)) if float(order).is_integer() else str(order)


_COLUMNS: dict[str, dict[str, Callable[[Resource[Any]], str]]] = {
    "IPPool": {
        "NAME": _name,
        "CIDR": lambda r: r.spec.cidr,
        "NAT": lambda r: _bool(r.spec.nat_outgoing),
        "IPIPMODE": lambda r: r.spec.ipip_mode or "Never",
        "VXLANMODE": lambda r: r.spec.vxlan_mode or "Never",
        "DISABLED": lambda r: _bool(r.spec.disabled),
        "DISABLEBGPEXPORT": lambda r: _bool(r.spec.disable_bgp_export),
        "SELECTOR": lambda r: r.spec.node_selector,
    },
    "BGPConfiguration": {
        "NAME": _name,
        "LOGSEVERITY": lambda r: r.spec.log_severity_screen,
        "MESHENABLED": lambda r: "-" if r.spec.node_to_node_mesh_enabled is None
        else _bool(r.spec.node_to_node_mesh_enabled),
        "ASNUMBER": lambda r: "-" if r.spec.as_number is None else str(r.spec.as_number),
    },
    "BGPPeer": {
        "NAME": _name,
        "PEERIP": lambda r: r.spec.peer_ip,
        "NODE": _peer_node,
        "ASN": lambda r: str(r.spec.as_number),
    },
    "Node": {
        "NAME": _name,
        "ASN": _node_asn,
        "IPV4": lambda r: r.spec.bgp.ipv4_address if r.spec.bgp else "",
        "IPV6": lambda r: r.spec.bgp.ipv6_address if r.spec.bgp else "",
    },
    "WorkloadEndpoint": {
        "NAMESPACE": _namespace,
        "NAME": _name,
        "WORKLOAD": lambda r: r.spec.workload or r.spec.pod,
        "NODE": lambda r: r.spec.node,
        "NETWORKS": lambda r: _join(r.spec.ip_networks),
        "INTERFACE": lambda r: r.spec.interface_name,
        "PROFILES": lambda r: _join(r.spec.profiles),
        "NATS": lambda r: _join([f"{n.internal_ip}:{n.external_ip}" for n in r.spec.ip_nats]),
    },
    "HostEndpoint": {
        "NAME": _name,
        "NODE": lambda r: r.spec.node,
        "INTERFACE": lambda r: r.spec.interface_name,
        "IPS": lambda r: _join(r.spec.expected_ips),
        "PROFILES": lambda r: _join(r.spec.profiles),
    },
    "Profile": {
        "NAME": _name,
        "LABELS": lambda r: _join([f"{k}={v}" for k, v in sorted(r.spec.labels_to_apply.items())]),
    },
    "NetworkPolicy": {
        "NAMESPACE": _namespace,
        "NAME": _name,
        "ORDER": _order,
        "SELECTOR": lambda r: r.spec.selector,
    },
    "GlobalNetworkPolicy": {
        "NAME": _name,
        "ORDER": _order,
        "SELECTOR": lambda r: r.spec.selector,
    },
    "FelixConfiguration": {"NAME": _name},
    "ClusterInformation": {
        "NAME": _name,
        "CLUSTERGUID": lambda r: r.spec.cluster_guid,
        "CLUSTERTYPE": lambda r: r.spec.cluster_type,
        "CALICOVERSION": lambda r: r.spec.calico_version,
        "DATASTOREREADY": lambda r: "" if r.spec.datastore_ready is None
        else _bool(r.spec.datastore_ready),
    },
}

_LAYOUT: dict[str, tuple[str, str]] = {  # kind -> (default headings, wide headings)
    "IPPool": ("NAME CIDR SELECTOR",
               "NAME CIDR NAT IPIPMODE VXLANMODE DISABLED DISABLEBGPEXPORT SELECTOR"),
    "BGPConfiguration": ("NAME LOGSEVERITY MESHENABLED ASNUMBER",
                         "NAME LOGSEVERITY MESHENABLED ASNUMBER"),
    "BGPPeer": ("NAME PEERIP NODE ASN", "NAME PEERIP NODE ASN"),
    "Node": ("NAME", "NAME ASN IPV4 IPV6"),
    "WorkloadEndpoint": ("NAMESPACE WORKLOAD NODE NETWORKS INTERFACE",
                         "NAMESPACE NAME WORKLOAD NODE NETWORKS INTERFACE PROFILES NATS"),
    "HostEndpoint": ("NAME NODE", "NAME NODE INTERFACE IPS PROFILES"),
    "Profile": ("NAME", "NAME LABELS"),
    "NetworkPolicy": ("NAMESPACE NAME", "NAMESPACE NAME ORDER SELECTOR"),
    "GlobalNetworkPolicy": ("NAME", "NAME ORDER SELECTOR"),
    "FelixConfiguration": ("NAME", "NAME"),
    "ClusterInformation": ("NAME CLUSTERGUID CLUSTERTYPE CALICOVERSION DATASTOREREADY",) * 2,
}


def columns(kind: str, wide: bool = False) -> list[Column]:
    """``[(HEADING, cell_function)]`` for a kind name or alias."""
    info = lookup_kind(kind)
    cells = _COLUMNS[info.kind]
    headings = _LAYOUT[info.kind][1 if wide else 0].split()
    return [(h, cells[h]) for h in headings]


def table_rows(kind: str, resources: list[Resource[Any]], wide: bool = False) -> list[list[str]]:
    """Heading row followed by one row of cells per resource."""
    cols = columns(kind, wide)
    return [[h for h, _ in cols]] + [[cell(r) for _, cell in cols] for r in resources]
