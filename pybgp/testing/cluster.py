"""A virtual pybgp cluster: nodes in namespaces, etcd, speakers, pods.

Built on ``Topology`` (namespaces, clean-up by identity) and a real etcd:
each node gets a Calico ``Node`` resource, a ``pybgp speaker`` process inside
its namespace (etcd over the unix socket, its sockets and state in a private
directory), and pods whose addresses come from IPAM exactly as the CNI plugin
takes them, so the speaker sees confirmed block affinities.

Pods made with ``cni=True`` come from the real ``pybgp-cni``, run as a
container runtime runs it: the node's conflist (written by ``pybgp
install-cni``, the operator's command, from the one template) through
``pybgp.testing.cni.Runtime`` — every plugin in order with ``prevResult``,
the CNI_* environment, inside the node's namespace; ``del_pod`` is the
runtime's DEL.

The daemons, ``pybgp speaker`` and ``pybgp agent`` in every node and
``pybgp reflector`` in a namespace of its own, start one way
(``start_speaker`` / ``start_agent`` / ``start_reflector``, all through
``_start``): inside their namespace, log in its directory (``speaker.log``,
``agent.log``, ``reflector.log``), recorded by PID and start time, and, with
``notify`` (always for a reflector), a ``$NOTIFY_SOCKET`` of their own as
under systemd's ``Type=notify``, so ``wait_ready(name, daemon)`` waits for
the daemon's own ``READY=1``.

Used by the system tests and by ``pybgp lab``. Every wait here is bounded.
With a ``Journal`` the cluster's part (nodes, pods, reflectors, every
daemon by PID and start time) is written under "cluster" after every change
(a namespace is in the topology's part before it exists), and
``Cluster.restore`` attaches to it from another process.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pybgp.datastore.etcdv3 import EtcdClient, EtcdConfig
from pybgp.datastore.resources import ResourceStore
from pybgp.ipam import IPAM, Pool
from pybgp.model import parse_resource
from pybgp.testing.cni import Attachment, NetworkConfigList, Runtime
from pybgp.testing.etcd import EtcdServer
from pybgp.testing.journal import Journal
from pybgp.testing.netns import Node, Pod, Topology
from pybgp.testing.procs import ProcessRecord

DEBIAN_CNI = "/usr/lib/cni"  # portmap, the conflist's second plugin
POD_IFNAME = "eth0"


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


def last_words(log: Path, lines: int = 3) -> str:
    """The last lines of a daemon's log, for an error saying why it exited."""
    try:
        tail = [x for x in log.read_text(errors="replace").splitlines() if x.strip()][-lines:]
    except OSError:
        return ""
    text = " | ".join(x.strip() for x in tail)
    return f": {text[-500:]}" if text else ""


DAEMONS = ("speaker", "agent")  # what runs in every node, each with its log and notify socket
REFLECTOR = "reflector"  # what runs in a reflector's namespace


@dataclass
class Host:
    """A namespace of the cluster on the fabric and the pybgp daemons started in it."""

    name: str
    node: Node
    dir: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)  # started here
    records: dict[str, ProcessRecord] = field(default_factory=dict)  # by identity, journaled

    def log_path(self, daemon: str) -> Path:
        return self.dir / f"{daemon}.log"

    def notify_socket(self, daemon: str) -> str:
        return str(self.dir / f"{daemon}.notify")


@dataclass
class ClusterReflector(Host):
    """A ``pybgp reflector`` in its own namespace on the fabric."""

    config: dict[str, Any] = field(default_factory=dict)  # its YAML file, as written

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        return self.procs.get(REFLECTOR)

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
class ClusterNode(Host):
    @property
    def speaker(self) -> subprocess.Popen[bytes] | None:
        return self.procs.get("speaker")

    @property
    def agent(self) -> subprocess.Popen[bytes] | None:
        return self.procs.get("agent")

    @property
    def conf_dir(self) -> Path:
        return self.dir / "net.d"

    @property
    def bird_socket(self) -> str:
        return str(self.dir / "bird.ctl")

    @property
    def json_socket(self) -> str:
        return str(self.dir / "speaker.sock")


