"""Network-namespace topologies for tests and the lab: fabric, nodes, pods, routers.

Owns: every namespace, link and process a `Topology` creates. Each is recorded
when (and only when) its creation succeeded, and `close()` removes exactly
those: processes (by PID / process group, plus any process still inside one of
our namespaces), then links, then namespaces. `close()` runs on exceptions,
is idempotent and tolerates things already gone.

Shape: one "fabric" namespace holding a Linux bridge (the shared L2 segment);
node and router namespaces hang off it by a veth (`eth0` in the node); pods
hang off a node the way Calico's CNI plugin wires them (`cali…` host veth with
proxy ARP, `eth0` with a /32, default via 169.254.1.1).

Must never: touch the root network namespace (veths are created directly in
their target namespaces), exec into a namespace it did not create, use or ping
an address outside the lab ranges (see `names`), or remove anything it did not
record. It is thin subprocess calls to `ip` (iproute2) on purpose: what an
operator would type.

Persistence (for `pybgp lab`, whose daemons outlive the process that built
them): with a `Journal`, the topology writes its snapshot under the key
"topology" before each namespace is created (as `pending`) and after each
change, processes as (PID, start time) records. `Topology.restore()` makes
a topology from that snapshot in another process; its `close()` stops the
recorded processes only if their start time still matches, then removes the
namespaces, the pending one included (its name carries this run's id).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pybgp.testing.journal import Journal
from pybgp.testing.names import (
    IPAddress,
    IPInterface,
    cali_name,
    check_lab_destination,
    check_lab_network,
    check_node_address,
    check_part,
    check_pod_address,
    check_prefix,
    check_run_id,
    fabric_port_name,
    make_run_id,
    ns_marker,
    ns_name,
)
from pybgp.testing.procs import ProcessRecord, wait_gone

NETNS_DIRS = (Path("/run/netns"), Path("/var/run/netns"))
BRIDGE = "br0"
NODE_IFACE = "eth0"
POD_IFACE = "eth0"
HOST_VETH_MAC = "ee:ee:ee:ee:ee:ee"  # what Calico gives every host-side veth
POD_GATEWAY4 = "169.254.1.1"
POD_GATEWAY6 = "fe80::ecee:eeff:feee:eeee"  # EUI-64 link-local of HOST_VETH_MAC
DEFAULT_TIMEOUT = 30.0
_GONE = ("Cannot find device", "No such file", "does not exist", "Cannot open network namespace")


class CommandError(subprocess.CalledProcessError):
    """A harness command failed; the message carries its stderr."""

    def __str__(self) -> str:
        err = (self.stderr or "").strip()[-2000:]
        return f"{' '.join(map(str, self.cmd))!r} exited {self.returncode}: {err}"


@dataclass(frozen=True)
class Node:
    """A node (or external router) namespace on the fabric."""

    name: str
    ns: str
    ip: IPInterface
    ip6: IPInterface | None = None
    iface: str = NODE_IFACE
    kind: str = "node"

    @property
    def addr(self) -> str:
        return str(self.ip.ip)

    @property
    def addr6(self) -> str | None:
        return str(self.ip6.ip) if self.ip6 else None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ns": self.ns, "ip": str(self.ip),
                "ip6": str(self.ip6) if self.ip6 else None, "iface": self.iface,
                "kind": self.kind}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Node:
        return cls(name=d["name"], ns=d["ns"], ip=check_node_address(d["ip"]),
                   ip6=check_node_address(d["ip6"]) if d.get("ip6") else None,
                   iface=d.get("iface", NODE_IFACE), kind=d.get("kind", "node"))


@dataclass(frozen=True)
class Pod:
    """A pod namespace wired to a node the way Calico's CNI plugin does."""

    name: str
    ns: str
    node: Node
    ip: IPAddress
    host_iface: str
    k8s_namespace: str = "default"
    ip6: IPAddress | None = None
    iface: str = POD_IFACE

    @property
    def addr(self) -> str:
        return str(self.ip)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ns": self.ns, "node": self.node.name, "ip": str(self.ip),
                "host_iface": self.host_iface, "k8s_namespace": self.k8s_namespace,
                "ip6": str(self.ip6) if self.ip6 else None, "iface": self.iface}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], nodes: Mapping[str, Node]) -> Pod:
        return cls(name=d["name"], ns=d["ns"], node=nodes[d["node"]],
                   ip=check_pod_address(d["ip"]), host_iface=d["host_iface"],
                   k8s_namespace=d.get("k8s_namespace", "default"),
                   ip6=check_pod_address(d["ip6"]) if d.get("ip6") else None,
                   iface=d.get("iface", POD_IFACE))


