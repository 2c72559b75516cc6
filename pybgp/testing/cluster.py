"""A virtual pybgp cluster: nodes in namespaces, etcd, speakers, pods.

Built on ``Topology`` (namespaces, clean-up by identity) and a real etcd:
each node gets a Calico ``Node`` resource, a ``pybgp speaker`` process inside
its namespace (etcd over the unix socket, its sockets and state in a private
directory), and pods whose addresses come from IPAM exactly as the CNI plugin
takes them, so the speaker sees confirmed block affinities.

Used by the system tests and by ``pybgp lab``. Every wait here is bounded.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pybgp.datastore.etcdv3 import EtcdClient, EtcdConfig
from pybgp.datastore.resources import ResourceStore
from pybgp.ipam import IPAM, Pool
from pybgp.model import parse_resource
from pybgp.testing.etcd import EtcdServer
from pybgp.testing.netns import Node, Pod, Topology


def resource(kind: str, name: str, spec: dict[str, Any], **metadata: Any) -> Any:
    return parse_resource({"apiVersion": "projectcalico.org/v3", "kind": kind,
                           "metadata": {"name": name, **metadata}, "spec": spec})


def block_of(ip: object, size: int = 26) -> str:
    """The IPAM block (a /26 by default) an address belongs to."""
    return str(ipaddress.ip_network(f"{ip}/{size}", strict=False))


def protocol_row(table: str, name: str) -> str:
    """The ``show protocols`` row of protocol ``name`` ('' if absent)."""
    for line in table.splitlines():
        if line.split(maxsplit=1)[:1] == [name]:
            return line
    return ""


def wait_until(pred: Callable[[], Any], timeout: float, what: str, step: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(step)


@dataclass
class ClusterReflector:
    """A ``pybgp reflector`` in its own namespace on the fabric."""

    name: str
    node: Node
    dir: Path
    config: dict[str, Any]
    proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return self.node.addr

    @property
    def bird_socket(self) -> str:
        return str(self.dir / "reflector.ctl")

    @property
    def json_socket(self) -> str:
        return str(self.dir / "reflector.sock")

    @property
    def config_file(self) -> Path:
        return self.dir / "reflector.yaml"


@dataclass
class ClusterNode:
    name: str
    node: Node
    dir: Path
    speaker: subprocess.Popen[bytes] | None = None

    @property
    def bird_socket(self) -> str:
        return str(self.dir / "bird.ctl")

    @property
    def json_socket(self) -> str:
        return str(self.dir / "speaker.sock")


class Cluster:
    def __init__(self, topology: Topology, etcd: EtcdServer, *,
                 pool: str = "198.19.0.0/16", workdir: str | None = None):
        self.topo = topology
        self.etcd = etcd
        self.kv = EtcdClient(EtcdConfig(endpoints=[etcd.endpoint]))
        self.store = ResourceStore(self.kv)
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="pybgp-cluster-"))
        self.secrets_dir = self.workdir / "secrets"
        self.nodes: dict[str, ClusterNode] = {}
        self.reflectors: dict[str, ClusterReflector] = {}
        self.pools = [Pool(pool)]
        self.store.apply([resource("IPPool", "default-pool", {"cidr": pool})])
        topology.add_fabric()

    def add_node(self, name: str, ip: str, **bgp: Any) -> ClusterNode:
        node = self.topo.add_node(name, ip)
        self.store.apply([resource("Node", name, {"bgp": {"ipv4Address": ip, **bgp}})])
        d = self.workdir / name
        d.mkdir(parents=True, exist_ok=True)
        cn = ClusterNode(name, node, d)
        self.nodes[name] = cn
        return cn

    def set_secret(self, secret: str, key: str, value: str) -> None:
        path = self.secrets_dir / secret
        path.mkdir(parents=True, exist_ok=True)
        (path / key).write_text(value)

    def start_speaker(self, name: str, *, startup_hold: float = 10.0) -> subprocess.Popen[bytes]:
        cn = self.nodes[name]
        log = open(cn.dir / "speaker.log", "ab")  # noqa: SIM115 - the child owns it
        try:
            cn.speaker = self.topo.popen(
                cn.node, sys.executable, "-m", "pybgp.cli.main", "speaker", "--node", name,
                "--etcd-endpoints", self.etcd.unix_endpoint,
                "--bird-socket", cn.bird_socket, "--json-socket", cn.json_socket,
                "--state-dir", str(cn.dir / "state"), "--secrets-dir", str(self.secrets_dir),
                "--startup-hold", str(startup_hold),
                stdout=log, stderr=subprocess.STDOUT,
            )
        finally:
            log.close()
        return cn.speaker

    def kill_speaker(self, name: str) -> None:
        """SIGKILL, as a crash would: nothing gets to clean up."""
        proc = self.nodes[name].speaker
        assert proc is not None
        proc.kill()
        proc.wait(10)

    def start_reflector(self, name: str, ip: str | None = None, *,
                        cluster_id: str | None = None, as_number: int = 64512,
                        clients: list[dict[str, Any]] | None = None,
                        peers: list[dict[str, Any]] | None = None, bgp_peer: bool = True,
                        **options: Any) -> subprocess.Popen[bytes]:
        """Start ``pybgp reflector`` ``name`` in a namespace of its own on the
        fabric (made on the first call, with ``ip``; later calls restart it with
        the same configuration unless given a new one).

        By default its clients are every Calico Node (``nodeSelector: all()``,
        read from this cluster's etcd), and a global BGPPeer ``rr-<name>`` makes
        every node peer with it. ``options`` are further fields of the YAML
        file (``startupHold``, ``gracefulRestart``...). Returns the process.
        """
        rr = self.reflectors.get(name)
        if rr is None:
            if ip is None:
                raise ValueError(f"reflector {name} is new: give its address")
            node = self.topo.add_node(name, ip, kind="router")
            d = self.workdir / name
            d.mkdir(parents=True, exist_ok=True)
            rr = self.reflectors[name] = ClusterReflector(name, node, d, {})
            if bgp_peer:
                self.store.apply([resource("BGPPeer", f"rr-{name}",
                                           {"peerIP": node.addr, "asNumber": as_number})])
        if clients is not None or not rr.config:
            rr.config = {"routerId": rr.node.addr, "asNumber": as_number,
                         "clusterId": cluster_id or rr.node.addr,
                         "clients": clients if clients is not None
                         else [{"nodeSelector": "all()"}],
                         **({"peers": peers} if peers else {}), **options}
            import yaml

            rr.config_file.write_text(yaml.safe_dump(rr.config))
        log = open(rr.dir / "reflector.log", "ab")  # noqa: SIM115 - the child owns it
        try:
            proc = rr.proc = self.topo.popen(
                rr.node, sys.executable, "-m", "pybgp.cli.main", "reflector",
                "--config", str(rr.config_file), "--bird-socket", rr.bird_socket,
                "--json-socket", rr.json_socket, "--etcd-endpoints", self.etcd.unix_endpoint,
                stdout=log, stderr=subprocess.STDOUT)
        finally:
            log.close()
        sock = Path(rr.bird_socket)
        wait_until(lambda: sock.exists() or proc.poll() is not None, 30,
                   f"reflector {name}'s control socket")
        if proc.poll() is not None:
            raise RuntimeError(f"reflector {name} exited {proc.returncode}: "
                               + (rr.dir / "reflector.log").read_text()[-2000:])
        return proc

    def kill_reflector(self, name: str) -> None:
        """SIGKILL, as a crash (or a VM lost) would: its sessions just drop."""
        rr = self.reflectors[name]
        assert rr.proc is not None
        rr.proc.kill()
        rr.proc.wait(10)
        with contextlib.suppress(FileNotFoundError):
            Path(rr.bird_socket).unlink()

    def reflector_cl(self, name: str, *command: str) -> str:
        """``birdcl -s`` on reflector ``name``'s control socket."""
        out = subprocess.run(["birdcl", "-s", self.reflectors[name].bird_socket, *command],
                             capture_output=True, text=True, timeout=10)
        return out.stdout

    def add_pod(self, node: str, pod: str, *, ip: str | None = None,
                ipam_node: str | None = None, cni: bool = False, **ipam_args: Any) -> Pod:
        """A pod wired like the CNI plugin does, its address taken from IPAM.

        With ``cni=True`` the real ``pybgp-cni`` executable does it, run in the
        node's namespace the way a container runtime runs it.
        """
        if cni:
            return self._cni_pod(node, pod)
        ipam = IPAM(self.kv, ipam_node or node, **ipam_args)
        handle = f"k8s-pod-network.{node}-{pod}"
        if ip is None:
            ip = str(ipam.auto_assign(handle, 1, {"node": node, "pod": pod}, self.pools)[0].ip)
        else:
            ipam.assign_ip(ip, handle, {"node": node, "pod": pod}, self.pools)
        return self.topo.add_pod(self.nodes[node].node, pod, ip)

    def _cni_pod(self, node: str, pod: str) -> Pod:
        cn = self.nodes[node]
        ns = self.topo.add_namespace(f"{node}-{pod}")
        config = {"cniVersion": "1.0.0", "name": "k8s-pod-network", "type": "pybgp-cni",
                  "etcd_endpoints": self.etcd.unix_endpoint, "nodename": node,
                  "ipam": {"type": "pybgp-ipam"}}
        plugin = Path(sys.executable).with_name("pybgp-cni")
        out = self.topo.exec(
            cn.node, "env", "CNI_COMMAND=ADD", f"CNI_CONTAINERID={node}-{pod}",
            f"CNI_NETNS=/var/run/netns/{ns}", "CNI_IFNAME=eth0",
            f"CNI_PATH={plugin.parent}",
            f"CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={pod}",
            "PYBGP_CNI_SOCKET=/nonexistent/cni.sock",  # no daemon: run in-process
            str(plugin), input=json.dumps(config))
        result = json.loads(out.stdout)
        address = result["ips"][0]["address"].split("/")[0]
        host_iface = result["interfaces"][0]["name"]
        return Pod(pod, ns, cn.node, ipaddress.ip_address(address), host_iface)

    def routes(self, name: str) -> str:
        return self.topo.exec(self.nodes[name].node, "ip", "route", "show").stdout

    def wait_route(self, name: str, prefix: str, timeout: float = 30.0, *,
                   present: bool = True) -> None:
        def check() -> bool:
            have = any(line.split()[0] == prefix for line in self.routes(name).splitlines())
            return have == present

        wait_until(check, timeout, f"route {prefix} {'on' if present else 'gone from'} {name}")

    def birdcl(self, name: str, *command: str) -> str:
        out = subprocess.run(["birdcl", "-s", self.nodes[name].bird_socket, *command],
                             capture_output=True, text=True, timeout=10)
        return out.stdout

    def wait_established(self, name: str, count: int, timeout: float = 30.0) -> None:
        def check() -> bool:
            return self.birdcl(name, "show", "protocols").count("Established") >= count

        wait_until(check, timeout, f"{count} established sessions on {name}")

    def close(self) -> None:
        self.kv.close()