class Cluster:
    def __init__(self, topology: Topology, etcd: EtcdServer, *,
                 pool: str = "198.19.0.0/16", workdir: str | None = None,
                 journal: Journal | None = None, create: bool = True):
        """A cluster on ``topology`` and ``etcd``; ``create=False`` attaches to what
        exists (see ``restore``) without writing the pool or making the fabric."""
        self.topo = topology
        self.etcd = etcd
        self.kv = EtcdClient(EtcdConfig(endpoints=[etcd.endpoint]))
        self.store = ResourceStore(self.kv)
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="pybgp-cluster-"))
        self.secrets_dir = self.workdir / "secrets"
        self.nodes: dict[str, ClusterNode] = {}
        self.pool = pool
        self.reflectors: dict[str, ClusterReflector] = {}
        self.pools = [Pool(pool)]
        self.pods: dict[str, Pod] = {}  # pods made through the CNI plugin, by name
        self.journal = journal
        self._notify: dict[tuple[str, str], socket.socket] = {}  # (node, daemon) → socket
        if create:
            self.store.apply([resource("IPPool", "default-pool", {"cidr": pool})])
            topology.add_fabric()
            self._save()

    # ----- persistence -------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        return {
            "workdir": str(self.workdir), "pool": self.pool,
            "nodes": {n: {"dir": str(cn.dir),
                          **{d: cn.records[d].to_dict() if d in cn.records else None
                             for d in DAEMONS}}
                      for n, cn in self.nodes.items()},
            "pods": {n: p.to_dict() for n, p in self.pods.items()},
            "reflectors": {n: {"dir": str(rr.dir), "config": rr.config,
                               REFLECTOR: rr.records[REFLECTOR].to_dict()
                               if REFLECTOR in rr.records else None}
                           for n, rr in self.reflectors.items()},
        }

    @classmethod
    def restore(cls, snap: Mapping[str, Any], topology: Topology, etcd: EtcdServer,
                journal: Journal | None = None) -> Cluster:
        """The cluster another process built (its snapshot), on its restored topology."""
        c = cls(topology, etcd, pool=snap["pool"], workdir=snap["workdir"], journal=journal,
                create=False)
        for name, d in snap.get("nodes", {}).items():
            c.nodes[name] = ClusterNode(name, topology.nodes[name], Path(d["dir"]), records={
                daemon: ProcessRecord.from_dict(d[daemon]) for daemon in DAEMONS
                if d.get(daemon)})
        c.pods = {n: Pod.from_dict(p, topology.nodes) for n, p in snap.get("pods", {}).items()}
        for name, d in snap.get("reflectors", {}).items():
            c.reflectors[name] = ClusterReflector(
                name, topology.nodes[name], Path(d["dir"]), config=dict(d.get("config") or {}),
                records={REFLECTOR: ProcessRecord.from_dict(d[REFLECTOR])}
                if d.get(REFLECTOR) else {})
        return c

    def _save(self) -> None:
        if self.journal is not None:
            self.journal.update("cluster", self.snapshot())

    # ----- nodes and speakers ------------------------------------------------
    def add_node(self, name: str, ip: str, **bgp: Any) -> ClusterNode:
        node = self.topo.add_node(name, ip)
        self.store.apply([resource("Node", name, {"bgp": {"ipv4Address": ip, **bgp}})])
        d = self.workdir / name
        d.mkdir(parents=True, exist_ok=True)
        cn = ClusterNode(name, node, d)
        self.nodes[name] = cn
        self._save()
        return cn

    def set_secret(self, secret: str, key: str, value: str) -> None:
        path = self.secrets_dir / secret
        path.mkdir(parents=True, exist_ok=True)
        (path / key).write_text(value)

    def start_speaker(self, name: str, *, startup_hold: float = 10.0,
                      notify: bool = False) -> subprocess.Popen[bytes]:
        """``pybgp speaker`` in the node's namespace (its sockets and state in the
        node's directory). With ``notify``: see ``wait_ready``."""
        cn = self.nodes[name]
        return self._start(self.nodes[name], "speaker", [
            "--node", name, "--etcd-endpoints", self.etcd.unix_endpoint,
            "--bird-socket", cn.bird_socket, "--json-socket", cn.json_socket,
            "--state-dir", str(cn.dir / "state"), "--secrets-dir", str(self.secrets_dir),
            "--startup-hold", str(startup_hold)], notify)

    def start_agent(self, name: str, *, log_level: str = "info",
                    health_port: int | None = None, metrics_port: int | None = None,
                    notify: bool = False) -> subprocess.Popen[bytes]:
        """``pybgp agent`` inside the node's namespace (health on its own
        127.0.0.1:9099 and metrics on :9091 unless given). With ``notify``:
        see ``wait_ready``."""
        argv = ["--node", name, "--etcd-endpoints", self.etcd.unix_endpoint,
                "--log-level", log_level]
        if health_port is not None:
            argv += ["--health-port", str(health_port)]
        if metrics_port is not None:
            argv += ["--metrics-port", str(metrics_port)]
        return self._start(self.nodes[name], "agent", argv, notify)

    def _start(self, host: Host, daemon: str, argv: list[str],
               notify: bool) -> subprocess.Popen[bytes]:
        """``pybgp DAEMON ARGV…`` in the host's namespace, its output appended to
        ``DAEMON.log`` in the host's directory; recorded by identity (in the
        topology's records and, journaled, in the host's). With ``notify`` it
        gets a ``$NOTIFY_SOCKET`` of its own, as under systemd's ``Type=notify``."""
        env = None
        if notify:
            env = dict(os.environ, NOTIFY_SOCKET=self._listen_notify(host, daemon))
        log = open(host.log_path(daemon), "ab")  # noqa: SIM115 - the child owns it
        try:
            proc = self.topo.popen(host.node, sys.executable, "-m", "pybgp.cli.main", daemon,
                                   *argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        finally:
            log.close()
        host.procs[daemon] = proc
        rec = next((r for r in reversed(self.topo.records) if r.pid == proc.pid), None)
        if rec is not None:
            host.records[daemon] = rec
        self._save()
        return proc

    def _listen_notify(self, host: Host, daemon: str) -> str:
        old = self._notify.pop((host.name, daemon), None)
        if old is not None:
            old.close()
        path = host.notify_socket(daemon)
        Path(path).unlink(missing_ok=True)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.bind(path)
        self._notify[(host.name, daemon)] = s
        return path

    def _host(self, name: str, daemon: str) -> Host:
        return self.reflectors[name] if daemon == REFLECTOR else self.nodes[name]

    def wait_ready(self, name: str, timeout: float = 30.0, daemon: str = "speaker") -> str:
        """Wait for the daemon's ``READY=1`` (the speaker: in sync and serving; the
        agent: in sync and the dataplane programmed; a reflector, ``name`` being
        the reflector's: listening, serving and its peers known); returns its
        STATUS text. Raises if it exits or stays silent for ``timeout``."""
        cn, s = self._host(name, daemon), self._notify[(name, daemon)]
        proc = cn.procs.get(daemon)
        end = time.monotonic() + timeout
        try:
            while True:
                left = end - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{daemon} on {name} not ready after {timeout:g}s "
                                       f"(log: {cn.log_path(daemon)})")
                if proc is not None and proc.poll() is not None:
                    raise RuntimeError(f"{daemon} on {name} exited with {proc.returncode}"
                                       f"{last_words(cn.log_path(daemon))} "
                                       f"(log: {cn.log_path(daemon)})")
                s.settimeout(min(left, 0.25))
                try:
                    msg = s.recv(4096).decode(errors="replace")
                except TimeoutError:
                    continue
                fields = dict(line.split("=", 1) for line in msg.splitlines() if "=" in line)
                if fields.get("READY") == "1":
                    return fields.get("STATUS", "")
        finally:
            s.close()
            self._notify.pop((name, daemon), None)
            Path(cn.notify_socket(daemon)).unlink(missing_ok=True)

    def exited(self, hosts: Collection[str] | None = None) -> list[str]:
        """The daemons started here (or recorded by the process that did) that
        no longer run — in ``hosts`` (node and reflector names) or anywhere —
        each with its log's last lines: what a wait for them to do something
        should stop for at once."""
        out = []
        for host in [*self.nodes.values(), *self.reflectors.values()]:
            if hosts is not None and host.name not in hosts:
                continue
            for daemon, rec in host.records.items():
                proc = host.procs.get(daemon)
                if proc is not None and proc.pid == rec.pid:
                    if proc.poll() is None:
                        continue
                    how = f" with {proc.returncode}"
                elif rec.alive():
                    continue
                else:
                    how = ""
                log = host.log_path(daemon)
                out.append(f"{daemon} on {host.name} exited{how}{last_words(log)} (log: {log})")
        return out

    def terminate(self, name: str, daemon: str, timeout: float = 30.0) -> tuple[str, int]:
        """Stop a daemon as ``systemctl stop`` does (SIGTERM) and return what it
        then said on its ``$NOTIFY_SOCKET`` (``STOPPING=1``; "" if nothing) and
        its exit status. It must have been started with ``notify``."""
        host = self._host(name, daemon)
        proc = host.procs[daemon]
        path = host.notify_socket(daemon)  # where its $NOTIFY_SOCKET still points
        Path(path).unlink(missing_ok=True)
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.bind(path)
            s.settimeout(timeout)
            proc.terminate()
            try:
                said = s.recv(4096).decode(errors="replace")
            except TimeoutError:
                said = ""
        return said, proc.wait(timeout)

    def kill_speaker(self, name: str) -> None:
        """SIGKILL, as a crash would: nothing gets to clean up."""
        self._kill(name, "speaker")

    def kill_agent(self, name: str) -> None:
        """SIGKILL, as a crash would: nothing gets to clean up."""
        self._kill(name, "agent")

    def _kill(self, name: str, daemon: str) -> None:
        proc = self._host(name, daemon).procs.get(daemon)
        assert proc is not None, f"no {daemon} started on {name}"
        proc.kill()
        proc.wait(10)

    def agent_log(self, name: str) -> str:
        path = self.nodes[name].log_path("agent")
        return path.read_text(errors="replace") if path.exists() else ""

    def namespace_profile(self, namespace: str, labels: dict[str, str] | None = None) -> None:
        """The profile ``kns.<namespace>`` as Calico's kube-controllers write it
        for a Kubernetes namespace: allow all in and out, and the namespace's
        labels applied to its endpoints with the ``pcns.`` prefix."""
        apply = {"pcns.projectcalico.org/name": namespace}
        apply.update({f"pcns.{k}": v for k, v in (labels or {}).items()})
        self.store.apply([resource("Profile", f"kns.{namespace}", {
            "ingress": [{"action": "Allow"}], "egress": [{"action": "Allow"}],
            "labelsToApply": apply})])

    def endpoint_key(self, pod: Pod) -> str:
        """The etcd key of a CNI pod's WorkloadEndpoint."""
        from pybgp.model import KINDS, key_for, wep_name

        name = wep_name(pod.node.name, "k8s", pod.name, pod.iface)
        return key_for(KINDS["WorkloadEndpoint"], name, pod.k8s_namespace)

    def update_endpoint(self, pod: Pod, *, labels: dict[str, str] | None = None,
                        **spec: Any) -> None:
        """Change a CNI pod's WorkloadEndpoint: add ``labels``, set spec fields
        (JSON names, e.g. ``ipNATs=[...]``), as an orchestrator would."""
        item = self.kv.get(self.endpoint_key(pod))
        assert item is not None, f"no WorkloadEndpoint for {pod.name}"
        doc = json.loads(item.value)
        doc["metadata"].setdefault("labels", {}).update(labels or {})
        doc["spec"].update(spec)
        self.store.apply([parse_resource(doc)])

    def start_reflector(self, name: str, ip: str | None = None, *,
                        cluster_id: str | None = None, as_number: int = 64512,
                        clients: list[dict[str, Any]] | None = None,
                        peers: list[dict[str, Any]] | None = None, bgp_peer: bool = True,
                        wait: float | None = 30.0,
                        **options: Any) -> subprocess.Popen[bytes]:
        """Start ``pybgp reflector`` ``name`` in a namespace of its own on the
        fabric (made on the first call, with ``ip``; later calls restart it with
        the same configuration unless given a new one).

        By default its clients are every Calico Node (``nodeSelector: all()``,
        read from this cluster's etcd), and a global BGPPeer named after it
        makes every node peer with it. ``options`` are further fields of the
        YAML file (``startupHold``, ``gracefulRestart``...). It starts as the
        node daemons do (``_start``: log, record, ``$NOTIFY_SOCKET``); with
        ``wait`` (seconds) this returns once it said ``READY=1``, else call
        ``wait_ready(name, daemon="reflector")``. Returns the process.
        """
        rr = self.reflectors.get(name)
        if rr is None:
            if ip is None:
                raise ValueError(f"reflector {name} is new: give its address")
            node = self.topo.add_node(name, ip, kind="router")
            d = self.workdir / name
            d.mkdir(parents=True, exist_ok=True)
            rr = self.reflectors[name] = ClusterReflector(name, node, d)
            self._save()
            if bgp_peer:
                self.store.apply([resource("BGPPeer", name,
                                           {"peerIP": node.addr, "asNumber": as_number})])
        if clients is not None or not rr.config:
            rr.config = {"routerId": rr.node.addr, "asNumber": as_number,
                         "clusterId": cluster_id or rr.node.addr,
                         "clients": clients if clients is not None
                         else [{"nodeSelector": "all()"}],
                         **({"peers": peers} if peers else {}), **options}
            import yaml

            rr.config_file.write_text(yaml.safe_dump(rr.config))
        proc = self._start(rr, REFLECTOR, [
            "--config", str(rr.config_file), "--bird-socket", rr.bird_socket,
            "--json-socket", rr.json_socket, "--etcd-endpoints", self.etcd.unix_endpoint],
            notify=True)
        if wait is not None:
            self.wait_ready(name, wait, daemon=REFLECTOR)
        return proc

    def kill_reflector(self, name: str) -> None:
        """SIGKILL, as a crash (or a VM lost) would: its sessions just drop."""
        self._kill(name, REFLECTOR)
        with contextlib.suppress(FileNotFoundError):
            Path(self.reflectors[name].bird_socket).unlink()

    def reflector_cl(self, name: str, *command: str) -> str:
        """``birdcl -s`` on reflector ``name``'s control socket."""
        out = subprocess.run(["birdcl", "-s", self.reflectors[name].bird_socket, *command],
                             capture_output=True, text=True, timeout=10)
        return out.stdout

    def add_pod(self, node: str, pod: str, *, ip: str | None = None,
                ipam_node: str | None = None, cni: bool = False, namespace: str = "default",
                labels: Mapping[str, str] | None = None, **ipam_args: Any) -> Pod:
        """A pod wired like the CNI plugin does, its address taken from IPAM.

        With ``cni=True`` the real ``pybgp-cni`` does it, from the node's
        conflist, run in the node's namespace the way a container runtime runs
        it, in the Kubernetes ``namespace`` (the plugin makes its profile
        ``kns.<namespace>`` if missing; ``namespace_profile`` first gives the
        namespace labels of its own); ``labels``
        (the pod's) then go onto its WorkloadEndpoint, as an orchestrator puts
        them there.
        """
        if cni:
            return self._cni_pod(node, pod, namespace, labels)
        if labels:
            raise ValueError("labels need a WorkloadEndpoint: only with cni=True")
        ipam = IPAM(self.kv, ipam_node or node, **ipam_args)
        handle = f"k8s-pod-network.{node}-{pod}"
        if ip is None:
            ip = str(ipam.auto_assign(handle, 1, {"node": node, "pod": pod}, self.pools)[0].ip)
        else:
            ipam.assign_ip(ip, handle, {"node": node, "pod": pod}, self.pools)
        return self.topo.add_pod(self.nodes[node].node, pod, ip)

    # ----- pods through the CNI plugin, as a runtime runs it ---------------------
    @property
    def cni_bin(self) -> Path:
        return self.workdir / "cni" / "bin"

    def install_cni(self, name: str) -> Path:
        """``pybgp install-cni`` for node ``name`` (once): the launchers into the
        cluster's CNI bin dir, the node's conflist into its conf dir."""
        cn = self.nodes[name]
        path = cn.conf_dir / "10-pybgp.conflist"
        if path.exists():
            return path
        if not os.path.isfile(os.path.join(DEBIAN_CNI, "portmap")):
            raise FileNotFoundError(f"{DEBIAN_CNI}/portmap missing: install the Debian "
                                    "package containernetworking-plugins")
        cli = Path(sys.executable).with_name("pybgp")
        # on the node, as an operator runs it (nothing of pybgp in the root namespace)
        self.topo.exec(cn.node, str(cli), "install-cni", "--bin-dir", str(self.cni_bin),
                       "--conf-dir", str(cn.conf_dir), "--nodename", name,
                       "--etcd-endpoints", self.etcd.unix_endpoint,
                       "--daemon-socket", str(cn.dir / "cni.sock"), timeout=60)
        return path

    def runtime(self, name: str) -> tuple[Runtime, NetworkConfigList]:
        """The container runtime of node ``name`` and the network it attaches pods to."""
        cn = self.nodes[name]
        net = NetworkConfigList.load(self.install_cni(name))
        rt = Runtime([self.cni_bin, DEBIAN_CNI], host_netns=cn.node.ns,
                     cache_dir=cn.dir / "cni-cache")
        return rt, net

    @staticmethod
    def attachment(node: str, pod: str, ns: str, k8s_namespace: str = "default") -> Attachment:
        """What a runtime hands the plugins for pod ``pod`` on ``node`` in netns ``ns``."""
        cid = f"{node}-{pod}"
        return Attachment(cid, f"/var/run/netns/{ns}", POD_IFNAME, {
            "IgnoreUnknown": "1", "K8S_POD_NAMESPACE": k8s_namespace,
            "K8S_POD_NAME": pod, "K8S_POD_INFRA_CONTAINER_ID": cid})

    def _cni_pod(self, node: str, pod: str, namespace: str = "default",
                 labels: Mapping[str, str] | None = None) -> Pod:
        if pod in self.pods:
            raise ValueError(f"pod {pod!r} exists (on {self.pods[pod].node.name})")
        cn = self.nodes[node]
        rt, net = self.runtime(node)
        ns = self.topo.add_namespace(f"{node}-{pod}")
        att = self.attachment(node, pod, ns, namespace)
        try:
            result = rt.add(net, att)
            address = result["ips"][0]["address"].split("/")[0]
            host_iface = result["interfaces"][0]["name"]
            p = Pod(pod, ns, cn.node, ipaddress.ip_address(address), host_iface,
                    k8s_namespace=namespace)
            if labels:
                self.update_endpoint(p, labels=dict(labels))
        except BaseException:
            with contextlib.suppress(Exception):
                rt.delete(net, att)  # what a runtime does after a failed ADD
            self.topo.remove_namespace(ns)
            raise
        self.pods[pod] = p
        self._save()
        return p

    def del_pod(self, pod: str) -> None:
        """The runtime's DEL through every plugin, then the pod's namespace goes."""
        p = self.pods[pod]
        rt, net = self.runtime(p.node.name)
        rt.delete(net, self.attachment(p.node.name, p.name, p.ns, p.k8s_namespace))
        self.topo.remove_namespace(p.ns)
        del self.pods[pod]
        self._save()

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
        for s in self._notify.values():
            s.close()
        self._notify.clear()
        self.kv.close()