NsRef = str | Node | Pod


def _run(
    argv: Sequence[str],
    *,
    check: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        list(argv),
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=None if input is not None else subprocess.DEVNULL,
    )
    if check and proc.returncode != 0:
        raise CommandError(proc.returncode, list(argv), proc.stdout, proc.stderr)
    return proc


def _is_gone(err: str) -> bool:
    return any(marker in err for marker in _GONE)


def list_namespaces() -> list[str]:
    """Names of all named network namespaces (as `ip netns list` shows them)."""
    for d in NETNS_DIRS:
        if d.is_dir():
            return sorted(p.name for p in d.iterdir())
    return []


def leftover_namespaces(marker: str) -> list[str]:
    """Namespaces whose name starts with `marker` (a run's identity, e.g. `pbt1a2b-`)."""
    if len(marker) < 4:
        raise ValueError(f"marker {marker!r} too short to identify a run")
    return [n for n in list_namespaces() if n.startswith(marker)]


def _kill_namespace_pids(ns: str) -> None:
    proc = _run(["ip", "netns", "pids", ns], check=False, timeout=10)
    for word in proc.stdout.split():
        with contextlib.suppress(ValueError, ProcessLookupError):
            os.kill(int(word), signal.SIGKILL)


def _delete_namespace(ns: str) -> str | None:
    """Kill what runs inside and delete; returns an error text, None if done or gone."""
    _kill_namespace_pids(ns)
    proc = _run(["ip", "netns", "delete", ns], check=False, timeout=10)
    if proc.returncode != 0 and not _is_gone(proc.stderr):
        return f"ip netns delete {ns}: {proc.stderr.strip()}"
    return None


def remove_namespaces(names: Sequence[str]) -> list[str]:
    """Remove the given namespaces (and processes inside them); returns errors."""
    return [e for e in (_delete_namespace(n) for n in names) if e]



_A = TypeVar("_A", bound="IPInterface | IPAddress")


def _dual_stack(what: str, check: Callable[[str], _A], ip: str,
                ip6: str | None) -> tuple[_A, _A | None]:
    """``check`` an IPv4 ``ip`` and an optional IPv6 ``ip6``, each of the right family."""
    v4 = check(ip)
    if v4.version != 4:
        raise ValueError(f"{what} ip {ip} must be IPv4 (use ip6= for IPv6)")
    v6 = check(ip6) if ip6 else None
    if v6 is not None and v6.version != 6:
        raise ValueError(f"{what} ip6 {ip6} must be IPv6")
    return v4, v6

