"""Two ``pybgp reflector``s carry a cluster with the node-to-node mesh off.

Three nodes (real ``pybgp speaker``s) peer only with two reflectors that
share a cluster id (one picks its clients from etcd by label, the other by
address range); a BIRD 2 and a GoBGP router are clients too. Real packets
cross the nodes; one reflector is killed mid-ping (no packet may be lost,
no route may flap), and a node's speaker is killed and restarted while the
remaining reflector keeps its routes (graceful-restart helper). A mesh cluster
moves behind a reflector (and back) the way docs/install.md says, mid-ping,
without losing a packet or touching a kernel route.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pybgp.testing.cluster import Cluster, block_of, resource, wait_until
from pybgp.testing.cluster import protocol_row as row
from pybgp.testing.netns import Node, Topology

NODES = {"node-a": "198.18.0.11", "node-b": "198.18.0.12", "node-c": "198.18.0.13"}
RR1, RR2, CID = "198.18.0.2", "198.18.0.3", "198.18.0.100"
BIRD_IP, GOBGP_IP = "198.18.0.254", "198.18.0.253"
BIRD_NET, GOBGP_NET = "198.18.100.0/24", "198.18.101.0/24"




def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_bird(topo: Topology, router: Node, d: Path) -> str:
    """BIRD 2 as an iBGP client of RR1, originating BIRD_NET."""
    topo.ip(router, "addr", "add", "198.18.100.1/32", "dev", "lo")
    conf = d / "bird.conf"
    sock = str(d / "bird.ctl")
    conf.write_text(
        f"router id {BIRD_IP};\n"
        "protocol device { scan time 2; }\n"
        f"protocol static {{ ipv4; route {BIRD_NET} blackhole; }}\n"
        "protocol bgp rr1 {\n"
        f"  local {BIRD_IP} as 64512;\n  neighbor {RR1} as 64512;\n"
        "  connect retry time 1; error wait time 1, 5;\n"
        "  ipv4 { import all; export where source = RTS_STATIC; next hop self; };\n}\n")
    with open(d / "bird.log", "ab") as log:
        topo.popen(router, "bird", "-f", "-c", str(conf), "-s", sock, "-P", str(d / "bird.pid"),
                   stdout=log, stderr=subprocess.STDOUT)
    wait_until(lambda: Path(sock).exists(), 10, "BIRD's control socket")
    return sock


def start_gobgp(topo: Topology, router: Node, d: Path) -> list[str]:
    conf = d / "gobgpd.toml"
    conf.write_text(
        "[global.config]\n  as = 64512\n"
        f'  router-id = "{GOBGP_IP}"\n  local-address-list = ["{GOBGP_IP}"]\n'
        "[[neighbors]]\n  [neighbors.config]\n"
        f'    neighbor-address = "{RR1}"\n    peer-as = 64512\n'
        "  [neighbors.timers.config]\n    connect-retry = 2\n")
    port = str(free_port())
    with open(d / "gobgpd.log", "ab") as log:
        topo.popen(router, "gobgpd", "-f", str(conf), "-p", "--pprof-disable",
                   f"--api-hosts=127.0.0.1:{port}", stdout=log, stderr=subprocess.STDOUT)
    cmd = ["gobgp", "-u", "127.0.0.1", "-p", port]
    wait_until(lambda: topo.exec(router, *cmd, "global", check=False).returncode == 0, 15,
               "gobgpd's API")
    topo.exec(router, *cmd, "global", "rib", "add", GOBGP_NET, "-a", "ipv4")
    return cmd


@contextlib.contextmanager
def no_loss_no_flap(topo: Topology, node: Node, src, dst, prefix: str, count: int):
    """Ping ``dst`` from ``src`` (every 0.1 s, ``count`` times) while the body
    runs, watching ``node``'s kernel: no packet may be lost and ``prefix``
    may not change there."""
    monitor = topo.popen(node, "ip", "monitor", "route", stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL)
    pinger = topo.popen(src, "ping", "-i", "0.1", "-c", str(count), "-W", "1", str(dst.ip),
                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    time.sleep(1.0)
    yield
    out, _ = pinger.communicate(timeout=60)
    assert " 0% packet loss" in out.decode(), out.decode()[-300:]
    monitor.terminate()
    changes, _ = monitor.communicate(timeout=10)
    flaps = [line for line in changes.decode().splitlines() if prefix in line]
    assert flaps == [], f"{prefix} changed on {node.name}: {flaps}"


@pytest.fixture
def rr_cluster(etcd, topology, tmp_path):
    c = Cluster(topology, etcd, workdir=str(tmp_path / "cluster"))
    c.store.apply([resource("BGPConfiguration", "default", {"nodeToNodeMeshEnabled": False})])
    for name, ip in NODES.items():
        c.add_node(name, f"{ip}/24")
    pods = {name: c.add_pod(name, f"pod-{name[-1]}") for name in NODES}
    # rr1: the nodes from etcd (all()), plus BIRD and GoBGP by address
    c.start_reflector("rr1", f"{RR1}/24", cluster_id=CID, startupHold=2,
                      clients=[{"nodeSelector": "all()"}, {"address": BIRD_IP},
                               {"address": GOBGP_IP}])
    # rr2: anyone from the fabric's /24 (passive)
    c.start_reflector("rr2", f"{RR2}/24", cluster_id=CID, startupHold=2,
                      clients=[{"range": "198.18.0.0/24"}])
    for name in NODES:
        c.start_speaker(name)
    yield c, pods
    c.close()


def test_two_reflectors_carry_the_cluster(rr_cluster, topology, tmp_path):
    cluster, pods = rr_cluster
    bird_router = topology.add_external_router("bird", f"{BIRD_IP}/24")
    gobgp_router = topology.add_external_router("gobgp", f"{GOBGP_IP}/24")
    bird_sock = start_bird(topology, bird_router, tmp_path)
    gobgp = start_gobgp(topology, gobgp_router, tmp_path)

    for name in NODES:
        cluster.wait_established(name, 2)  # Global_198_18_0_2 and _3, no mesh
        out = cluster.birdcl(name, "show", "protocols")
        assert "Mesh_" not in out and "Global_198_18_0_2 " in out and "Global_198_18_0_3 " in out
    for name in NODES:
        for other, pod in pods.items():
            if other != name:
                cluster.wait_route(name, block_of(pod.ip))
                # reflected, next hop unchanged: straight to the node that owns it
                assert f"{block_of(pod.ip)} via {NODES[other]} dev eth0 proto bird" in \
                    cluster.routes(name)
    # every pod reaches every other across nodes, through routes only reflectors carried
    for src in pods.values():
        for dst in pods.values():
            if src is not dst:
                assert topology.ping(src, str(dst.ip), count=2, timeout=2), \
                    f"{src.name} -> {dst.name}"

    # BIRD 2, a client of rr1: node-a's block with ORIGINATOR_ID and CLUSTER_LIST
    a_block = block_of(pods["node-a"].ip)

    def birdc(*cmd: str) -> str:
        return subprocess.run(["birdc", "-s", bird_sock, *cmd], capture_output=True,
                              text=True, timeout=10).stdout

    wait_until(lambda: a_block in birdc("show", "route"), 30, "node-a's block in BIRD")
    detail = birdc("show", "route", a_block, "all")
    assert f"BGP.originator_id: {NODES['node-a']}" in detail, detail
    assert f"BGP.cluster_list: {CID}" in detail, detail
    assert f"BGP.next_hop: {NODES['node-a']}" in detail, detail
    # GoBGP, a client of rr1: the same, read as JSON
    def gobgp_rib() -> dict:
        out = topology.exec(gobgp_router, *gobgp, "global", "rib", "-a", "ipv4", "-j",
                            check=False).stdout
        return json.loads(out or "{}")

    wait_until(lambda: a_block in gobgp_rib(), 30, "node-a's block in GoBGP")
    attrs = {a["type"]: a for a in gobgp_rib()[a_block][0]["attrs"]}
    assert attrs[9]["value"] == NODES["node-a"]  # ORIGINATOR_ID
    assert attrs[10]["value"] == [CID]  # CLUSTER_LIST
    assert attrs[3]["nexthop"] == NODES["node-a"]
    # the routers' prefixes reach the nodes, reflected with their next hops
    for name in NODES:
        cluster.wait_route(name, BIRD_NET)
        cluster.wait_route(name, GOBGP_NET)
        routes = cluster.routes(name)
        assert f"{BIRD_NET} via {BIRD_IP}" in routes and f"{GOBGP_NET} via {GOBGP_IP}" in routes
    # rr2 has them too, from rr1? no: same cluster id, rr2 would drop them — and they
    # never meet: rr1 and rr2 do not peer. rr2 knows only the nodes' blocks.
    assert BIRD_NET not in cluster.reflector_cl("rr2", "show", "route")

    # what the reflectors show: BIRD's client and pybgp's CLI on the same sockets
    protos = cluster.reflector_cl("rr1", "show", "protocols", "all", "Node_198_18_0_11")
    assert "Established" in protos and "route-reflector" in protos, protos
    assert "Neighbor ID:      198.18.0.11" in protos
    pybgp = [sys.executable, "-m", "pybgp.cli.main"]
    rr1 = cluster.reflectors["rr1"]
    out = subprocess.run([*pybgp, "show", "routes", a_block, "all", "--socket", rr1.bird_socket],
                         capture_output=True, text=True, timeout=20)
    assert out.returncode == 0 and "BGP.next_hop: 198.18.0.11" in out.stdout, out
    out = subprocess.run([*pybgp, "status", "--json-socket", rr1.json_socket, "-o", "json"],
                         capture_output=True, text=True, timeout=20)
    peers = {p["peer_address"]: p for p in json.loads(out.stdout)}
    assert {*NODES.values(), BIRD_IP, GOBGP_IP} <= set(peers)
    assert all(p["info"].startswith("Established") for p in peers.values()), peers

    # kill rr1 mid-ping: rr2 still carries every route, no packet is lost, nothing flaps
    src, dst = pods["node-a"], pods["node-c"]
    c_block = block_of(dst.ip)
    node_a = cluster.nodes["node-a"].node
    with no_loss_no_flap(topology, node_a, src, dst, c_block, 60):
        cluster.kill_reflector("rr1")
        wait_until(lambda: "Established" not in row(
            cluster.birdcl("node-a", "show", "protocols"), "Global_198_18_0_2"), 30,
            "node-a to see rr1's session drop")

    # node-c's speaker crashes and comes back: rr2 keeps node-c's routes (stale)
    # meanwhile, so node-a keeps routing to node-c's pod, whose kernel routes persist
    def stale_on_rr2() -> bool:
        return "(100s)" in cluster.reflector_cl("rr2", "show", "route", c_block)

    with no_loss_no_flap(topology, node_a, src, dst, c_block, 80):
        cluster.kill_speaker("node-c")
        wait_until(stale_on_rr2, 30, "node-c's block kept stale on rr2")
        assert "Established" not in row(cluster.reflector_cl("rr2", "show", "protocols"),
                                        "Node_198_18_0_13")
        cluster.start_speaker("node-c")
        wait_until(lambda: "Established" in row(
            cluster.reflector_cl("rr2", "show", "protocols"), "Node_198_18_0_13"), 60,
            "node-c back on rr2")
        wait_until(lambda: "(100)" in cluster.reflector_cl("rr2", "show", "route", c_block),
                   60, "node-c's block refreshed (not stale) on rr2")

    # rr1 comes back and takes its clients again
    cluster.start_reflector("rr1")
    for name in NODES:
        cluster.wait_established(name, 2, timeout=60)


def test_turning_the_mesh_off_behind_a_reflector_loses_nothing(etcd, topology, tmp_path):
    """docs/install.md's way from the mesh to a reflector: the reflector and
    its BGPPeer first, every node Established with it, then the mesh off —
    mid-ping, no packet lost and no kernel route touched; and back again."""
    c = Cluster(topology, etcd, workdir=str(tmp_path / "cluster"))
    c.store.apply([resource("BGPConfiguration", "default", {"nodeToNodeMeshEnabled": True})])
    for name, ip in NODES.items():
        c.add_node(name, f"{ip}/24")
    pods = {name: c.add_pod(name, f"pod-{name[-1]}") for name in NODES}
    for name in NODES:
        c.start_speaker(name)
    for name in NODES:
        c.wait_established(name, 2)  # the mesh
    c.start_reflector("rr1", f"{RR1}/24", cluster_id=CID)  # and its global BGPPeer
    for name in NODES:
        c.wait_established(name, 3)  # mesh + Global_198_18_0_2
    wait_until(lambda: "3 of 3 routes" in c.reflector_cl("rr1", "show", "route", "count"), 30,
               "every block on the reflector")
    src, dst = pods["node-a"], pods["node-c"]
    c_block = block_of(dst.ip)
    node_a = c.nodes["node-a"].node

    def mesh_rows(name: str) -> list[str]:
        return [line for line in c.birdcl(name, "show", "protocols").splitlines()
                if line.startswith("Mesh_")]

    with no_loss_no_flap(topology, node_a, src, dst, c_block, 50):
        c.store.apply([resource("BGPConfiguration", "default",
                                {"nodeToNodeMeshEnabled": False})])
        for name in NODES:
            wait_until(lambda name=name: not mesh_rows(name), 30, f"{name} leaving the mesh")
    for name in NODES:
        assert "Established" in row(c.birdcl(name, "show", "protocols"), "Global_198_18_0_2")
        assert f"{c_block} via {NODES['node-c']} dev eth0 proto bird" in c.routes("node-a")
    # and back: the mesh on first, then the reflector's BGPPeer goes
    with no_loss_no_flap(topology, node_a, src, dst, c_block, 50):
        c.store.apply([resource("BGPConfiguration", "default",
                                {"nodeToNodeMeshEnabled": True})])
        for name in NODES:
            c.wait_established(name, 3)
        c.store.delete("BGPPeer", "rr1")
        for name in NODES:
            wait_until(lambda name=name: not row(c.birdcl(name, "show", "protocols"),
                                                 "Global_198_18_0_2"), 30,
                       f"{name} without the reflector")
    c.close()
