"""Wiring a pod into the node's routing, Calico style (raw netlink).

Container side: ``<ifname>`` with the pod address as /32,
``169.254.1.1 dev <ifname> scope link``, ``default via 169.254.1.1`` and a
PERMANENT neighbour entry for 169.254.1.1 with the host veth's MAC.
Host side (the current network namespace): ``cali…`` up, forwarding=1,
proxy_arp=1, route_localnet=1, neigh proxy_delay=0, and the route
``<ip>/32 dev cali… scope link proto 80`` (protocol 80 marks workload routes,
as Felix does, so the agent recognises them as its own).

The container side is programmed through a netlink socket opened inside the
pod's namespace by a short-lived ``setns()`` thread; the namespace is opened
read-only by path, so a missing one is an error, never created. ADD and DEL
use hand-packed netlink (``kernel_sync.links``: ~0.1 ms a request against
~2 ms for a pyroute2 call); CHECK and GC, off the hot path, use pyroute2.
Everything ``wire`` does is undone by ``unwire`` (deleting the host veth
removes its peer).
"""

from __future__ import annotations

import errno
import hashlib
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pybgp.kernel_sync import links
from pybgp.kernel_sync.desired import KRoute, NextHop
from pybgp.kernel_sync.links import Rtnl
from pybgp.kernel_sync.netlink import run_in_netns

if TYPE_CHECKING:
    from pyroute2 import IPRoute

GATEWAY = "169.254.1.1"
WORKLOAD_ROUTE_PROTO = 80
RTPROT_BOOT = 3



class WiringError(Exception):
    pass


class NetnsGone(WiringError):
    pass


@dataclass(frozen=True)
class Wired:
    host_ifname: str
    host_mac: str
    container_ifname: str
    container_mac: str


def host_veth_name(namespace: str, pod: str, container_id: str) -> str:
    """``cali`` + the first 11 hex chars of sha1(``<namespace>.<pod>``), as Calico names it."""
    seed = f"{namespace}.{pod}" if namespace and pod else container_id
    return "cali" + hashlib.sha1(seed.encode()).hexdigest()[:11]


def _rtnl(netns: str) -> Rtnl:
    try:
        return Rtnl(netns)
    except FileNotFoundError as exc:
        raise NetnsGone(f"network namespace {netns} does not exist") from exc


def _sysctl(path: str, value: str) -> None:
    with open(path, "w") as fh:
        fh.write(value)


def _host_sysctls(ifname: str) -> None:
    base = f"/proc/sys/net/ipv4/conf/{ifname}"
    for name in ("forwarding", "proxy_arp", "route_localnet"):
        _sysctl(f"{base}/{name}", "1")
    _sysctl(f"/proc/sys/net/ipv4/neigh/{ifname}/proxy_delay", "0")


def wire(
    netns: str, ifname: str, host_ifname: str, addresses: Sequence[str], mtu: int = 1500
) -> Wired:
    """Create and configure the veth pair; on any failure nothing is left behind.

    Two netlink batches on two sockets (host, container), no pyroute2: this
    is on every pod start's critical path.
    """
    nets = [ipaddress.ip_interface(a) for a in addresses]
    try:
        ns_fd = os.open(netns, os.O_RDONLY)
    except FileNotFoundError as exc:
        raise NetnsGone(f"network namespace {netns} does not exist") from exc
    with Rtnl() as host:
        stale = host.link(host_ifname)
        if stale is not None:  # left over from an earlier sandbox of the same pod
            host.call((f"delete stale {host_ifname}", links.link_del(stale[0])),
                      ok=(errno.ENODEV,))
        try:
            host.call((f"create veth {host_ifname}",
                       links.veth(host_ifname, ifname, ns_fd, mtu)))
        except links.NetlinkError as exc:
            if exc.errno == errno.EEXIST:
                raise WiringError(
                    f"interface {ifname} already exists in the container {netns}"
                ) from exc
            raise WiringError(f"cannot create veth {host_ifname}: {exc}") from exc
        finally:
            os.close(ns_fd)
        try:
            found = host.link(host_ifname)
            if found is None:
                raise WiringError(f"veth {host_ifname} vanished after creation")
            index, host_mac = found
            _host_sysctls(host_ifname)
            container_mac = _configure_container(netns, ifname, nets, host_mac)
            host.call(("set host veth up", links.link_up(index)), *(
                (f"route {net.ip} dev {host_ifname}",
                 links.route("replace", KRoute(f"{net.ip}/{net.max_prefixlen}", "unicast",
                                               (NextHop(dev=index),), WORKLOAD_ROUTE_PROTO)))
                for net in nets))
        except BaseException:
            unwire(host_ifname)
            raise
    return Wired(host_ifname, host_mac, ifname, container_mac)


