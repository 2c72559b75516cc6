"""CNI conformance, run through the libcni-like harness (`pybgp.testing.cni`).

For every spec version the test knows, against each plugin set: when every
plugin of the conflist claims the version (asked with VERSION), the sequence
the reference plugins' own tests run — STATUS (≥ 1.1.0), ADD, a ping from the
pod to its node, CHECK (≥ 0.4.0), GC keeping the attachment (≥ 1.1.0), DEL,
DEL again, and DEL of a container never added — with the pod's interface and
the node's veth checked before ADD, after ADD and after DEL. When a plugin
does not claim the version, ADD must fail with code 1 (incompatible version).

Plugin sets: (a) Debian's ptp + host-local (proves the harness), also chained
with portmap; (b) pybgp-cni + pybgp-ipam with etcd, without and with the node
daemon, and chained with portmap. Everything runs in namespaces of the test's
topology; the "host" of every plugin call is the node namespace.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pybgp.testing.cni import (
    Attachment,
    CNIError,
    NetworkConfigList,
    Runtime,
    addresses,
    at_least,
    debian_plugins,
    make_cni_path,
)

VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
VENV_BIN = Path(sys.executable).parent
NODE = "node1"
NODE_IP = "198.18.0.11/24"
POOL = "198.19.0.0/16"
PORT_MAPPING = [{"hostPort": 18080, "containerPort": 80, "protocol": "tcp"}]
# Debian's portmap 1.1.1 fails CHECK on an IPv4-only attachment, looking for an IPv6
# chain it never created (containernetworking/plugins#819, fixed after 1.1.1).
PORTMAP_CHECK_BUG = "could not check ipv6 dnat"


@pytest.fixture
def cni_bin(tmp_path: Path) -> Path:
    plugins: dict[str, str | Path] = dict(debian_plugins())
    for name in ("pybgp-cni", "pybgp-ipam"):
        plugins[name] = VENV_BIN / name
    missing = [n for n in ("ptp", "host-local", "portmap", "pybgp-cni", "pybgp-ipam")
               if n not in plugins or not Path(plugins[n]).exists()]
    if missing:
        pytest.fail(f"CNI plugins missing: {missing} (containernetworking-plugins, pip -e .)",
                    pytrace=False)
    return make_cni_path(tmp_path / "bin", plugins)


@dataclass
class Env:
    topology: Any
    node: Any
    runtime: Runtime
    tmp: Path


@pytest.fixture
def env(topology, cni_bin: Path, tmp_path: Path) -> Env:
    node = topology.add_node(NODE, NODE_IP)
    rt = Runtime([cni_bin], host_netns=node.ns, timeout=60,
                 cache_dir=tmp_path / "cache")
    return Env(topology, node, rt, tmp_path)


# ----------------------------------------------------------------- plugin sets
def ptp_plugins(tmp: Path) -> list[dict[str, Any]]:
    return [{"type": "ptp", "ipMasq": False, "mtu": 1500,
             "ipam": {"type": "host-local", "dataDir": str(tmp / "host-local"),
                      "ranges": [[{"subnet": "198.19.1.0/24"}]],
                      "routes": [{"dst": "0.0.0.0/0"}]}}]


def pybgp_plugins(etcd, tmp: Path, socket: str | None) -> list[dict[str, Any]]:
    return [{"type": "pybgp-cni", "etcd_endpoints": etcd.unix_endpoint, "nodename": NODE,
             "log_level": "debug",
             # without a daemon: a socket path nobody listens on (never the default one)
             "daemon_socket": socket or str(tmp / "no-daemon" / "cni.sock"),
             "ipam": {"type": "pybgp-ipam"}}]


def portmap_plugin() -> dict[str, Any]:
    return {"type": "portmap", "snat": False, "capabilities": {"portMappings": True}}


def seed_etcd(etcd) -> None:
    from pybgp.datastore.etcdv3 import EtcdClient, EtcdConfig
    from pybgp.datastore.resources import ResourceStore
    from pybgp.model import parse_resource

    store = ResourceStore(EtcdClient(EtcdConfig(endpoints=[etcd.endpoint])))
    store.create(parse_resource({"apiVersion": "projectcalico.org/v3", "kind": "IPPool",
                                 "metadata": {"name": "pool1"},
                                 "spec": {"cidr": POOL, "blockSize": 26}}))
    store.create(parse_resource({"apiVersion": "projectcalico.org/v3", "kind": "Node",
                                 "metadata": {"name": NODE},
                                 "spec": {"bgp": {"ipv4Address": NODE_IP}}}))


@pytest.fixture
def daemon(env: Env, etcd) -> Iterator[str]:
    """`pybgp cni-daemon` in the node namespace; yields its socket path."""
    sock = str(env.tmp / "daemon" / "cni.sock")
    log = open(env.tmp / "daemon.log", "wb")  # noqa: SIM115 - closed below
    proc = env.topology.popen(env.node, str(VENV_BIN / "pybgp"), "cni-daemon",
                              "--socket", sock, stdout=log, stderr=subprocess.STDOUT)
    try:
        end = time.monotonic() + 20
        while not os.path.exists(sock):
            if proc.poll() is not None or time.monotonic() > end:
                log.flush()
                text = (env.tmp / "daemon.log").read_text(errors="replace")[-2000:]
                pytest.fail(f"pybgp cni-daemon did not come up (rc={proc.poll()}): {text}",
                            pytrace=False)
            time.sleep(0.05)
        yield sock
    finally:
        log.close()


# ----------------------------------------------------------------- the sequence
def links(topology, ns) -> set[str]:
    out = topology.ip(ns, "-o", "link", "show").stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line}


def claimed(runtime: Runtime, types: list[str]) -> set[str]:
    sets = [set(runtime.supported_versions(t)) for t in types]
    return set.intersection(*sets)


def check_tolerating(rt: Runtime, net, att, caps, known_bug: str | None) -> None:
    try:
        rt.check(net, att, caps)
    except CNIError as exc:
        if not (known_bug and exc.plugin == "portmap" and known_bug in exc.msg):
            raise


def run_sequence(e: Env, plugins: list[dict[str, Any]], version: str, tag: str, *,
                 after_add=None, after_del=None) -> dict[str, Any] | None:
    """The reference plugins' test sequence for one version; returns the ADD result."""
    rt, topo = e.runtime, e.topology
    net = NetworkConfigList.build(f"net-{tag}", version, plugins)
    types = [p["type"] for p in plugins] + [p["ipam"]["type"] for p in plugins if "ipam" in p]
    pod_ns = topo.add_namespace(f"pod-{tag}")
    cid = f"ctr-{tag}-{version.replace('.', '')}"
    args = {"IgnoreUnknown": "1", "K8S_POD_NAMESPACE": "default", "K8S_POD_NAME": f"pod-{tag}",
            "K8S_POD_INFRA_CONTAINER_ID": cid}
    att = Attachment(cid, f"/var/run/netns/{pod_ns}", "eth0", args)
    caps = {"portMappings": PORT_MAPPING}

    if version not in claimed(rt, types):
        with pytest.raises(CNIError) as info:
            rt.add(net, att, caps)
        assert info.value.code == 1, f"{version}: want code 1 (incompatible), got {info.value}"
        assert "eth0" not in links(topo, pod_ns)
        return None

    rt.status(net)  # no-op below 1.1.0
    assert "eth0" not in links(topo, pod_ns), "pod has eth0 before ADD"
    node_before = links(topo, e.node)

    result = rt.add(net, att, caps)
    assert result.get("cniVersion") == version, result
    ips = addresses(result)
    assert ips and all(ip.startswith("198.19.") for ip in ips), result
    assert "eth0" in links(topo, pod_ns), "pod has no eth0 after ADD"
    host_veths = links(topo, e.node) - node_before
    assert host_veths, "no host-side interface appeared in the node namespace"
    sandbox = [i for i in result.get("interfaces") or [] if i.get("sandbox")]
    assert [i["name"] for i in sandbox] == ["eth0"], result
    addr = topo.ip(pod_ns, "-o", "addr", "show", "dev", "eth0").stdout
    assert ips[0] + "/" in addr, addr
    assert topo.wait_ping(pod_ns, e.node.addr, within=5), f"pod {ips[0]} cannot ping its node"
    if after_add:
        after_add(result)

    known_bug = PORTMAP_CHECK_BUG if "portmap" in types else None
    if at_least(version, "0.4.0"):
        check_tolerating(rt, net, att, caps, known_bug)
    if at_least(version, "1.1.0"):
        rt.gc(net, [att])  # the attachment is valid: GC must keep it working
        assert topo.ping(pod_ns, e.node.addr), "GC broke a valid attachment"
        check_tolerating(rt, net, att, caps, known_bug)

    rt.delete(net, att, caps)
    assert "eth0" not in links(topo, pod_ns), "pod still has eth0 after DEL"
    left = host_veths & links(topo, e.node)
    assert not left, f"host interfaces left after DEL: {left}"
    assert rt.cached_result(net.name, att) is None
    rt.delete(net, att, caps)  # DEL again
    never = Attachment(cid + "-never", att.netns, "eth0", {**args, "K8S_POD_NAME": "never"})
    rt.delete(net, never, caps)  # a container never added
    if after_del:
        after_del(result)
    return result


