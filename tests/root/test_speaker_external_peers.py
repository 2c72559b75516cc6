"""The speaker against real external peers (BIRD 2, GoBGP) and two more
cluster scenarios: a borrowed /32 escaping its block, and BGPPeers changed
in etcd without resetting unrelated sessions.

Routers live in their own namespaces on the fabric; their daemons run in the
foreground under ``topology.popen`` so the topology kills them by PID.
"""

from __future__ import annotations

import ipaddress
import socket
import subprocess
import time
from pathlib import Path

import pytest

from pybgp.testing.cluster import Cluster, block_of, resource, wait_until
from pybgp.testing.cluster import protocol_row as row
from pybgp.testing.netns import Node, Topology

NODE_A = "198.18.0.11"
NODE_B = "198.18.0.12"
BIRD_ROUTER = "198.18.0.254"
GOBGP_ROUTER = "198.18.0.253"
BIRD_NET = "198.18.100.0/24"
BIRD_HOST = "198.18.100.1"
GOBGP_NET = "198.18.101.0/24"




@pytest.fixture
def cluster(etcd, topology, tmp_path):
    c = Cluster(topology, etcd, workdir=str(tmp_path / "cluster"))
    yield c
    c.close()


# -- BIRD 2 ------------------------------------------------------------------
class Bird:
    """A real BIRD 2 in a router namespace originating ``198.18.100.0/24``
    (statically; ``198.18.100.1`` is on the router's loopback, as the kernel
    here has no dummy interfaces)."""

    def __init__(self, topo: Topology, router: Node, workdir: Path, neighbors: dict[str, int],
                 *, local_as: int = 64513, password: str | None = None):
        self.topo = topo
        self.router = router
        self.conf = workdir / "bird.conf"
        self.sock = str(workdir / "bird.ctl")
        self.log = workdir / "bird.log"
        topo.ip(router, "addr", "add", f"{BIRD_HOST}/32", "dev", "lo")
        pw = f'        password "{password}";\n' if password else ""
        protocols = "".join(
            f"protocol bgp peer_{ip.replace('.', '_')} {{\n"
            f"        local {router.addr} as {local_as};\n"
            f"        neighbor {ip} as {asn};\n"
            f"        connect retry time 1;\n"
            f"        error wait time 1, 5;\n"
            f"{pw}"
            "        ipv4 { import all; export all; };\n"
            "}\n"
            for ip, asn in neighbors.items())
        self.conf.write_text(
            f"router id {router.addr};\n"
            "protocol device { scan time 2; }\n"
            # learned BGP routes land in the router's kernel (not the static aggregate)
            "protocol kernel { ipv4 { export where source = RTS_BGP; }; }\n"
            f'protocol static {{ ipv4; route {BIRD_NET} blackhole; }}\n'
            + protocols)
        with open(self.log, "ab") as log:
            self.proc = topo.popen(router, "bird", "-f", "-c", str(self.conf), "-s", self.sock,
                                   "-P", str(workdir / "bird.pid"),
                                   stdout=log, stderr=subprocess.STDOUT)
        wait_until(lambda: Path(self.sock).exists() or self.proc.poll() is not None, 10,
                   "BIRD's control socket")
        assert self.proc.poll() is None, self.log.read_text()

    def birdc(self, *cmd: str) -> str:
        out = subprocess.run(["birdc", "-s", self.sock, *cmd], capture_output=True, text=True,
                             timeout=10)
        return out.stdout

    def state(self, neighbor: str) -> str:
        return row(self.birdc("show", "protocols"), f"peer_{neighbor.replace('.', '_')}")

    def established(self, neighbor: str) -> bool:
        return "Established" in self.state(neighbor)

    def kernel(self) -> str:
        return self.topo.ip(self.router, "route", "show").stdout

    def wait_kernel(self, prefix: str, *, present: bool = True, timeout: float = 30) -> None:
        def check() -> bool:
            have = any(ln.split()[0] == prefix for ln in self.kernel().splitlines())
            return have == present

        wait_until(check, timeout, f"{prefix} {'in' if present else 'gone from'} the router's "
                   "kernel")


