"""The speaker in a real cluster: three nodes in namespaces, full iBGP mesh,
pods on every node, real packets — and a crash of one speaker mid-ping."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pybgp.testing.cluster import Cluster, wait_until


def block_of(ip: str) -> str:
    return str(ipaddress.ip_network(f"{ip}/26", strict=False))


@pytest.fixture
def cluster(etcd, topology, tmp_path):
    c = Cluster(topology, etcd, workdir=str(tmp_path))
    yield c
    c.close()


@pytest.fixture
def mesh(cluster):
    """Three nodes, one pod each, speakers running and converged."""
    for i, name in enumerate(("node-a", "node-b", "node-c")):
        cluster.add_node(name, f"198.18.0.{11 + i}/24")
    # pods made by the real CNI plugin: IPAM, veth, WorkloadEndpoint, then the speaker
    pods = {name: cluster.add_pod(name, f"pod-{name[-1]}", cni=True) for name in cluster.nodes}
    for name in cluster.nodes:
        cluster.start_speaker(name)
    for name in cluster.nodes:
        cluster.wait_established(name, 2)
    for name in cluster.nodes:
        for other, pod in pods.items():
            if other != name:
                cluster.wait_route(name, block_of(pod.ip))
    return cluster, pods


def test_mesh_blocks_blackholes_and_pod_traffic(mesh):
    cluster, pods = mesh
    topo = cluster.topo
    for name, pod in pods.items():
        own = block_of(pod.ip)
        routes = cluster.routes(name)
        # our block is a blackhole aggregate; the others are learned, as BIRD would install them
        assert f"blackhole {own} proto bird" in routes
        for other, opod in pods.items():
            if other != name:
                assert f"{block_of(opod.ip)} via 198.18.0." in routes
        # the pod's own /32 is not advertised: nobody else has it
        for other in pods:
            if other != name:
                assert f"{pod.ip} via" not in cluster.routes(other)
    # every pod reaches every other pod across nodes
    for src in pods.values():
        for dst in pods.values():
            if src is not dst:
                assert topo.ping(src, str(dst.ip), count=2, timeout=2), f"{src.name} -> {dst.name}"
    # an unused address in node-b's block is dropped at node-b's blackhole
    unused = str(ipaddress.ip_address(pods["node-b"].ip) + 7)
    assert not topo.ping(pods["node-a"], unused, count=1, timeout=1)
    # BIRD's own client reads the speaker's socket
    out = cluster.birdcl("node-a", "show", "protocols")
    assert "Mesh_198_18_0_12 BGP" in out and "Mesh_198_18_0_13 BGP" in out
    out = cluster.birdcl("node-a", "show", "route")
    assert f"{block_of(pods['node-a'].ip)}" in out and "blackhole [static1" in out
    # the CNI plugin's records are consistent: one endpoint per pod, no leaks
    env = dict(os.environ, ETCD_ENDPOINTS=cluster.etcd.endpoint)
    pybgp = str(Path(sys.executable).with_name("pybgp"))
    check = subprocess.run([pybgp, "ipam", "check"], env=env, capture_output=True, text=True,
                           timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr
    weps = subprocess.run([pybgp, "get", "wep", "-A"], env=env, capture_output=True,
                          text=True, timeout=30, check=True).stdout
    for pod in pods.values():
        assert str(pod.ip) in weps and pod.host_iface in weps


def test_new_pod_block_propagates_and_withdraws(mesh):
    cluster, pods = mesh
    from pybgp.ipam import IPAM

    # node-c releases its only pod: its block stays affine (as Calico keeps it)
    # but a new node joining gets sessions from everyone without resetting others
    before = cluster.birdcl("node-a", "show", "protocols", "all", "Mesh_198_18_0_12")
    cluster.add_node("node-d", "198.18.0.14/24")
    pod_d = cluster.add_pod("node-d", "pod-d")
    cluster.start_speaker("node-d")
    cluster.wait_established("node-d", 3)
    cluster.wait_route("node-a", block_of(pod_d.ip))
    after = cluster.birdcl("node-a", "show", "protocols", "all", "Mesh_198_18_0_12")
    since = [line.split()[4] for line in (before, after)
             for line in line.splitlines() if line.startswith("Mesh_198_18_0_12")]
    assert since[0] == since[1], "adding a node reset an unrelated session"
    assert cluster.topo.ping(pods["node-a"], str(pod_d.ip), count=2, timeout=2)
    # removing the Node takes its sessions and routes away everywhere
    cluster.store.delete("Node", "node-d")
    cluster.wait_route("node-a", block_of(pod_d.ip), present=False)
    IPAM(cluster.kv, "node-d").release_by_handle("k8s-pod-network.node-d-pod-d")


def test_speaker_crash_loses_no_packets_and_routes_do_not_flap(mesh):
    cluster, pods = mesh
    topo = cluster.topo
    src, dst = pods["node-b"], pods["node-a"]
    a_block = block_of(dst.ip)
    # watch node-b's kernel for any change to node-a's block while node-a restarts
    monitor = topo.popen(cluster.nodes["node-b"].node, "ip", "monitor", "route",
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    pinger = topo.popen(src, "ping", "-i", "0.1", "-c", "150", "-W", "1", str(dst.ip),
                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    time.sleep(2)
    cluster.kill_speaker("node-a")  # kill -9: ExaBGP dies with it, sessions drop

    def session_to_a_down() -> bool:
        rows = cluster.birdcl("node-b", "show", "protocols").splitlines()
        return any(r.startswith("Mesh_198_18_0_11") and "Established" not in r for r in rows)

    # the graceful-restart path is really taken: node-b saw the session drop
    wait_until(session_to_a_down, 15, "node-b to see node-a's session drop")
    time.sleep(2)
    cluster.start_speaker("node-a")
    cluster.wait_established("node-a", 2)
    out, _ = pinger.communicate(timeout=60)
    text = out.decode()
    assert " 0% packet loss" in text, text[-300:]
    time.sleep(1)
    monitor.terminate()
    changes, _ = monitor.communicate(timeout=10)
    flaps = [line for line in changes.decode().splitlines() if a_block in line]
    assert flaps == [], f"node-a's block flapped on node-b: {flaps}"
    # and node-a, restarted, still has (and kept) the others' routes
    for name, pod in pods.items():
        if name != "node-a":
            cluster.wait_route("node-a", block_of(pod.ip))


def _helpers_of(speaker_pid: int) -> list[int]:
    """ExaBGP's API helper processes under a speaker (speaker → exabgp → the
    helper, which passed its pipes to the speaker and became ``sleep``)."""
    found, todo = [], [speaker_pid]
    while todo:
        pid = todo.pop()
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as fh:
                kids = [int(k) for k in fh.read().split()]
        except FileNotFoundError:
            continue
        todo += kids
        for kid in kids:
            with contextlib.suppress(FileNotFoundError), open(f"/proc/{kid}/comm") as fh:
                if fh.read().strip() == "sleep":
                    found.append(kid)
    return found


def test_api_helper_killed_later_announcements_still_arrive(mesh):
    """ExaBGP's API helper dies: ExaBGP starts another, the speaker takes the
    pipes it passes, and no session is reset."""
    cluster, pods = mesh
    speaker = cluster.nodes["node-a"].speaker
    assert speaker is not None
    helpers = _helpers_of(speaker.pid)
    assert len(helpers) == 1, helpers
    before = cluster.birdcl("node-b", "show", "protocols")
    os.kill(helpers[0], signal.SIGKILL)
    wait_until(lambda: (h := _helpers_of(speaker.pid)) and h != helpers, 30,
               "ExaBGP to start a new API helper")
    # a new block on node-a: 63 addresses fill its block, the 64th claims another
    from pybgp.ipam import IPAM

    ips = IPAM(cluster.kv, "node-a").auto_assign("k8s-pod-network.node-a-many", 64,
                                                 {"node": "node-a"}, cluster.pools)
    new_block = block_of(str(ips[-1].ip))
    assert new_block != block_of(str(pods["node-a"].ip))
    cluster.wait_route("node-b", new_block, timeout=30)
    assert cluster.birdcl("node-b", "show", "protocols").count("Established") == \
        before.count("Established")
    since = [[r.split()[4] for r in text.splitlines() if r.startswith("Mesh_198_18_0_11")]
             for text in (before, cluster.birdcl("node-b", "show", "protocols"))]
    assert since[0] == since[1], "the helper's death reset node-b's session to node-a"
