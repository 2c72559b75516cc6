"""pybgp-cni as a runtime runs it: the executable inside a node namespace, CNI_* in
the environment, the config on stdin, real etcd, pods in namespaces the test made.

Every test runs with and without the node's cni-daemon where that matters; the
plugin executables are the launchers `pybgp install-cni` writes.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pybgp.datastore.etcdv3 import EtcdClient, EtcdConfig
from pybgp.datastore.kv import Put
from pybgp.datastore.resources import ResourceStore
from pybgp.ipam import check as ipam_check
from pybgp.ipam.keys import CONFIG_KEY
from pybgp.ipam.records import IPAMConfig
from pybgp.model import parse_resource

VENV_BIN = Path(sys.executable).parent
NETWORK = "k8s-pod-network"
WEP_PREFIX = "/calico/resources/v3/projectcalico.org/workloadendpoints/"
DEBIAN_CNI = "/usr/lib/cni"


def ippool(name: str, cidr: str, block_size: int = 26, **spec: Any) -> Any:
    return parse_resource({"apiVersion": "projectcalico.org/v3", "kind": "IPPool",
                           "metadata": {"name": name},
                           "spec": {"cidr": cidr, "blockSize": block_size, **spec}})


class Cni:
    """Runs the plugin in a node namespace the way a container runtime would."""

    def __init__(self, topology: Any, etcd: Any, bindir: Path, sockdir: Path):
        self.topology = topology
        self.etcd = etcd
        self.bindir = bindir
        self.sockdir = sockdir
        self.kv = EtcdClient(EtcdConfig(endpoints=[etcd.endpoint]))
        self.store = ResourceStore(self.kv)
        self.daemons: dict[str, str] = {}  # node name -> socket

    def close(self) -> None:
        self.kv.close()

    # ----- set-up
    def pool(self, name: str = "default-pool", cidr: str = "198.19.0.0/16", **kw: Any) -> None:
        self.store.apply([ippool(name, cidr, **kw)])

    def ipam_config(self, **kw: Any) -> None:
        self.kv.txn([], [Put(CONFIG_KEY, IPAMConfig(**kw).encode())])

    def start_daemon(self, node: Any) -> str:
        sock = str(self.sockdir / f"{node.name}.sock")
        proc = self.topology.popen(node, str(VENV_BIN / "pybgp"), "cni-daemon", "--socket",
                                   sock, "--etcd-endpoints", self.etcd.unix_endpoint,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        end = time.monotonic() + 20
        while not os.path.exists(sock):
            if proc.poll() is not None:
                raise AssertionError(f"cni-daemon exited: {proc.stderr.read().decode()[-2000:]}")
            if time.monotonic() > end:
                raise AssertionError("cni-daemon did not create its socket within 20 s")
            time.sleep(0.05)
        self.daemons[node.name] = sock
        return sock

    def conf(self, node: Any, **extra: Any) -> dict[str, Any]:
        conf: dict[str, Any] = {
            "cniVersion": "1.0.0", "name": NETWORK, "type": "pybgp-cni",
            "etcd_endpoints": self.etcd.unix_endpoint, "nodename": node.name,
            "log_level": "debug", "ipam": {"type": "pybgp-ipam"},
            # never the machine's default socket: a daemon there would be someone else's
            "daemon_socket": self.daemons.get(node.name, str(self.sockdir / "none.sock")),
        }
        conf.update(extra)
        return conf

    def argv(self, command: str, container: str, netns: str = "", pod: str | None = None,
             k8s_ns: str = "default", ifname: str = "eth0", path: str = "",
             env: dict[str, str] | None = None, plugin: str = "pybgp-cni") -> list[str]:
        args = "IgnoreUnknown=1"
        if pod:
            args += f";K8S_POD_NAMESPACE={k8s_ns};K8S_POD_NAME={pod}"
        pairs = {"CNI_COMMAND": command, "CNI_CONTAINERID": container, "CNI_NETNS": netns,
                 "CNI_IFNAME": ifname, "CNI_ARGS": args,
                 "CNI_PATH": path or f"{self.bindir}:{DEBIAN_CNI}", **(env or {})}
        exe = plugin if plugin.startswith("/") else str(self.bindir / plugin)
        return ["env", *(f"{k}={v}" for k, v in pairs.items()), exe]

    def run(self, node: Any, command: str, container: str, netns: str = "",
            conf: dict[str, Any] | None = None, **kw: Any) -> tuple[int, Any, str]:
        proc = self.topology.exec(node, *self.argv(command, container, netns, **kw),
                                  input=json.dumps(conf or self.conf(node)), check=False,
                                  timeout=90)
        out = json.loads(proc.stdout) if proc.stdout.strip() else None
        return proc.returncode, out, proc.stderr

    def ok(self, node: Any, command: str, container: str, netns: str = "",
           conf: dict[str, Any] | None = None, **kw: Any) -> Any:
        rc, out, err = self.run(node, command, container, netns, conf, **kw)
        assert rc == 0, f"{command} {container} failed: {out}\n{err[-3000:]}"
        return out

    # ----- observing
    def handles(self) -> list[str]:
        kvs, _ = self.kv.list("/calico/ipam/v2/handle/")
        return [kv.key.rsplit("/", 1)[1] for kv in kvs]

    def weps(self) -> list[dict[str, Any]]:
        kvs, _ = self.kv.list(WEP_PREFIX)
        return [json.loads(kv.value) for kv in kvs]

    def endpoints(self) -> list[tuple[str, list[str], str]]:
        return [(w["spec"]["containerID"], w["spec"]["ipNetworks"], w["spec"]["node"])
                for w in self.weps()]

    def veths(self, node: Any) -> list[str]:
        out = self.topology.ip(node, "-o", "link", "show").stdout
        return sorted(line.split(":")[1].strip().split("@")[0] for line in out.splitlines()
                      if line.split(":")[1].strip().startswith("cali"))

    def ipam_problems(self) -> list[Any]:
        return ipam_check(self.kv, self.endpoints())


@pytest.fixture(scope="session")
def cni_bin() -> Iterator[Path]:
    """The launchers written by `pybgp install-cni` (what an operator installs)."""
    d = Path(tempfile.mkdtemp(prefix="pybgp-cni-bin-"))
    try:
        subprocess.run([str(VENV_BIN / "pybgp"), "install-cni", "--bin-dir", str(d)],
                       check=True, capture_output=True, text=True)
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def cni(topology: Any, etcd: Any, cni_bin: Path) -> Iterator[Cni]:
    sockdir = Path(tempfile.mkdtemp(prefix="pbcni-"))  # short: unix socket paths ≤ 107
    c = Cni(topology, etcd, cni_bin, sockdir)
    try:
        yield c
    finally:
        c.close()
        shutil.rmtree(sockdir, ignore_errors=True)


def ip_of(result: dict[str, Any]) -> str:
    return result["ips"][0]["address"].split("/")[0]


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize("daemon", [False, True], ids=["in-process", "daemon"])
def test_two_pods_ping_and_exact_wiring(cni: Cni, daemon: bool) -> None:
    topo = cni.topology
    node = topo.add_node("node1", "198.18.0.11/24")
    cni.pool()
    if daemon:
        cni.start_daemon(node)
    pods = {}
    for name in ("pa", "pb"):
        ns = topo.add_namespace(name)
        res = cni.ok(node, "ADD", f"ctr-{name}", f"/var/run/netns/{ns}", pod=f"web-{name}")
        pods[name] = (ns, res)
    (ns_a, res_a), (ns_b, res_b) = pods["pa"], pods["pb"]
    ip_a, ip_b = ip_of(res_a), ip_of(res_b)
    assert ip_a != ip_b
    assert topo.ping(ns_a, ip_b) and topo.ping(ns_b, ip_a)
    assert topo.ping(ns_a, "198.18.0.11") and topo.ping(ns_b, "198.18.0.11")

    # Result shape (1.0.0: no mtu in interfaces)
    host_if, ctr_if = res_a["interfaces"]
    assert host_if["name"].startswith("cali") and len(host_if["name"]) == 15
    assert ctr_if == {"name": "eth0", "mac": ctr_if["mac"], "sandbox": f"/var/run/netns/{ns_a}"}
    assert res_a["ips"] == [{"address": f"{ip_a}/32", "interface": 1}]
    assert res_a["cniVersion"] == "1.0.0"

    # Container side, exactly
    routes = topo.ip(ns_a, "-4", "route", "show").stdout.split("\n")
    assert sorted(r.strip() for r in routes if r.strip()) == [
        "169.254.1.1 dev eth0 scope link", "default via 169.254.1.1 dev eth0"]
    neigh = topo.ip(ns_a, "-4", "neigh", "show", "169.254.1.1").stdout.strip()
    assert neigh == f"169.254.1.1 dev eth0 lladdr {host_if['mac']} PERMANENT"
    addrs = topo.ip(ns_a, "-4", "-o", "addr", "show", "dev", "eth0").stdout
    assert f"inet {ip_a}/32 " in addrs
    # Host side
    host_routes = topo.ip(node, "-4", "route", "show", f"{ip_a}/32").stdout.strip()
    assert host_routes == f"{ip_a} dev {host_if['name']} proto 80 scope link"
    for key in ("forwarding", "proxy_arp"):
        val = topo.exec(node, "cat", f"/proc/sys/net/ipv4/conf/{host_if['name']}/{key}").stdout
        assert val.strip() == "1", key

    # WorkloadEndpoint
    weps = {w["spec"]["containerID"]: w for w in cni.weps()}
    w = weps["ctr-pa"]
    assert w["metadata"]["name"] == "node1-k8s-web--pa-eth0"
    assert w["metadata"]["namespace"] == "default"
    assert w["metadata"]["labels"] == {"projectcalico.org/namespace": "default",
                                       "projectcalico.org/orchestrator": "k8s"}
    assert (w["spec"]["orchestrator"], w["spec"]["node"], w["spec"]["pod"],
            w["spec"]["endpoint"], w["spec"]["ipNetworks"], w["spec"]["profiles"],
            w["spec"]["interfaceName"], w["spec"]["mac"]) == (
        "k8s", "node1", "web-pa", "eth0", [f"{ip_a}/32"], ["kns.default"], host_if["name"],
        ctr_if["mac"])
    assert cni.ipam_problems() == []
    # its profile, made by the plugin as kube-controllers would have it
    prof = cni.kv.get("/calico/resources/v3/projectcalico.org/profiles/kns.default")
    assert prof is not None
    assert json.loads(prof.value)["spec"]["labelsToApply"] == {
        "pcns.projectcalico.org/name": "default"}

    # CHECK passes, then fails once the pod's route is gone
    conf_a = cni.conf(node, prevResult=res_a)
    cni.ok(node, "CHECK", "ctr-pa", f"/var/run/netns/{ns_a}", conf=conf_a, pod="web-pa")
    topo.ip(ns_a, "route", "del", "default")
    rc, out, _ = cni.run(node, "CHECK", "ctr-pa", f"/var/run/netns/{ns_a}", conf=conf_a,
                         pod="web-pa")
    assert rc != 0 and out["code"] == 103 and "default route via 169.254.1.1" in out["msg"]

    # DEL both (twice each): nothing left
    for name, (ns, _res) in pods.items():
        for _ in range(2):
            cni.ok(node, "DEL", f"ctr-{name}", f"/var/run/netns/{ns}", pod=f"web-{name}")
    assert cni.veths(node) == [] and cni.weps() == [] and cni.handles() == []
    assert cni.ipam_problems() == []


def _add_many(cni: Cni, jobs: list[tuple[Any, str, str]]) -> list[str]:
    """Concurrent ADDs (bounded pool of 25); returns the addresses in job order."""
    def one(job: tuple[Any, str, str]) -> str:
        node, name, ns = job
        return ip_of(cni.ok(node, "ADD", f"ctr-{name}", f"/var/run/netns/{ns}", pod=name))

    with concurrent.futures.ThreadPoolExecutor(max_workers=25) as pool:
        return list(pool.map(one, jobs, timeout=300))


def _del_many(cni: Cni, jobs: list[tuple[Any, str, str]]) -> None:
    def one(job: tuple[Any, str, str]) -> None:
        node, name, ns = job
        cni.ok(node, "DEL", f"ctr-{name}", f"/var/run/netns/{ns}", pod=name)

    with concurrent.futures.ThreadPoolExecutor(max_workers=25) as pool:
        list(pool.map(one, jobs, timeout=300))


def test_fifty_concurrent_adds_on_one_node(cni: Cni) -> None:
    topo = cni.topology
    node = topo.add_node("node1", "198.18.0.11/24")
    cni.pool()
    cni.start_daemon(node)
    jobs = [(node, f"p{i:02d}", topo.add_namespace(f"p{i:02d}")) for i in range(50)]
    ips = _add_many(cni, jobs)
    assert len(set(ips)) == 50
    assert len(cni.veths(node)) == 50 and len(cni.weps()) == 50
    assert cni.ipam_problems() == []
    assert topo.ping(jobs[0][2], ips[49]) and topo.ping(jobs[49][2], ips[0])
    _del_many(cni, jobs)
    assert cni.veths(node) == [] and cni.weps() == [] and cni.handles() == []
    assert cni.ipam_problems() == []


def test_twenty_five_plus_twenty_five_on_two_nodes_sharing_a_pool(cni: Cni) -> None:
    topo = cni.topology
    nodes = [topo.add_node("node1", "198.18.0.11/24"), topo.add_node("node2", "198.18.0.12/24")]
    # /28 blocks: 25 pods need two blocks per node, so the nodes race for blocks too.
    cni.pool(cidr="198.19.0.0/24", block_size=28)
    cni.start_daemon(nodes[0])  # node2's plugin runs in-process: both paths race
    jobs = [(nodes[i % 2], f"p{i:02d}", topo.add_namespace(f"p{i:02d}")) for i in range(50)]
    ips = _add_many(cni, jobs)
    assert len(set(ips)) == 50
    assert cni.ipam_problems() == []
    by_node = {n.name: [ip for (nd, _, _), ip in zip(jobs, ips, strict=True) if nd is n]
               for n in nodes}
    assert sorted(len(v) for v in by_node.values()) == [25, 25]
    _del_many(cni, jobs)
    assert cni.weps() == [] and cni.handles() == [] and cni.ipam_problems() == []


def test_full_node_borrows_only_without_strict_affinity(cni: Cni) -> None:
    topo = cni.topology
    n1, n2 = topo.add_node("node1", "198.18.0.11/24"), topo.add_node("node2", "198.18.0.12/24")
    cni.pool(cidr="198.19.0.0/28", block_size=30)  # four blocks of four addresses
    cni.ipam_config(strict_affinity=True, auto_allocate_blocks=True, max_blocks_per_host=1)
    other = ip_of(cni.ok(n2, "ADD", "ctr-o", f"/var/run/netns/{topo.add_namespace('o')}",
                         pod="o"))
    mine = [ip_of(cni.ok(n1, "ADD", f"ctr-m{i}", f"/var/run/netns/{topo.add_namespace(f'm{i}')}",
                         pod=f"m{i}")) for i in range(4)]
    assert len(set(mine)) == 4 and other not in mine
    ns = topo.add_namespace("extra")
    rc, out, _ = cni.run(n1, "ADD", "ctr-x", f"/var/run/netns/{ns}", pod="x")
    assert rc != 0 and out["code"] == 100 and "strict affinity" in out["msg"]
    assert len(cni.veths(n1)) == 4 and "ctr-x" not in [e[0] for e in cni.endpoints()]
    assert "eth0" not in topo.ip(ns, "-o", "link", "show").stdout

    cni.ipam_config(strict_affinity=False, auto_allocate_blocks=True, max_blocks_per_host=1)
    res = cni.ok(n1, "ADD", "ctr-x", f"/var/run/netns/{ns}", pod="x")
    borrowed = ip_of(res)
    block_of_other = other.rsplit(".", 1)[0] + "." + str(int(other.rsplit(".", 1)[1]) // 4 * 4)
    assert int(borrowed.rsplit(".", 1)[1]) // 4 * 4 == int(block_of_other.rsplit(".", 1)[1])
    assert topo.ping(ns, "198.18.0.11")
    assert cni.ipam_problems() == []


def test_add_with_etcd_stopped_is_try_again_later_and_leaves_nothing(cni: Cni) -> None:
    topo = cni.topology
    node = topo.add_node("node1", "198.18.0.11/24")
    cni.pool()
    cni.ok(node, "STATUS", "", conf=cni.conf(node, cniVersion="1.1.0"))
    ns = topo.add_namespace("p1")
    cni.etcd.stop()
    try:
        rc, out, err = cni.run(node, "ADD", "ctr-1", f"/var/run/netns/{ns}", pod="p1")
        assert rc != 0 and out["code"] == 11 and "etcd" in out["msg"], (out, err)
        assert "Traceback" not in json.dumps(out)
        assert cni.veths(node) == []
        assert "eth0" not in topo.ip(ns, "-o", "link", "show").stdout
        rc, out, _ = cni.run(node, "STATUS", "", conf=cni.conf(node, cniVersion="1.1.0"))
        assert rc != 0 and out["code"] == 50 and "etcd" in out["msg"]
        rc, out, _ = cni.run(node, "DEL", "ctr-1", f"/var/run/netns/{ns}", pod="p1")
        assert rc != 0 and out["code"] == 11
    finally:
        cni.etcd.start()
    cni.ok(node, "DEL", "ctr-1", f"/var/run/netns/{ns}", pod="p1")
    cni.ok(node, "ADD", "ctr-1", f"/var/run/netns/{ns}", pod="p1")
    assert len(cni.veths(node)) == 1


def test_status_without_pool_cannot_add(cni: Cni) -> None:
    node = cni.topology.add_node("node1", "198.18.0.11/24")
    rc, out, _ = cni.run(node, "STATUS", "", conf=cni.conf(node, cniVersion="1.1.0"))
    assert rc != 0 and out["code"] == 50 and "IPPool" in out["msg"]


@pytest.mark.parametrize("step", ["ipam", "wire"])
@pytest.mark.parametrize("cleanup", ["DEL", "GC"])
def test_add_killed_midway_then_del_or_gc_leaks_nothing(cni: Cni, step: str,
                                                         cleanup: str) -> None:
    topo = cni.topology
    node = topo.add_node("node1", "198.18.0.11/24")
    cni.pool()
    keep_ns = topo.add_namespace("keep")
    kept = cni.ok(node, "ADD", "ctr-keep", f"/var/run/netns/{keep_ns}", pod="keep")
    ns = topo.add_namespace("victim")
    marker = cni.sockdir / "paused"
    argv = cni.argv("ADD", "ctr-v", f"/var/run/netns/{ns}", pod="victim",
                    env={"PYBGP_CNI_TEST_PAUSE": f"{step}:{marker}"})
    proc = topo.popen(node, *argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                      stderr=subprocess.PIPE)
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(cni.conf(node)).encode())
    proc.stdin.close()
    end = time.monotonic() + 30
    while not marker.exists():
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        assert time.monotonic() < end, "ADD never reached the pause point"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert len(cni.handles()) == 2  # the victim's address is allocated
    if step == "wire":
        assert len(cni.veths(node)) == 2

    if cleanup == "DEL":
        cni.ok(node, "DEL", "ctr-v", f"/var/run/netns/{ns}", pod="victim")
    else:
        conf = cni.conf(node, cniVersion="1.1.0")
        conf["cni.dev/valid-attachments"] = [{"containerID": "ctr-keep", "ifname": "eth0"}]
        cni.ok(node, "GC", "", conf=conf)
    assert cni.handles() == [f"{NETWORK}.ctr-keep"]
    assert cni.veths(node) == [kept["interfaces"][0]["name"]]
    assert [e[0] for e in cni.endpoints()] == ["ctr-keep"]
    assert "eth0" not in topo.ip(ns, "-o", "link", "show").stdout
    assert cni.ipam_problems() == []
    assert topo.ping(keep_ns, "198.18.0.11")


def test_del_is_idempotent_and_tolerant(cni: Cni) -> None:
    topo = cni.topology
    node = topo.add_node("node1", "198.18.0.11/24")
    cni.pool()
    # never added, no netns given
    cni.ok(node, "DEL", "ctr-never", "", pod="never")
    cni.ok(node, "DEL", "ctr-never", "/var/run/netns/does-not-exist", pod="never")
    assert not os.path.exists("/var/run/netns/does-not-exist")  # never created
    # netns removed before DEL
    ns = topo.add_namespace("gone")
    cni.ok(node, "ADD", "ctr-g", f"/var/run/netns/{ns}", pod="gone")
    subprocess.run(["ip", "netns", "delete", ns], check=True)
    cni.ok(node, "DEL", "ctr-g", f"/var/run/netns/{ns}", pod="gone")
    cni.ok(node, "DEL", "ctr-g", f"/var/run/netns/{ns}", pod="gone")
    assert cni.veths(node) == [] and cni.weps() == [] and cni.handles() == []


def test_del_of_old_sandbox_keeps_the_new_one(cni: Cni) -> None:
    topo = cni.topology
    node = topo.add_node("node1", "198.18.0.11/24")
    cni.pool()
    old_ns, new_ns = topo.add_namespace("old"), topo.add_namespace("new")
    cni.ok(node, "ADD", "ctr-old", f"/var/run/netns/{old_ns}", pod="web")
    subprocess.run(["ip", "netns", "delete", old_ns], check=True)  # sandbox died
    new = cni.ok(node, "ADD", "ctr-new", f"/var/run/netns/{new_ns}", pod="web")
    assert [e[0] for e in cni.endpoints()] == ["ctr-new"]  # stale endpoint replaced
    cni.ok(node, "DEL", "ctr-old", f"/var/run/netns/{old_ns}", pod="web")
    assert [e[0] for e in cni.endpoints()] == ["ctr-new"]
    assert cni.handles() == [f"{NETWORK}.ctr-new"]
    assert cni.veths(node) == [new["interfaces"][0]["name"]]
    assert topo.ping(new_ns, "198.18.0.11")


def test_failed_add_after_ipam_undoes_everything(cni: Cni) -> None:
    topo = cni.topology
    node = topo.add_node("node1", "198.18.0.11/24")
    cni.pool()
    ns = topo.add_namespace("busy")
    topo.ip(ns, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p")
    rc, out, _ = cni.run(node, "ADD", "ctr-b", f"/var/run/netns/{ns}", pod="busy")
    assert rc != 0 and out["code"] == 101 and "already exists" in out["msg"]
    assert cni.veths(node) == [] and cni.weps() == [] and cni.handles() == []
    assert cni.ipam_problems() == []


def test_annotations_through_args(cni: Cni) -> None:
    topo = cni.topology
    node = topo.add_node("node1", "198.18.0.11/24")
    cni.pool()
    cni.pool("second", "198.19.200.0/24")

    def notes(**kv: str) -> dict[str, Any]:
        return {"pybgp": {"annotations": {f"cni.projectcalico.org/{k}": v
                                          for k, v in kv.items()}}}

    ns = topo.add_namespace("fixed")
    res = cni.ok(node, "ADD", "ctr-f", f"/var/run/netns/{ns}", pod="fixed",
                 conf=cni.conf(node, args=notes(ipAddrs='["198.19.0.77"]')))
    assert ip_of(res) == "198.19.0.77"
    ns = topo.add_namespace("pooled")
    res = cni.ok(node, "ADD", "ctr-p", f"/var/run/netns/{ns}", pod="pooled",
                 conf=cni.conf(node, args=notes(ipv4pools='["second"]')))
    assert ip_of(res).startswith("198.19.200.")
    ns = topo.add_namespace("noipam")
    conf = cni.conf(node, args=notes(ipAddrsNoIpam='["198.19.100.9"]'))
    rc, out, _ = cni.run(node, "ADD", "ctr-n", f"/var/run/netns/{ns}", conf=conf, pod="noipam")
    assert rc != 0 and out["code"] == 7 and "ip_addrs_no_ipam" in out["msg"]
    conf["feature_control"] = {"ip_addrs_no_ipam": True}
    res = cni.ok(node, "ADD", "ctr-n", f"/var/run/netns/{ns}", conf=conf, pod="noipam")
    assert ip_of(res) == "198.19.100.9"
    assert f"{NETWORK}.ctr-n" not in cni.handles()
    assert topo.ping(ns, "198.18.0.11")
    cni.ok(node, "CHECK", "ctr-n", f"/var/run/netns/{ns}", pod="noipam",
           conf=dict(conf, prevResult=res))
    cni.ok(node, "DEL", "ctr-n", f"/var/run/netns/{ns}", conf=conf, pod="noipam")
    assert cni.veths(node) and "ctr-n" not in [e[0] for e in cni.endpoints()]


def test_host_local_ipam_from_cni_path(cni: Cni, tmp_path: Path) -> None:
    topo = cni.topology
    node = topo.add_node("node1", "198.18.0.11/24")
    data = tmp_path / "host-local"
    conf = cni.conf(node, ipam={"type": "host-local", "dataDir": str(data),
                                "ranges": [[{"subnet": "198.19.5.0/24"}]]})
    ns = topo.add_namespace("hl")
    res = cni.ok(node, "ADD", "ctr-h", f"/var/run/netns/{ns}", conf=conf, pod="hl",
                 path=DEBIAN_CNI)
    ip = ip_of(res)
    assert ip.startswith("198.19.5.") and res["ips"] == [{"address": f"{ip}/32", "interface": 1}]
    assert (data / NETWORK / ip).exists()
    assert topo.ping(ns, "198.18.0.11")
    cni.ok(node, "CHECK", "ctr-h", f"/var/run/netns/{ns}", conf=dict(conf, prevResult=res),
           pod="hl", path=DEBIAN_CNI)
    cni.ok(node, "DEL", "ctr-h", f"/var/run/netns/{ns}", conf=conf, pod="hl", path=DEBIAN_CNI)
    assert not (data / NETWORK / ip).exists()
    assert cni.veths(node) == [] and cni.weps() == []
    # a missing IPAM plugin is a clear config error, and leaves nothing behind
    rc, out, _ = cni.run(node, "ADD", "ctr-h", f"/var/run/netns/{ns}", pod="hl",
                         conf=cni.conf(node, ipam={"type": "no-such-ipam"}), path=DEBIAN_CNI)
    assert rc != 0 and out["code"] == 7 and "no-such-ipam" in out["msg"]


def test_chained_with_debian_portmap(cni: Cni) -> None:
    topo = cni.topology
    node = topo.add_node("node1", "198.18.0.11/24")
    cni.pool()
    ns = topo.add_namespace("web")
    netns = f"/var/run/netns/{ns}"
    mappings = [{"hostPort": 18080, "containerPort": 80, "protocol": "tcp"}]
    # what a runtime does with the conflist [pybgp-cni, portmap]
    first = cni.conf(node)
    res = cni.ok(node, "ADD", "ctr-w", netns, conf=first, pod="web")
    portmap = {"cniVersion": "1.0.0", "name": NETWORK, "type": "portmap",
               "capabilities": {"portMappings": True},
               "runtimeConfig": {"portMappings": mappings}, "prevResult": res}
    out = cni.ok(node, "ADD", "ctr-w", netns, conf=portmap, pod="web",
                 plugin=f"{DEBIAN_CNI}/portmap")
    assert ip_of(out) == ip_of(res)
    nat = topo.exec(node, "iptables-save", "-t", "nat").stdout
    assert "18080" in nat and ip_of(res) in nat
    portmap.pop("prevResult")
    cni.ok(node, "DEL", "ctr-w", netns, conf=portmap, pod="web", plugin=f"{DEBIAN_CNI}/portmap")
    cni.ok(node, "DEL", "ctr-w", netns, conf=first, pod="web")
    assert "18080" not in topo.exec(node, "iptables-save", "-t", "nat").stdout
    assert cni.veths(node) == [] and cni.weps() == [] and cni.handles() == []


def test_gc_keeps_valid_attachments(cni: Cni) -> None:
    topo = cni.topology
    node = topo.add_node("node1", "198.18.0.11/24")
    cni.pool()
    cni.start_daemon(node)
    nss = {n: topo.add_namespace(n) for n in ("a", "b", "c")}
    res = {n: cni.ok(node, "ADD", f"ctr-{n}", f"/var/run/netns/{ns}", pod=n)
           for n, ns in nss.items()}
    conf = cni.conf(node, cniVersion="1.1.0")
    conf["cni.dev/valid-attachments"] = [{"containerID": "ctr-a", "ifname": "eth0"},
                                         {"containerID": "ctr-c", "ifname": "eth0"}]
    cni.ok(node, "GC", "", conf=conf)
    assert sorted(cni.handles()) == [f"{NETWORK}.ctr-a", f"{NETWORK}.ctr-c"]
    assert sorted(e[0] for e in cni.endpoints()) == ["ctr-a", "ctr-c"]
    assert cni.veths(node) == sorted(res[n]["interfaces"][0]["name"] for n in ("a", "c"))
    assert topo.ping(nss["a"], ip_of(res["c"]))
    assert cni.ipam_problems() == []