def bird_peer(cluster: Cluster, *, password_key: str | None = None, name: str = "tor") -> None:
    spec: dict[str, object] = {"peerIP": BIRD_ROUTER, "asNumber": 64513}
    if password_key:
        spec["password"] = {"secretKeyRef": {"name": "bgp-secrets", "key": password_key}}
    cluster.store.apply([resource("BGPPeer", name, spec)])


def test_bird2_ebgp_peer(cluster, topology, tmp_path):
    cluster.add_node("node-a", f"{NODE_A}/24")
    pod = cluster.add_pod("node-a", "pod-a")
    router = topology.add_external_router("tor", f"{BIRD_ROUTER}/24")
    bird = Bird(topology, router, tmp_path, {NODE_A: 64512})
    bird_peer(cluster)
    cluster.start_speaker("node-a")
    block = block_of(pod.ip)

    cluster.wait_established("node-a", 1)
    assert "Established" in row(cluster.birdcl("node-a", "show", "protocols"),
                                "Global_198_18_0_254")
    wait_until(lambda: bird.established(NODE_A), 30, "BIRD's session to node-a")
    # the router learned our block and put it into its kernel
    wait_until(lambda: f"{block} via {NODE_A} dev eth0 proto bird" in bird.kernel(), 30,
               f"{block} in the router's kernel")
    # eBGP: the path BIRD sees is our AS only, the next hop is our address
    detail = bird.birdc("show", "route", block, "all")
    assert "BGP.as_path: 64512\n" in detail or detail.rstrip().endswith("BGP.as_path: 64512"), \
        detail
    assert f"BGP.next_hop: {NODE_A}" in detail, detail
    # no /32 of the pod escapes its block
    assert f"{pod.ip}/32" not in bird.birdc("show", "route")
    # we learned the router's network and installed it as BIRD would
    cluster.wait_route("node-a", BIRD_NET)
    assert f"{BIRD_NET} via {BIRD_ROUTER} dev eth0 proto bird" in cluster.routes("node-a")
    # real packets: the pod reaches the router's network, the router routes back to the block
    assert topology.wait_ping(pod, BIRD_HOST, within=5)
    assert topology.ping(pod, BIRD_HOST, count=3, timeout=1)


# -- GoBGP ---------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_gobgp_ebgp_peer(cluster, topology, tmp_path):
    cluster.add_node("node-a", f"{NODE_A}/24")
    pod = cluster.add_pod("node-a", "pod-a")
    router = topology.add_external_router("gobgp", f"{GOBGP_ROUTER}/24")
    conf = tmp_path / "gobgpd.toml"
    conf.write_text(
        "[global.config]\n"
        "  as = 64514\n"
        f'  router-id = "{GOBGP_ROUTER}"\n'
        f'  local-address-list = ["{GOBGP_ROUTER}"]\n'
        "[[neighbors]]\n"
        "  [neighbors.config]\n"
        f'    neighbor-address = "{NODE_A}"\n'
        "    peer-as = 64512\n"
        "  [neighbors.timers.config]\n"
        "    connect-retry = 2\n")
    # the gRPC API on the router namespace's own loopback; any port is free there
    port = str(free_port())
    with open(tmp_path / "gobgpd.log", "ab") as log:
        proc = topology.popen(router, "gobgpd", "-f", str(conf), "-p", "--pprof-disable",
                              f"--api-hosts=127.0.0.1:{port}", stdout=log,
                              stderr=subprocess.STDOUT)

    def gobgp(*args: str) -> str:
        return topology.exec(router, "gobgp", "-u", "127.0.0.1", "-p", port, *args,
                             check=False, timeout=10).stdout

    wait_until(lambda: proc.poll() is not None or "198.18.0.11" in gobgp("neighbor"), 15,
               "gobgpd's API")
    assert proc.poll() is None, (tmp_path / "gobgpd.log").read_text()
    topology.exec(router, "gobgp", "-u", "127.0.0.1", "-p", port, "global", "rib", "add",
                  GOBGP_NET, "-a", "ipv4")
    cluster.store.apply([resource("BGPPeer", "gobgp", {"peerIP": GOBGP_ROUTER,
                                                        "asNumber": 64514})])
    cluster.start_speaker("node-a")
    block = block_of(pod.ip)

    cluster.wait_established("node-a", 1)
    assert "Established" in row(cluster.birdcl("node-a", "show", "protocols"),
                                "Global_198_18_0_253")
    wait_until(lambda: "Establ" in gobgp("neighbor"), 30, "GoBGP's session to node-a")
    wait_until(lambda: block in gobgp("global", "rib", "-a", "ipv4"), 30,
               f"{block} in GoBGP's RIB")
    rib = gobgp("global", "rib", "-a", "ipv4", block)
    line = next(ln for ln in rib.splitlines() if block in ln)
    assert NODE_A in line and "64512" in line, rib
    cluster.wait_route("node-a", GOBGP_NET)
    assert f"{GOBGP_NET} via {GOBGP_ROUTER} dev eth0 proto bird" in cluster.routes("node-a")