# ----------------------------------------------------------------- (a) reference plugins
@pytest.mark.parametrize("version", VERSIONS)
def test_reference_ptp_host_local(env: Env, version: str):
    run_sequence(env, ptp_plugins(env.tmp), version, "ptp")
    if version == "1.1.0":  # what the harness knows about ptp, said out loud
        assert "1.1.0" not in env.runtime.supported_versions("ptp")
    else:
        timings = env.runtime.timings("ADD", "ptp")
        assert timings and all(t > 0 for t in timings)


@pytest.mark.parametrize("version", VERSIONS)
def test_reference_ptp_portmap(env: Env, version: str):
    def has_dnat(_result):
        nat = env.topology.exec(env.node, "iptables-save", "-t", "nat").stdout
        assert "18080" in nat and "CNI-HOSTPORT-DNAT" in nat, nat

    def no_dnat(_result):
        nat = env.topology.exec(env.node, "iptables-save", "-t", "nat").stdout
        assert "--dport 18080" not in nat, nat

    run_sequence(env, [*ptp_plugins(env.tmp), portmap_plugin()], version, "ptppm",
                 after_add=has_dnat, after_del=no_dnat)


def test_harness_reports_plugin_errors(env: Env):
    """A bad config: the harness surfaces the plugin's CNI error code and message."""
    net = NetworkConfigList.build("bad", "1.0.0", [{"type": "ptp", "ipam": {}}])
    pod = env.topology.add_namespace("pod-bad")
    with pytest.raises(CNIError) as info:
        env.runtime.add(net, Attachment("ctr-bad", f"/var/run/netns/{pod}"))
    assert info.value.code is not None and info.value.msg
    with pytest.raises(CNIError, match="failed to find plugin"):
        env.runtime.add(NetworkConfigList.build("x", "1.0.0", [{"type": "nope"}]),
                        Attachment("ctr-x", f"/var/run/netns/{pod}"))


