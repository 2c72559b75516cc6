"""``pybgp reflector`` against scripted peers: exactly what a client says.

One reflector in its namespace; clients are ``ScriptedPeer`` sessions from a
second namespace (several addresses on one interface): loops dropped,
RFC 7606 treat-as-withdraw on the wire, a client restarting gracefully, a
TCP-MD5 session (and the unsigned and wrongly signed ones that never come
up), a connection from a stranger, route refresh, and the control sockets.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pybgp.reflector import wire
from pybgp.testing.bgp_clients import ScriptedPeer, attributes, host_addresses, raw_update
from pybgp.testing.cluster import wait_until
from pybgp.testing.netns import Topology

RR, CID = "198.18.0.2", "198.18.0.100"
A, B, C, M = "198.18.0.11", "198.18.0.12", "198.18.0.13", "198.18.0.30"
BIRD = "198.18.0.40"
STRANGER = "198.18.0.99"


class Reflector:
    def __init__(self, topo: Topology, d: Path):
        self.topo, self.dir = topo, d
        self.node = topo.add_node("rr", f"{RR}/24")
        self.clients = topo.add_node("cl", f"{A}/24")
        topo.batch(self.clients, [f"addr add {ip}/24 dev eth0"
                                  for ip in (B, C, M, STRANGER, BIRD)])
        (d / "rr.yaml").write_text(
            f"routerId: {RR}\nclusterId: {CID}\nasNumber: 64512\nstartupHold: 0\n"
            "gracefulRestart: {restartTime: 120, staleTime: 60}\n"
            "families: [ipv4, ipv6]\nconnectRetry: 1\n"
            "clients:\n"
            f"  - address: {M}\n    password: s3cret-md5\n    passive: true\n"
            f"  - address: {BIRD}\n    password: bird-md5\n"  # we connect, signed
            "  - range: 198.18.0.8/29\n")  # .8-.15: A, B, C; not the stranger
        self.sock = str(d / "rr.ctl")
        with open(d / "rr.log", "ab") as log:
            self.proc = topo.popen(self.node, sys.executable, "-m", "pybgp.cli.main",
                                   "reflector", "--config", str(d / "rr.yaml"),
                                   "--bird-socket", self.sock, "--json-socket",
                                   str(d / "rr.sock"), stdout=log, stderr=subprocess.STDOUT)
        wait_until(lambda: Path(self.sock).exists() or self.proc.poll() is not None, 20,
                   "the reflector's control socket")
        assert self.proc.poll() is None, (d / "rr.log").read_text()

    def peer(self, local: str, **kw) -> ScriptedPeer:
        return ScriptedPeer(self.clients.ns, local, RR, **kw)

    def cl(self, *cmd: str) -> str:
        return subprocess.run(["birdcl", "-s", self.sock, *cmd], capture_output=True,
                              text=True, timeout=10).stdout


@pytest.fixture
def rr(topology, tmp_path):
    return Reflector(topology, tmp_path)


def test_reflection_loops_and_malformed_updates(rr):
    a = rr.peer(A).connect()
    b = rr.peer(B).connect()
    assert b.remote_caps is not None and b.remote_caps.route_refresh
    a.announce(["198.19.1.0/26"])  # a good one
    a.announce(["198.19.2.0/26"], originator_id=RR)  # our own router id: a loop
    a.announce(["198.19.3.0/26"], cluster_list=("10.0.0.1", CID))  # our cluster: a loop
    # RFC 7606: a malformed ORIGIN withdraws what it announces, the session stays up
    bad = (bytes((0x40, 1, 1, 9)) + attributes(A)[4:])
    a.send(raw_update(bad, bytes([26, 198, 19, 1, 0])))
    a.announce(["198.19.4.0/26"])  # after it: still up
    b.wait_for(lambda p: "198.19.4.0/26" in p.routes, 10, "the route after the bad one")
    b.poll(0.3)
    assert set(b.routes) == {"198.19.4.0/26"}  # .1 treated as withdrawn, loops dropped
    path = b.routes["198.19.4.0/26"]
    assert path.originator_id == A and path.cluster_list == (CID,) and path.next_hop == A
    table = rr.cl("show", "route")
    assert "198.19.2.0/26" not in table and "198.19.3.0/26" not in table
    assert "198.19.4.0/26" in table
    assert a.routes == {}  # never back to the sender
    # a broken NLRI field cannot be withdrawn: session reset with a NOTIFICATION
    a.send(raw_update(attributes(A), bytes([40, 1, 2, 3, 4, 5])))
    with pytest.raises(ConnectionError):
        a.poll(5)
    assert a.notification == (3, 10)
    b.wait_for(lambda p: not p.routes, 10, "A's routes withdrawn with its session")
    # route refresh: the table again
    c = rr.peer(C).connect()
    c.announce(["198.19.5.0/26"])
    b.wait_for(lambda p: "198.19.5.0/26" in p.routes, 10)
    b.routes.clear()
    b.send(wire.encode_route_refresh(wire.IPV4_UNICAST))
    b.wait_for(lambda p: "198.19.5.0/26" in p.routes, 10, "the refreshed table")


def test_graceful_restart_of_a_client(rr):
    b = rr.peer(B).connect()
    c = rr.peer(C, restart_time=60).connect()
    c.announce(["198.19.6.0/26", "198.19.6.64/26"])
    c.end_of_rib()
    b.wait_for(lambda p: len(p.routes) == 2, 10)
    c.crash()  # RST, no NOTIFICATION: the helper keeps its routes
    wait_until(lambda: "(100s)" in rr.cl("show", "route", "198.19.6.0/26"), 10,
               "C's routes marked stale")
    b.poll(1.0)
    assert len(b.routes) == 2  # nothing withdrawn while C restarts
    proto = rr.cl("show", "protocols", "all", "Node_198_18_0_13")
    assert "Neighbor graceful restart active" in proto, proto
    c.restarting = True
    c.connect()
    c.announce(["198.19.6.0/26"])  # re-sends one of the two
    c.end_of_rib()
    b.wait_for(lambda p: set(p.routes) == {"198.19.6.0/26"}, 10, "the other one swept")
    wait_until(lambda: "(100)" in rr.cl("show", "route", "198.19.6.0/26"), 10,
               "the refreshed route no longer stale")
    # a client without the capability loses its routes at once
    a = rr.peer(A).connect()
    a.announce(["198.19.7.0/26"])
    b.wait_for(lambda p: "198.19.7.0/26" in p.routes, 10)
    a.crash()
    b.wait_for(lambda p: "198.19.7.0/26" not in p.routes, 10, "A's route withdrawn")


def test_ipv6_unicast_over_an_ipv4_session(rr):
    v6 = (wire.IPV4_UNICAST, wire.IPV6_UNICAST)
    a = rr.peer(A, families=v6).connect()
    b = rr.peer(B, families=v6).connect()
    c = rr.peer(C).connect()  # IPv4 only
    a.announce6(["2001:db8:5::/64"], "2001:db8::11")
    b.wait_for(lambda p: "2001:db8:5::/64" in p.routes, 10, "the IPv6 prefix")
    path = b.routes["2001:db8:5::/64"]
    assert path.next_hop == "2001:db8::11" and path.cluster_list == (CID,)
    assert path.originator_id == A
    c.poll(0.5)
    assert c.routes == {}
    assert "2001:db8:5::/64" in rr.cl("show", "route")


def test_md5_and_strangers(rr, tmp_path):
    m = rr.peer(M, password="s3cret-md5").connect()
    b = rr.peer(B).connect()
    m.announce(["198.19.8.0/26"])
    b.wait_for(lambda p: "198.19.8.0/26" in p.routes, 10, "the MD5 client's route")
    assert "Established" in rr.cl("show", "protocols", "Node_198_18_0_30")
    m.close()
    # unsigned, or signed with another key: the kernel drops the SYN, nothing comes up
    for pw in (None, "wrong-key"):
        with pytest.raises(OSError):
            rr.peer(M, password=pw).connect(timeout=3)
    # an address that is no client of ours: accepted by TCP, closed at once
    with pytest.raises((ConnectionError, OSError)):
        rr.peer(STRANGER).connect(timeout=5)
    assert "Node_198_18_0_99" not in rr.cl("show", "protocols")
    assert rr.proc.poll() is None
    # we connect to BIRD ourselves, signing our SYN: TCP-MD5 on the connecting socket
    conf = tmp_path / "bird.conf"
    conf.write_text(
        f"router id {BIRD};\nprotocol device {{ }}\n"
        f"protocol bgp reflector {{ local {BIRD} as 64512; neighbor {RR} as 64512; passive on;\n"
        '  password "bird-md5"; ipv4 { import all; export none; }; }\n')
    sock = str(tmp_path / "bird.ctl")
    with open(tmp_path / "bird.log", "ab") as log:
        rr.topo.popen(rr.clients, "bird", "-f", "-c", str(conf), "-s", sock,
                      "-P", str(tmp_path / "bird.pid"), stdout=log, stderr=subprocess.STDOUT)

    def birdc(*cmd: str) -> str:
        return subprocess.run(["birdc", "-s", sock, *cmd], capture_output=True, text=True,
                              timeout=10).stdout

    b.announce(["198.19.9.0/26"])
    wait_until(lambda: "198.19.9.0/26" in birdc("show", "route"), 30,
               "the reflected route in BIRD over the signed session")
    assert "Established" in birdc("show", "protocols", "reflector")
    # and the reflector says what it is
    status = rr.cl("show", "status")
    assert f"Router ID is {RR}" in status and "Daemon is up and running" in status
    time.sleep(0.1)


def test_swarm_retries_sessions_refused_while_the_reflector_comes_up(topology, tmp_path):
    """The benchmarks' swarm against a reflector that is not listening yet,
    then one that closes its connections (they are no clients of its, as
    GoBGP does while it is still adding 500 peers from its config), then one
    that takes them: every session comes up and the table fans out."""
    node = topology.add_node("rr", f"{RR}/24")
    swarm_at = host_addresses("198.18.0.50", 4)  # the injector and 3 clients
    cl = topology.add_node("cl", f"{swarm_at[0]}/24")
    topology.batch(cl, [f"addr add {ip}/24 dev eth0" for ip in swarm_at[1:]])
    swarm = topology.popen(cl, sys.executable, "-m", "pybgp.testing.bgp_clients",
                           "--reflector", RR, "--base", swarm_at[0], "--clients", "3",
                           "--routes", "100", "--cluster-id", CID, "--timeout", "60",
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    log = tmp_path / "rr.log"

    def reflector(clients: str) -> subprocess.Popen:
        (tmp_path / "rr.yaml").write_text(
            f"routerId: {RR}\nclusterId: {CID}\nasNumber: 64512\nstartupHold: 0\n"
            f"clients:\n  - range: {clients}\n")
        with open(log, "ab") as out:
            return topology.popen(node, sys.executable, "-m", "pybgp.cli.main", "reflector",
                                  "--config", str(tmp_path / "rr.yaml"), "--bird-socket",
                                  str(tmp_path / "rr.ctl"), "--json-socket",
                                  str(tmp_path / "rr.sock"), stdout=out,
                                  stderr=subprocess.STDOUT)

    first = reflector("198.18.0.8/29")  # not the swarm's addresses
    closed = f"connection from {swarm_at[1]}: not a peer of ours, closed"
    wait_until(lambda: log.read_text().count(closed) >= 2, 30,
               "the swarm's sessions closed by the reflector, and tried again")
    assert swarm.poll() is None
    first.terminate()
    first.wait(10)
    reflector("198.18.0.48/28")
    assert swarm.stdout is not None and swarm.stdin is not None
    ready = json.loads(swarm.stdout.readline())  # the swarm's own timeout bounds it
    assert ready["established"] == 4, ready
    swarm.stdin.write("go\n")
    swarm.stdin.flush()
    result = json.loads(swarm.stdout.readline())
    assert result["all_done"] and result["complete"] == 3, result
    assert not result["wrong_attributes"] and result["bad"] == 0, result
    swarm.stdin.close()
    assert swarm.wait(10) == 0