def _configure_container(
    netns: str, ifname: str,
    nets: Sequence[ipaddress.IPv4Interface | ipaddress.IPv6Interface], host_mac: str,
) -> str:
    with _rtnl(netns) as ns:
        found = ns.link(ifname)
        if found is None:
            raise WiringError(f"veth peer {ifname} did not appear in the container")
        index, mac = found
        lo = ns.link("lo")
        ups = [("set lo up", links.link_up(lo[0]))] if lo else []
        # proto boot, as `ip route add` and Calico's netlink calls write them
        ns.call(*ups, (f"set {ifname} up", links.link_up(index)), *(
            (f"address {net}", links.address(index, str(net.ip), net.max_prefixlen))
            for net in nets),
            (f"route {GATEWAY}", links.route("add", KRoute(
                f"{GATEWAY}/32", "unicast", (NextHop(dev=index),), RTPROT_BOOT))),
            ("default route", links.route("add", KRoute(
                "0.0.0.0/0", "unicast", (NextHop(GATEWAY, dev=index),), RTPROT_BOOT))),
            (f"neighbour {GATEWAY}", links.neighbour(index, GATEWAY, host_mac)))
        return mac


def remove_container_interface(netns: str, ifname: str) -> bool:
    """Delete ``ifname`` inside ``netns`` (and so its host peer). True if it existed."""
    with _rtnl(netns) as ns:
        found = ns.link(ifname)
        if found is None:
            return False
        ns.call((f"delete {ifname}", links.link_del(found[0])), ok=(errno.ENODEV,))
        return True


def unwire(host_ifname: str) -> bool:
    """Delete the host veth (and so its peer). True if it existed."""
    with Rtnl() as host:
        found = host.link(host_ifname)
        if found is None:
            return False
        host.call((f"delete {host_ifname}", links.link_del(found[0])), ok=(errno.ENODEV,))
        return True


def _link_index(ipr: IPRoute, ifname: str) -> int | None:
    found = ipr.link_lookup(ifname=ifname)
    return found[0] if found else None


def _mac(ipr: IPRoute, index: int) -> str:
    return str(ipr.get_links(index)[0].get_attr("IFLA_ADDRESS"))


def host_veths(prefix: str = "cali") -> list[str]:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        names = [str(link.get_attr("IFLA_IFNAME")) for link in ipr.get_links()]
    return [n for n in names if n.startswith(prefix)]


def inspect(netns: str, ifname: str, host_ifname: str) -> dict[str, Any]:
    """What is actually there, for CHECK: addresses, routes, neighbours on both sides."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        index = _link_index(ipr, host_ifname)
        host: dict[str, Any] = {"exists": index is not None, "routes": [], "mac": None}
        if index is not None:
            host["mac"] = _mac(ipr, index)
            host["routes"] = sorted(
                f"{r.get_attr('RTA_DST')}/{r['dst_len']}"
                for r in ipr.get_routes(family=2, oif=index)
                if r.get_attr("RTA_DST")
            )

    def container() -> dict[str, Any]:
        with IPRoute() as ipr:
            idx = _link_index(ipr, ifname)
            if idx is None:
                return {"exists": False}
            addrs = sorted(
                f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}"
                for a in ipr.get_addr(index=idx, family=2)
            )
            routes = sorted(
                (f"{r.get_attr('RTA_DST') or '0.0.0.0'}/{r['dst_len']}",
                 str(r.get_attr("RTA_GATEWAY") or ""))
                for r in ipr.get_routes(family=2, oif=idx, table=254)
            )
            neigh = {
                str(n.get_attr("NDA_DST")): (str(n.get_attr("NDA_LLADDR")), n["state"])
                for n in ipr.get_neighbours(ifindex=idx)
            }
            return {"exists": True, "mac": _mac(ipr, idx), "addresses": addrs,
                    "routes": routes, "neighbours": neigh}

    try:
        return {"host": host, "container": run_in_netns(netns, container)}
    except FileNotFoundError as exc:
        raise NetnsGone(f"network namespace {netns} does not exist") from exc