# -- TCP-MD5 ---------------------------------------------------------------------
def test_md5_password_from_secret(cluster, topology, tmp_path):
    cluster.add_node("node-a", f"{NODE_A}/24")
    pod = cluster.add_pod("node-a", "pod-a")
    router = topology.add_external_router("tor", f"{BIRD_ROUTER}/24")
    bird = Bird(topology, router, tmp_path, {NODE_A: 64512}, password="s3cret")
    cluster.set_secret("bgp-secrets", "tor", "s3cret")
    bird_peer(cluster, password_key="tor")
    cluster.start_speaker("node-a")
    cluster.wait_established("node-a", 1)
    wait_until(lambda: bird.established(NODE_A), 30, "BIRD's MD5 session to node-a")
    conf = (cluster.nodes["node-a"].dir / "state" / "exabgp.conf").read_text()
    assert 'md5-password "s3cret"' in conf
    cluster.wait_route("node-a", BIRD_NET)
    wait_until(lambda: block_of(pod.ip) in bird.kernel(), 30, "our block on the router")
    assert topology.wait_ping(pod, BIRD_HOST, within=5)


def test_md5_wrong_password_never_establishes(cluster, topology, tmp_path):
    cluster.add_node("node-a", f"{NODE_A}/24")
    pod = cluster.add_pod("node-a", "pod-a")
    router = topology.add_external_router("tor", f"{BIRD_ROUTER}/24")
    bird = Bird(topology, router, tmp_path, {NODE_A: 64512}, password="s3cret")
    cluster.set_secret("bgp-secrets", "wrong", "not-the-secret")
    bird_peer(cluster, password_key="wrong")
    cluster.start_speaker("node-a")
    # give both sides several connect attempts (BIRD retries every second)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        ours = row(cluster.birdcl("node-a", "show", "protocols"), "Global_198_18_0_254")
        assert "Established" not in ours, ours
        assert not bird.established(NODE_A), bird.state(NODE_A)
        time.sleep(1)
    assert ours, "the speaker does not show the peer at all"
    assert BIRD_NET not in cluster.routes("node-a")
    assert block_of(pod.ip) not in bird.kernel()
    # the right password (a new key of the secret) brings it up, no restart needed
    cluster.set_secret("bgp-secrets", "tor", "s3cret")
    bird_peer(cluster, password_key="tor")
    cluster.wait_established("node-a", 1)
    cluster.wait_route("node-a", BIRD_NET)


# -- borrowed /32 ------------------------------------------------------------------
def test_borrowed_address_reachable_across_nodes(etcd, topology, tmp_path):
    cluster = Cluster(topology, etcd, pool="198.19.0.0/26", workdir=str(tmp_path / "c"))
    try:
        cluster.add_node("node-a", f"{NODE_A}/24")
        cluster.add_node("node-b", f"{NODE_B}/24")
        pod_b = cluster.add_pod("node-b", "pod-b")  # claims the pool's only block
        pod_x = cluster.add_pod("node-a", "pod-x")  # nothing to claim: borrows from it
        block = block_of(pod_b.ip)
        assert block == "198.19.0.0/26" and block_of(pod_x.ip) == block
        for name in cluster.nodes:
            cluster.start_speaker(name)
        for name in cluster.nodes:
            cluster.wait_established(name, 1)
        # node-a advertises the borrowed /32; node-b keeps its blackhole aggregate
        cluster.wait_route("node-b", f"{pod_x.ip}")
        assert f"{pod_x.ip} via {NODE_A} dev eth0 proto bird" in cluster.routes("node-b")
        assert f"blackhole {block} proto bird" in cluster.routes("node-b")
        # node-a reaches the rest of the block through node-b
        cluster.wait_route("node-a", block)
        assert f"{block} via {NODE_B} dev eth0 proto bird" in cluster.routes("node-a")
        # node-a has no blackhole: the block is not its own
        assert "blackhole" not in cluster.routes("node-a")
        # both ways, real packets
        assert topology.wait_ping(pod_b, str(pod_x.ip), within=5)
        assert topology.ping(pod_x, str(pod_b.ip), count=2, timeout=1)
        # an unused address of the block is dropped at node-b's blackhole
        used = {pod_b.ip, pod_x.ip}
        unused = next(str(a) for a in ipaddress.ip_network(block).hosts() if a not in used)
        assert not topology.ping(pod_x, unused, count=1, timeout=1)
        out = cluster.birdcl("node-a", "show", "route")
        assert f"{pod_x.ip}/32" in out
    finally:
        cluster.close()


