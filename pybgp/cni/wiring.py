"""Wiring a pod into the node's routing, Calico style (netlink via pyroute2).

Container side: ``<ifname>`` with the pod address as /32,
``169.254.1.1 dev <ifname> scope link``, ``default via 169.254.1.1`` and a
PERMANENT neighbour entry for 169.254.1.1 with the host veth's MAC.
Host side (the current network namespace): ``cali…`` up, forwarding=1,
proxy_arp=1, route_localnet=1, neigh proxy_delay=0, and the route
``<ip>/32 dev cali… scope link proto 80`` (protocol 80 marks workload routes,
as Felix does, so the agent recognises them as its own).

Container-side work runs in a short-lived thread that ``setns()``es into the
pod's namespace, opened read-only by path: a missing namespace is an error,
never created. The thread ends after its work, so no thread is ever left in
the wrong namespace. Every function here is undoable by ``unwire`` (deleting
the host veth removes its peer).
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import ipaddress
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

GATEWAY = "169.254.1.1"
WORKLOAD_ROUTE_PROTO = 80
RTPROT_BOOT = 3
CLONE_NEWNET = 0x40000000
NUD_PERMANENT = 0x80

T = TypeVar("T")
_libc = ctypes.CDLL(None, use_errno=True)


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


def in_netns(path: str, fn: Callable[[], T]) -> T:
    """Run ``fn`` in a fresh thread inside the network namespace at ``path``."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError as exc:
        raise NetnsGone(f"network namespace {path} does not exist") from exc
    box: dict[str, Any] = {}

    def body() -> None:
        try:
            if _libc.setns(fd, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise WiringError(f"cannot enter network namespace {path}: {os.strerror(err)}")
            box["value"] = fn()
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc

    try:
        thread = threading.Thread(target=body, name="netns-worker")
        thread.start()
        thread.join()
    finally:
        os.close(fd)
    if "error" in box:
        raise box["error"]
    return box["value"]


def _sysctl(path: str, value: str) -> None:
    with open(path, "w") as fh:
        fh.write(value)


def _host_sysctls(ifname: str) -> None:
    base = f"/proc/sys/net/ipv4/conf/{ifname}"
    for name in ("forwarding", "proxy_arp", "route_localnet"):
        _sysctl(f"{base}/{name}", "1")
    _sysctl(f"/proc/sys/net/ipv4/neigh/{ifname}/proxy_delay", "0")


def _link_index(ipr: IPRoute, ifname: str) -> int | None:
    found = ipr.link_lookup(ifname=ifname)
    return found[0] if found else None


def _mac(ipr: IPRoute, index: int) -> str:
    return str(ipr.get_links(index)[0].get_attr("IFLA_ADDRESS"))


def wire(
    netns: str, ifname: str, host_ifname: str, addresses: Sequence[str], mtu: int = 1500
) -> Wired:
    """Create and configure the veth pair; on any failure nothing is left behind."""
    nets = [ipaddress.ip_interface(a) for a in addresses]
    try:
        ns_fd = os.open(netns, os.O_RDONLY)
    except FileNotFoundError as exc:
        raise NetnsGone(f"network namespace {netns} does not exist") from exc
    with IPRoute() as ipr:
        stale = _link_index(ipr, host_ifname)
        if stale is not None:  # left over from an earlier sandbox of the same pod
            ipr.link("del", index=stale)
        try:
            ipr.link("add", ifname=host_ifname, kind="veth", mtu=mtu,
                     peer={"ifname": ifname, "net_ns_fd": ns_fd, "mtu": mtu})
        except NetlinkError as exc:
            if exc.code == errno.EEXIST:
                raise WiringError(
                    f"interface {ifname} already exists in the container {netns}"
                ) from exc
            raise WiringError(f"cannot create veth {host_ifname}: {exc}") from exc
        finally:
            os.close(ns_fd)
        try:
            index = _link_index(ipr, host_ifname)
            assert index is not None
            host_mac = _mac(ipr, index)
            _host_sysctls(host_ifname)
            ipr.link("set", index=index, state="up")
            container_mac = in_netns(netns, lambda: _configure_container(ifname, nets, host_mac))
            for net in nets:
                ipr.route("replace", dst=f"{net.ip}/{net.max_prefixlen}", oif=index,
                          scope="link", proto=WORKLOAD_ROUTE_PROTO)
        except BaseException:
            unwire(host_ifname)
            raise
    return Wired(host_ifname, host_mac, ifname, container_mac)


def _configure_container(
    ifname: str, nets: Sequence[ipaddress.IPv4Interface | ipaddress.IPv6Interface], host_mac: str
) -> str:
    with IPRoute() as ipr:
        index = _link_index(ipr, ifname)
        if index is None:
            raise WiringError(f"veth peer {ifname} did not appear in the container")
        lo = _link_index(ipr, "lo")
        if lo is not None:
            ipr.link("set", index=lo, state="up")
        ipr.link("set", index=index, state="up")
        for net in nets:
            ipr.addr("add", index=index, address=str(net.ip), prefixlen=net.max_prefixlen)
        # proto boot, as `ip route add` and Calico's netlink calls write them
        ipr.route("add", dst=f"{GATEWAY}/32", oif=index, scope="link", proto=RTPROT_BOOT)
        ipr.route("add", dst="0.0.0.0/0", gateway=GATEWAY, oif=index, proto=RTPROT_BOOT)
        ipr.neigh("add", dst=GATEWAY, lladdr=host_mac, ifindex=index, state=NUD_PERMANENT)
        return _mac(ipr, index)


def unwire(host_ifname: str) -> bool:
    """Delete the host veth (and so its peer). True if it existed."""
    with IPRoute() as ipr:
        index = _link_index(ipr, host_ifname)
        if index is None:
            return False
        try:
            ipr.link("del", index=index)
        except NetlinkError as exc:
            if exc.code != errno.ENODEV:
                raise
            return False
        return True


def host_veths(prefix: str = "cali") -> list[str]:
    with IPRoute() as ipr:
        names = [str(link.get_attr("IFLA_IFNAME")) for link in ipr.get_links()]
    return [n for n in names if n.startswith(prefix)]


def inspect(netns: str, ifname: str, host_ifname: str) -> dict[str, Any]:
    """What is actually there, for CHECK: addresses, routes, neighbours on both sides."""
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

    return {"host": host, "container": in_netns(netns, container)}