# ----------------------------------------------------------------- (b) pybgp
def _pybgp_checks(etcd, version: str):
    from pybgp.datastore.etcdv3 import EtcdClient, EtcdConfig
    from pybgp.datastore.resources import ResourceStore
    from pybgp.ipam import check

    kv = EtcdClient(EtcdConfig(endpoints=[etcd.endpoint]))

    def weps():
        return ResourceStore(kv).list("WorkloadEndpoint")

    def after_add(result):
        ws = [w for w in weps() if w.spec.container_id.startswith("ctr-")]
        assert len(ws) == 1, f"want one WorkloadEndpoint, got {[w.name for w in ws]}"
        assert ws[0].spec.node == NODE
        assert ws[0].spec.addresses == addresses(result)

    def after_del(_result):
        assert weps() == [], "WorkloadEndpoint left after DEL"
        problems = check(kv, [])
        assert problems == [], f"IPAM not clean after DEL ({version}): {problems}"

    return after_add, after_del


@pytest.mark.parametrize("version", VERSIONS)
def test_pybgp_without_daemon(env: Env, etcd, version: str):
    seed_etcd(etcd)
    after_add, after_del = _pybgp_checks(etcd, version)
    run_sequence(env, pybgp_plugins(etcd, env.tmp, None), version, "pyb",
                 after_add=after_add, after_del=after_del)