# -- peers changed in etcd ------------------------------------------------------------
def test_deleting_bgppeer_keeps_mesh_session(cluster, topology, tmp_path):
    cluster.add_node("node-a", f"{NODE_A}/24")
    cluster.add_node("node-b", f"{NODE_B}/24")
    pods = {n: cluster.add_pod(n, f"pod-{n[-1]}") for n in cluster.nodes}
    router = topology.add_external_router("tor", f"{BIRD_ROUTER}/24")
    bird = Bird(topology, router, tmp_path, {NODE_A: 64512, NODE_B: 64512})
    bird_peer(cluster)
    for name in cluster.nodes:
        cluster.start_speaker(name)
    for name in cluster.nodes:
        cluster.wait_established(name, 2)
        cluster.wait_route(name, BIRD_NET)
    for pod in pods.values():
        bird.wait_kernel(block_of(pod.ip))
    # node-b learns node-a's block over iBGP, not BIRD's looped eBGP copy
    assert f"{block_of(pods['node-a'].ip)} via {NODE_A}" in cluster.routes("node-b")
    # a new block while both of node-a's sessions are up: one command to both peers
    extra = cluster.add_pod("node-a", "pod-a2", ip="198.19.200.5")
    cluster.wait_route("node-b", "198.19.200.0/26")
    bird.wait_kernel("198.19.200.0/26")
    assert topology.ping(pods["node-b"], str(extra.ip), count=2, timeout=1)
    mesh_before = row(cluster.birdcl("node-a", "show", "protocols"), "Mesh_198_18_0_12")
    assert "Established" in mesh_before
    time.sleep(1.1)  # so a reset would show a different "since"

    cluster.store.delete("BGPPeer", "tor")
    for name in cluster.nodes:
        wait_until(lambda n=name: row(cluster.birdcl(n, "show", "protocols"),
                                      "Global_198_18_0_254") == "", 30,
                   f"the BIRD session gone from {name}")
        cluster.wait_route(name, BIRD_NET, present=False)
    wait_until(lambda: not bird.established(NODE_A) and not bird.established(NODE_B), 30,
               "BIRD to see both sessions close")
    for pod in [*pods.values(), extra]:
        bird.wait_kernel(block_of(pod.ip), present=False)
    mesh_after = row(cluster.birdcl("node-a", "show", "protocols"), "Mesh_198_18_0_12")
    assert mesh_after == mesh_before, (mesh_before, mesh_after)
    # and the mesh still carries traffic
    assert topology.ping(pods["node-a"], str(pods["node-b"].ip), count=2, timeout=1)

    # back again; then deleted and re-created at once (inside the speaker's drain
    # of the removed session): the session restarts and carries routes both ways
    bird_peer(cluster)
    cluster.wait_established("node-a", 2)
    cluster.wait_route("node-a", BIRD_NET)
    bird.wait_kernel(block_of(pods["node-a"].ip))
    cluster.store.delete("BGPPeer", "tor")
    bird_peer(cluster)
    time.sleep(3)  # past the drain
    for name in cluster.nodes:
        cluster.wait_established(name, 2)
        cluster.wait_route(name, BIRD_NET)
    for pod in [*pods.values(), extra]:
        bird.wait_kernel(block_of(pod.ip))
    assert topology.wait_ping(pods["node-a"], BIRD_HOST, within=5)
    assert row(cluster.birdcl("node-a", "show", "protocols"), "Mesh_198_18_0_12") == mesh_before