class Topology:
    """A set of namespaces built for one test (or one lab), removed by identity on close."""

    def __init__(self, prefix: str = "pbt", run_id: str | None = None, *,
                 journal: Journal | None = None) -> None:
        self.prefix = check_prefix(prefix)
        taken = {n[len(prefix) + 1 :].split("-", 1)[0] for n in list_namespaces()
                 if n.startswith(prefix + "-")}
        self.run_id = check_run_id(run_id) if run_id else make_run_id(taken)
        self.marker = ns_marker(self.prefix, self.run_id)
        self.namespaces: list[str] = []
        self.links: list[tuple[str, str]] = []
        self.procs: list[subprocess.Popen[Any]] = []
        self.records: list[ProcessRecord] = []  # every process started, by identity
        self.pending: str | None = None  # a namespace being created right now
        self.journal = journal
        self.nodes: dict[str, Node] = {}
        self.pods: dict[str, Pod] = {}
        self.fabric: str | None = None
        self._port_index = 0
        self._gateways: set[IPAddress] = set()
        self._closed = False
        self._save()

    # ----- persistence -------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Everything needed to find and remove what this topology made."""
        return {
            "prefix": self.prefix, "run_id": self.run_id, "namespaces": list(self.namespaces),
            "pending": self.pending, "links": [list(x) for x in self.links],
            "processes": [r.to_dict() for r in self.records], "fabric": self.fabric,
            "port_index": self._port_index, "gateways": sorted(str(g) for g in self._gateways),
            "nodes": {n: node.to_dict() for n, node in self.nodes.items()},
            "pods": {n: pod.to_dict() for n, pod in self.pods.items()},
            "closed": self._closed,
        }

    @classmethod
    def restore(cls, snap: Mapping[str, Any], journal: Journal | None = None) -> Topology:
        """The topology a snapshot describes (made by another process), to use or close."""
        topo = cls.__new__(cls)
        topo.prefix = check_prefix(snap["prefix"])
        topo.run_id = check_run_id(snap["run_id"])
        topo.marker = ns_marker(topo.prefix, topo.run_id)
        for ns in [*snap["namespaces"], *([snap["pending"]] if snap.get("pending") else [])]:
            if not ns.startswith(topo.marker):
                raise ValueError(f"namespace {ns!r} in the snapshot is not of run {topo.marker}")
        topo.namespaces = list(snap["namespaces"])
        topo.pending = snap.get("pending")
        topo.links = [(a, b) for a, b in snap.get("links", [])]
        topo.procs = []
        topo.records = [ProcessRecord.from_dict(r) for r in snap.get("processes", [])]
        topo.journal = journal
        topo.nodes = {n: Node.from_dict(d) for n, d in snap.get("nodes", {}).items()}
        topo.pods = {n: Pod.from_dict(d, topo.nodes) for n, d in snap.get("pods", {}).items()}
        topo.fabric = snap.get("fabric")
        topo._port_index = int(snap.get("port_index", 0))
        topo._gateways = {check_lab_destination(g) for g in snap.get("gateways", [])}
        topo._closed = bool(snap.get("closed", False))
        return topo

    def _save(self) -> None:
        if self.journal is not None:
            self.journal.update("topology", self.snapshot())

    # ----- context manager -------------------------------------------------
    def __enter__(self) -> Topology:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----- building --------------------------------------------------------
    def ns_name(self, name: str) -> str:
        return ns_name(self.prefix, self.run_id, name)

    def add_namespace(self, name: str) -> str:
        """Create `<prefix>-<rid>-<name>` with `lo` up; recorded only once it exists."""
        self._check_open()
        ns = self.ns_name(name)
        if ns in self.namespaces:
            raise ValueError(f"namespace {ns} already in this topology")
        self.pending = ns
        self._save()  # on disk before it exists: a crash right after leaves it findable
        try:
            _run(["ip", "netns", "add", ns])  # fails if it exists: never adopt another's
        except CommandError:
            self.pending = None
            self._save()
            raise
        self.namespaces.append(ns)
        self.pending = None
        self._save()
        self.ip(ns, "link", "set", "lo", "up")
        return ns

    def add_fabric(self) -> str:
        """The fabric namespace with bridge `br0` (created once; later calls return it)."""
        if self.fabric is None:
            ns = self.add_namespace("fabric")
            self.fabric = ns
            self.sysctl(ns, {"net.ipv4.ip_forward": 0, "net.ipv6.conf.all.forwarding": 0,
                             "net.ipv6.conf.default.accept_dad": 0})
            self.batch(ns, [f"link add {BRIDGE} type bridge", f"link set {BRIDGE} up"])
        return self.fabric

    def add_node(
        self,
        name: str,
        ip: str = "198.18.0.11/24",
        ip6: str | None = None,
        *,
        kind: str = "node",
        default_route: bool = True,
    ) -> Node:
        """A node namespace: `eth0` on the fabric bridge with `ip` (and `ip6`), forwarding on.

        With `default_route` the node gets `default via <gateway>` (see `gateway()`), as a
        real host has: Calico's proxy ARP for 169.254.1.1 only answers when the node has a
        route to it through another device.
        """
        check_part(name)
        if name == "fabric" or name in self.nodes or name in self.pods:
            raise ValueError(f"name {name!r} already used in this topology")
        iface, iface6 = _dual_stack("node", check_node_address, ip, ip6)
        for i in (iface, iface6):
            if i is not None and i.ip == self.gateway_address(i):
                raise ValueError(f"{i.ip} is the fabric gateway of {i.network}")
        fabric = self.add_fabric()
        ns = self.add_namespace(name)
        self._port_index += 1
        port = fabric_port_name(self.run_id, name, self._port_index)
        self.ip(fabric, "link", "add", port, "type", "veth", "peer", "name", NODE_IFACE,
                "netns", ns)
        self.links.append((fabric, port))
        self._save()
        self.ip(fabric, "link", "set", port, "master", BRIDGE, "up")
        self.sysctl(ns, {"net.ipv4.ip_forward": 1, "net.ipv6.conf.all.forwarding": 1,
                         f"net.ipv6.conf.{NODE_IFACE}.accept_dad": 0})
        cmds = [f"link set {NODE_IFACE} up", f"addr add {iface} dev {NODE_IFACE}"]
        if iface6 is not None:
            cmds.append(f"addr add {iface6} dev {NODE_IFACE} nodad")
        if default_route:
            cmds.append(f"route add default via {self.gateway(iface)}")
            if iface6 is not None:
                cmds.append(f"route add ::/0 via {self.gateway(iface6)}")
        self.batch(ns, cmds)
        node = Node(name=name, ns=ns, ip=iface, ip6=iface6, kind=kind)
        self.nodes[name] = node
        self._save()
        return node

    @staticmethod
    def gateway_address(iface: IPInterface) -> IPAddress:
        """The fabric's gateway on a node's subnet: its first host (198.18.0.1 for /24)."""
        net = iface.network
        if net.prefixlen >= net.max_prefixlen - 1:
            raise ValueError(f"{iface}: a node on the fabric needs a subnet (≤ /30, ≤ /126)")
        return net.network_address + 1

    def gateway(self, iface: IPInterface) -> str:
        """Put the gateway address for `iface`'s subnet on the fabric bridge (once); return it.

        The fabric does not forward (ip_forward stays 0) and has no routes out: it is a
        dead end that answers for itself, so a node's default route can never leave the lab.
        """
        addr = self.gateway_address(iface)
        fabric = self.add_fabric()
        if addr not in self._gateways:
            flag = " nodad" if addr.version == 6 else ""
            self.batch(fabric, [f"addr add {addr}/{iface.network.prefixlen} dev {BRIDGE}{flag}"])
            self._gateways.add(addr)
            self._save()
        return str(addr)

    def add_external_router(self, name: str, ip: str, ip6: str | None = None) -> Node:
        """A node-like namespace on the fabric for BIRD/GoBGP peers."""
        return self.add_node(name, ip, ip6, kind="router")

    def add_pod(
        self,
        node: str | Node,
        name: str,
        ip: str = "198.19.0.5",
        ip6: str | None = None,
        *,
        k8s_namespace: str = "default",
    ) -> Pod:
        """A pod namespace wired to `node` as Calico's CNI plugin does (see module doc)."""
        host = self.nodes[node] if isinstance(node, str) else node
        check_part(name)
        if name == "fabric" or name in self.nodes or name in self.pods:
            raise ValueError(f"name {name!r} already used in this topology")
        addr, addr6 = _dual_stack("pod", check_pod_address, ip, ip6)
        veth = cali_name(k8s_namespace, name)
        if (host.ns, veth) in self.links:
            raise ValueError(f"{veth} already exists on {host.name}")
        ns = self.add_namespace(name)
        self.ip(host.ns, "link", "add", veth, "type", "veth", "peer", "name", POD_IFACE,
                "netns", ns)
        self.links.append((host.ns, veth))
        settings: dict[str, int] = {
            f"net.ipv4.conf.{veth}.proxy_arp": 1,
            f"net.ipv4.conf.{veth}.forwarding": 1,
            f"net.ipv4.neigh.{veth}.proxy_delay": 0,
        }
        if addr6 is not None:
            settings |= {f"net.ipv6.conf.{veth}.accept_dad": 0,
                         f"net.ipv6.conf.{veth}.proxy_ndp": 1,
                         f"net.ipv6.conf.{veth}.forwarding": 1}
        self.sysctl(host.ns, settings)
        host_cmds = [f"link set {veth} address {HOST_VETH_MAC}", f"link set {veth} up",
                     f"route add {addr}/32 dev {veth}"]
        pod_cmds = [f"link set {POD_IFACE} up", f"addr add {addr}/32 dev {POD_IFACE}",
                    f"route add {POD_GATEWAY4} dev {POD_IFACE} scope link",
                    f"route add default via {POD_GATEWAY4} dev {POD_IFACE}"]
        if addr6 is not None:
            self.sysctl(ns, {f"net.ipv6.conf.{POD_IFACE}.accept_dad": 0})
            host_cmds.append(f"route add {addr6}/128 dev {veth}")
            pod_cmds += [f"addr add {addr6}/128 dev {POD_IFACE} nodad",
                         f"route add ::/0 via {POD_GATEWAY6} dev {POD_IFACE}"]
        self.batch(host.ns, host_cmds)
        self.batch(ns, pod_cmds)
        pod = Pod(name=name, ns=ns, node=host, ip=addr, host_iface=veth,
                  k8s_namespace=k8s_namespace, ip6=addr6)
        self.pods[name] = pod
        self._save()
        return pod

    def route(self, ns: NsRef, dst: str, via: str | None = None, dev: str | None = None) -> None:
        """`ip route replace DST [via VIA] [dev DEV]` in one of our namespaces; lab ranges only."""
        args = ["route", "replace", str(check_lab_network(dst))]
        if via is not None:
            args += ["via", str(check_lab_destination(via))]
        if dev is not None:
            args += ["dev", dev]
        self.ip(ns, *args)

    # ----- running things ---------------------------------------------------
    def remove_namespace(self, ns: NsRef) -> None:
        """Delete one of our namespaces now (what runs inside is killed), and forget it."""
        name = self._ns(ns)
        err = _delete_namespace(name)
        if err:
            raise RuntimeError(err)
        self.namespaces.remove(name)
        self.links = [(n, link) for n, link in self.links if n != name]
        self.pods = {k: p for k, p in self.pods.items() if p.ns != name}
        self._save()

    def _ns(self, ns: NsRef) -> str:
        name = ns if isinstance(ns, str) else ns.ns
        if name not in self.namespaces:
            raise ValueError(f"{name!r} is not a namespace of this topology")
        return name

    def ip(self, ns: NsRef, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """`ip -n NS ARGS…` in one of our namespaces."""
        return _run(["ip", "-n", self._ns(ns), *args], check=check)

    def batch(self, ns: NsRef, commands: Sequence[str]) -> None:
        """Several `ip` commands in one fork: `ip -n NS -batch -`."""
        _run(["ip", "-n", self._ns(ns), "-batch", "-"], input="\n".join(commands) + "\n")

    def sysctl(self, ns: NsRef, settings: Mapping[str, int | str]) -> None:
        """Set sysctls inside one of our namespaces (one fork)."""
        pairs = [f"{k}={v}" for k, v in settings.items()]
        self.exec(ns, "sysctl", "-q", "-w", *pairs)

    def exec(
        self,
        ns: NsRef,
        *argv: str,
        check: bool = True,
        timeout: float = DEFAULT_TIMEOUT,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run argv inside one of our namespaces (`ip netns exec`), text output captured."""
        self._check_open()
        return _run(["ip", "netns", "exec", self._ns(ns), *argv], check=check,
                    timeout=timeout, input=input)

    def popen(self, ns: NsRef, *argv: str, **kwargs: Any) -> subprocess.Popen[Any]:
        """Start argv inside one of our namespaces in its own process group; killed on close."""
        self._check_open()
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        kwargs["start_new_session"] = True
        proc = subprocess.Popen(["ip", "netns", "exec", self._ns(ns), *argv], **kwargs)
        self.procs.append(proc)
        # `ip netns exec` execs argv in place: the PID is the program's. If it
        # already died, the Popen still has it, and the namespace's PIDs go anyway.
        try:
            self.records.append(ProcessRecord.of(proc.pid, " ".join(argv)[:200]))
        except ProcessLookupError:
            pass
        self._save()
        return proc

    def ping(self, ns: NsRef, dst: str, count: int = 1, timeout: float = 1.0) -> bool:
        """True if `dst` (a lab address) answers from inside `ns`; bounded by count×timeout."""
        check_lab_destination(dst)
        if not 1 <= count <= 100:
            raise ValueError("count must be 1..100")
        deadline = max(1, int(count * timeout + 0.999))
        argv = ["ping", "-n", "-q", "-c", str(count), "-W", f"{timeout:g}", "-w", str(deadline),
                dst]
        try:
            proc = self.exec(ns, *argv, check=False, timeout=deadline + 5)
        except subprocess.TimeoutExpired:
            return False
        return proc.returncode == 0

    def ping_all(self, pairs: Sequence[tuple[NsRef, str]], *, timeout: float = 1.0,
                 parallel: int = 32, attempts: int = 2) -> list[bool]:
        """One ping per (namespace, destination), up to ``parallel`` at once; a pair
        that got no answer is tried again, ``attempts`` times in all. Bounded:
        at most attempts × ceil(len/parallel) × ~timeout seconds."""
        argvs = []
        for ns, dst in pairs:
            check_lab_destination(dst)
            argvs.append(["ip", "netns", "exec", self._ns(ns), "ping", "-n", "-q", "-c", "1",
                          "-W", f"{timeout:g}", dst])
        result = [False] * len(argvs)
        for _ in range(attempts):
            todo = [i for i, ok in enumerate(result) if not ok]
            for start in range(0, len(todo), parallel):
                batch = todo[start:start + parallel]
                procs = [(i, subprocess.Popen(argvs[i], stdin=subprocess.DEVNULL,
                                              stdout=subprocess.DEVNULL,
                                              stderr=subprocess.DEVNULL)) for i in batch]
                for i, proc in procs:
                    try:
                        result[i] = proc.wait(timeout=timeout + 5) == 0
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait(10)
            if all(result):
                break
        return result

    def wait_ping(self, ns: NsRef, dst: str, within: float = 5.0) -> bool:
        """Ping once a second until `dst` answers or `within` seconds pass."""
        end = time.monotonic() + within
        while True:
            if self.ping(ns, dst, count=1, timeout=1.0):
                return True
            if time.monotonic() >= end:
                return False

    # ----- clean-up ---------------------------------------------------------
    def close(self, term_timeout: float = 2.0) -> None:
        """Remove everything recorded: processes, links, namespaces. Idempotent."""
        errors: list[str] = []
        try:
            self._stop_procs(term_timeout)
        except Exception as exc:  # keep going: the namespaces must still go
            errors.append(f"stopping processes: {exc!r}")
        by_ns: dict[str, list[str]] = {}
        for ns, link in reversed(self.links):
            by_ns.setdefault(ns, []).append(link)
        for ns, links in by_ns.items():
            if ns in list_namespaces():
                _run(["ip", "-n", ns, "-force", "-batch", "-"], check=False,
                     input="".join(f"link del {link}\n" for link in links))
        self.links.clear()
        if self.pending is not None and self.pending in list_namespaces():
            self.namespaces.append(self.pending)  # ours by name (run id): made as we died
        for ns in reversed(self.namespaces):
            err = _delete_namespace(ns)
            if err:
                errors.append(err)
        self.pending = None
        self.namespaces.clear()
        self.nodes.clear()
        self.pods.clear()
        self.fabric = None
        self._gateways.clear()
        self._closed = True
        self._save()
        if errors:
            raise RuntimeError("topology clean-up failed: " + "; ".join(errors))

    def _stop_procs(self, term_timeout: float) -> None:
        live = [p for p in self.procs if p.poll() is None]  # never signal a reaped PID
        for p in live:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p.pid, signal.SIGTERM)
        end = time.monotonic() + term_timeout
        for p in live:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=max(0.0, end - time.monotonic()))
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(p.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(timeout=10)
        # Processes another process started (a restored topology): by identity only.
        mine = {p.pid for p in self.procs}
        others = [r for r in self.records if r.pid not in mine and r.alive()]
        for r in others:
            r.signal(signal.SIGTERM)
        if not wait_gone(others, term_timeout):
            for r in others:
                r.signal(signal.SIGKILL)
            wait_gone(others, 10.0)
        self.procs.clear()
        self.records.clear()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("topology is closed")
