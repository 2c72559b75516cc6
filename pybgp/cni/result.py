"""The ADD result (1.1-shaped, rendered per version by ``spec.format_result``) and
reading a ``prevResult`` back for CHECK.

Shape, as the reference ptp plugin reports it: interfaces = [host veth
(name, mac), container interface (name, mac, sandbox = netns path, mtu)];
ips = [{"address": "<ip>/32", "interface": 1}] (no gateway: the pod's
next hop is the link-local 169.254.1.1, reported in the route);
routes = [{"dst": "0.0.0.0/0", "gw": "169.254.1.1"}]; dns from the config,
else from the IPAM result. Pure functions.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from pybgp.cni import spec

GATEWAY = "169.254.1.1"


def add_result(
    *,
    host_ifname: str,
    host_mac: str,
    ifname: str,
    mac: str,
    netns: str,
    ip: str,
    mtu: int,
    dns: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "interfaces": [
            {"name": host_ifname, "mac": host_mac},
            {"name": ifname, "mac": mac, "sandbox": netns, "mtu": mtu},
        ],
        "ips": [{"address": f"{ip}/32", "interface": 1}],
        "routes": [{"dst": "0.0.0.0/0", "gw": GATEWAY}],
        "dns": dict(dns or {}),
    }


class Previous:
    """What CHECK needs from ``prevResult``: the container's addresses and interfaces."""

    def __init__(self, ips: list[str], host_ifname: str | None, container_mac: str | None):
        self.ips = ips
        self.host_ifname = host_ifname
        self.container_mac = container_mac


def parse_previous(config: Mapping[str, Any], ifname: str, netns: str) -> Previous:
    prev = config.get("prevResult")
    if not isinstance(prev, dict):
        raise spec.CNIError(spec.INVALID_CONFIG, "CHECK needs prevResult (the result of ADD)")
    ifaces = [i for i in prev.get("interfaces") or [] if isinstance(i, dict)]
    ours = None
    host = None
    for i, iface in enumerate(ifaces):
        if iface.get("name") == ifname and iface.get("sandbox") == netns:
            ours = i
        elif not iface.get("sandbox") and str(iface.get("name", "")).startswith("cali"):
            host = str(iface["name"])
    if ours is None:
        raise spec.CNIError(spec.CHECK_MISMATCH, f"prevResult lists no interface {ifname} in "
                            f"{netns}: it is not this plugin's result for this container")
    ips = []
    for item in prev.get("ips") or []:
        if not isinstance(item, dict) or "address" not in item:
            continue
        if item.get("interface") not in (None, ours):
            continue
        try:
            iface_addr = ipaddress.ip_interface(item["address"])
        except ValueError:
            raise spec.CNIError(spec.INVALID_CONFIG,
                                f"prevResult has an invalid address {item['address']!r}") from None
        if iface_addr.version == 4:
            ips.append(str(iface_addr.ip))
    if not ips:
        raise spec.CNIError(spec.CHECK_MISMATCH, "prevResult lists no IPv4 address for "
                            f"{ifname}")
    return Previous(ips, host, ifaces[ours].get("mac"))


def compare(prev: Previous, seen: Mapping[str, Any], host_ifname: str) -> list[str]:
    """What differs between ``prevResult`` and the kernel (``wiring.inspect``), as sentences."""
    out: list[str] = []
    if prev.host_ifname and prev.host_ifname != host_ifname:
        out.append(f"prevResult names host interface {prev.host_ifname}, expected {host_ifname}")
    host, ctr = seen["host"], seen["container"]
    if not ctr.get("exists"):
        return out + ["the container interface does not exist"]
    if prev.container_mac and ctr["mac"] != prev.container_mac:
        out.append(f"container interface MAC is {ctr['mac']}, prevResult says "
                   f"{prev.container_mac}")
    for ip in prev.ips:
        if f"{ip}/32" not in ctr["addresses"]:
            out.append(f"address {ip}/32 is missing in the container (has "
                       f"{', '.join(ctr['addresses']) or 'none'})")
    routes = set(ctr["routes"])
    for route, text in (((f"{GATEWAY}/32", ""), f"route {GATEWAY} scope link"),
                        (("0.0.0.0/0", GATEWAY), f"default route via {GATEWAY}")):
        if route not in routes:
            out.append(f"container {text} is missing")
    if not host.get("exists"):
        return out + [f"host interface {host_ifname} does not exist"]
    neigh = ctr["neighbours"].get(GATEWAY)
    if neigh is None or neigh[0] != host["mac"] or not neigh[1] & 0x80:
        out.append(f"container neighbour entry {GATEWAY} lladdr {host['mac']} PERMANENT "
                   f"is missing (found {neigh})")
    for ip in prev.ips:
        if f"{ip}/32" not in host["routes"]:
            out.append(f"host route {ip}/32 dev {host_ifname} is missing")
    return out
