"""Pure naming and address rules of the test/lab harness (no I/O, no root).

Owns: run ids, namespace and interface names (kernel limit 15 chars), Calico's
host-side veth name, and the lab address ranges with their validators.

Must never: accept an address outside the lab ranges. Nodes and the fabric
use 198.18.0.0/16, pods 198.19.0.0/16, IPv6 anything in 2001:db8::/32; a
harness that cannot be pointed at a real address cannot send a packet to one.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import secrets
from collections.abc import Container

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

NODE_NET4 = ipaddress.IPv4Network("198.18.0.0/16")
POD_NET4 = ipaddress.IPv4Network("198.19.0.0/16")
LAB_NET6 = ipaddress.IPv6Network("2001:db8::/32")
NODE_NETS: tuple[IPNetwork, ...] = (NODE_NET4, LAB_NET6)
POD_NETS: tuple[IPNetwork, ...] = (POD_NET4, LAB_NET6)
LAB_NETS: tuple[IPNetwork, ...] = (NODE_NET4, POD_NET4, LAB_NET6)

IFNAMSIZ = 15  # usable characters of a Linux interface name
RUN_ID_LEN = 4  # hex characters
_PART_RE = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
_PREFIX_RE = re.compile(r"^[a-z][a-z0-9]{0,11}$")
_RUN_ID_RE = re.compile(r"^[0-9a-f]{4,8}$")


class LabAddressError(ValueError):
    """An address outside the lab ranges (or malformed) was given to the harness."""


def make_run_id(taken: Container[str] = ()) -> str:
    """A fresh random run id of RUN_ID_LEN hex chars, not in `taken`."""
    for _ in range(100):
        rid = secrets.token_hex(RUN_ID_LEN // 2)
        if rid not in taken:
            return rid
    for n in range(16**RUN_ID_LEN):
        rid = f"{n:0{RUN_ID_LEN}x}"
        if rid not in taken:
            return rid
    raise RuntimeError("no free run id left")


def check_prefix(prefix: str) -> str:
    if not _PREFIX_RE.match(prefix):
        raise ValueError(f"bad prefix {prefix!r}: want [a-z][a-z0-9]{{0,11}}")
    return prefix


def check_run_id(run_id: str) -> str:
    if not _RUN_ID_RE.match(run_id):
        raise ValueError(f"bad run id {run_id!r}: want 4-8 lowercase hex chars")
    return run_id


def check_part(name: str) -> str:
    """A logical node/pod/router name: lowercase letters, digits, inner dashes, ≤ 20."""
    if len(name) > 20 or not _PART_RE.match(name):
        raise ValueError(f"bad name {name!r}: want [a-z0-9-], at most 20 chars")
    return name


def ns_name(prefix: str, run_id: str, name: str) -> str:
    """Namespace name `<prefix>-<run id>-<name>`; the run id makes it unique per run."""
    return f"{check_prefix(prefix)}-{check_run_id(run_id)}-{check_part(name)}"


def ns_marker(prefix: str, run_id: str) -> str:
    """The start shared by every namespace name of one run (for clean-up by identity)."""
    return f"{check_prefix(prefix)}-{check_run_id(run_id)}-"


def check_ifname(name: str) -> str:
    if not 0 < len(name) <= IFNAMSIZ or re.search(r"[/:\s]", name):
        raise ValueError(f"bad interface name {name!r}: 1-{IFNAMSIZ} chars, no / : or space")
    return name


def fabric_port_name(run_id: str, name: str, index: int) -> str:
    """The bridge-side veth of a node on the fabric: `f<rid>-<name>`, else `f<rid>-n<index>`."""
    candidate = f"f{run_id}-{name}"
    if len(candidate) > IFNAMSIZ:
        candidate = f"f{run_id}-n{index}"
    return check_ifname(candidate)


def cali_name(k8s_namespace: str, pod: str) -> str:
    """Calico's host-side veth name: `cali` + first 11 hex of sha1("<namespace>.<pod>")."""
    digest = hashlib.sha1(f"{k8s_namespace}.{pod}".encode()).hexdigest()
    return "cali" + digest[:11]


def _inside(net: IPNetwork, nets: tuple[IPNetwork, ...]) -> bool:
    return any(
        net.version == n.version and net.subnet_of(n)  # type: ignore[arg-type]
        for n in nets
    )


def check_node_address(value: str) -> IPInterface:
    """`198.18.0.11/24` or `2001:db8::11/64`: an explicit prefix, all inside the node ranges."""
    if "/" not in value:
        raise LabAddressError(f"node address {value!r} needs a prefix length, e.g. /24")
    try:
        iface = ipaddress.ip_interface(value)
    except ValueError as exc:
        raise LabAddressError(str(exc)) from None
    if not _inside(iface.network, NODE_NETS):
        raise LabAddressError(f"node address {value} is outside the lab ranges {NODE_NETS}")
    net = iface.network
    if iface.version == 4 and net.prefixlen < 31 and iface.ip in (
        net.network_address,
        net.broadcast_address,
    ):
        raise LabAddressError(f"node address {value} is a network or broadcast address")
    return iface


def check_pod_address(value: str) -> IPAddress:
    """A pod address (`198.19.0.5`, `198.19.0.5/32`, `2001:db8:1::5/128`) inside the pod ranges."""
    try:
        iface = ipaddress.ip_interface(value)
    except ValueError as exc:
        raise LabAddressError(str(exc)) from None
    if iface.network.prefixlen != iface.max_prefixlen:
        raise LabAddressError(f"pod address {value} must be a single host (/32 or /128)")
    if not _inside(iface.network, POD_NETS):
        raise LabAddressError(f"pod address {value} is outside the pod ranges {POD_NETS}")
    return iface.ip


def check_lab_destination(value: str) -> IPAddress:
    """An address a test may send packets to: inside one of the lab ranges."""
    try:
        addr = ipaddress.ip_address(value)
    except ValueError as exc:
        raise LabAddressError(str(exc)) from None
    if not _inside(ipaddress.ip_network(addr), LAB_NETS):
        raise LabAddressError(f"{value} is outside the lab ranges {LAB_NETS}")
    return addr


def check_lab_network(value: str) -> IPNetwork:
    """A route destination for the harness: a network inside the lab ranges."""
    try:
        net = ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        raise LabAddressError(str(exc)) from None
    if not _inside(net, LAB_NETS):
        raise LabAddressError(f"{value} is outside the lab ranges {LAB_NETS}")
    return net