@pytest.mark.parametrize("version", VERSIONS)
def test_pybgp_with_daemon(env: Env, etcd, daemon: str, version: str):
    seed_etcd(etcd)
    after_add, after_del = _pybgp_checks(etcd, version)
    result = run_sequence(env, pybgp_plugins(etcd, env.tmp, daemon), version, "pybd",
                          after_add=after_add, after_del=after_del)
    if result is not None:  # the daemon, not the plugin process, did the work
        log = (env.tmp / "daemon.log").read_text(errors="replace")
        assert f"ADD ctr-pybd-{version.replace('.', '')}" in log, log[-2000:]


@pytest.mark.parametrize("version", ["0.4.0", "1.0.0"])
def test_pybgp_chained_portmap(env: Env, etcd, daemon: str, version: str):
    seed_etcd(etcd)
    after_add, after_del = _pybgp_checks(etcd, version)

    def add_checks(result):
        after_add(result)
        nat = env.topology.exec(env.node, "iptables-save", "-t", "nat").stdout
        assert "18080" in nat, nat

    def del_checks(result):
        after_del(result)
        nat = env.topology.exec(env.node, "iptables-save", "-t", "nat").stdout
        assert "--dport 18080" not in nat, nat

    run_sequence(env, [*pybgp_plugins(etcd, env.tmp, daemon), portmap_plugin()], version,
                 "pybpm", after_add=add_checks, after_del=del_checks)


def test_cached_results_are_files(env: Env):
    """The cache is libcni's layout: <cache>/results/<net>-<cid>-<ifname>, gone after DEL."""
    net = NetworkConfigList.build("cachenet", "1.0.0", ptp_plugins(env.tmp))
    pod = env.topology.add_namespace("pod-cache")
    att = Attachment("ctr-cache", f"/var/run/netns/{pod}")
    env.runtime.add(net, att)
    path = env.tmp / "cache" / "results" / "cachenet-ctr-cache-eth0"
    entry = json.loads(path.read_text())
    assert entry["result"]["cniVersion"] == "1.0.0" and entry["containerId"] == "ctr-cache"
    env.runtime.delete(net, att)
    assert not path.exists()


def test_pybgp_gc_removes_only_stale_attachments(env: Env, etcd, daemon: str):
    """GC (1.1.0): the runtime DELs what it no longer knows; the valid pod keeps working."""
    from pybgp.datastore.etcdv3 import EtcdClient, EtcdConfig
    from pybgp.datastore.resources import ResourceStore

    seed_etcd(etcd)
    net = NetworkConfigList.build("gcnet", "1.1.0", pybgp_plugins(etcd, env.tmp, daemon))
    atts = []
    for name in ("keep", "stale"):
        ns = env.topology.add_namespace(f"pod-{name}")
        atts.append(Attachment(f"ctr-{name}", f"/var/run/netns/{ns}", "eth0",
                               {"K8S_POD_NAMESPACE": "default", "K8S_POD_NAME": name}))
        env.runtime.add(net, atts[-1])
    keep, stale = atts
    env.runtime.gc(net, [keep])
    assert "eth0" not in links(env.topology, env.topology.ns_name("pod-stale"))
    assert env.runtime.cached_result("gcnet", stale) is None
    assert env.topology.ping(env.topology.ns_name("pod-keep"), env.node.addr)
    kv = EtcdClient(EtcdConfig(endpoints=[etcd.endpoint]))
    assert [w.spec.container_id for w in ResourceStore(kv).list("WorkloadEndpoint")] == [
        "ctr-keep"]
    env.runtime.delete(net, keep)
