"""The agent across two nodes: speakers route the pods, agents enforce policy.

Selectors in one node's policy match endpoints of the other node (their
addresses are in the selector ipsets), the BGP sessions between the nodes
stay up under the agents' rules (failsafe: the agent never filters host
traffic), and every cell is checked with packets.
"""

from __future__ import annotations

import ipaddress

import pytest
from agent_net import apply, delete, fresh_cluster, ping, reach, serve, settle, tcp, wait_ready

GNP = "GlobalNetworkPolicy"


def block_of(ip: str) -> str:
    return str(ipaddress.ip_network(f"{ip}/26", strict=False))


@pytest.fixture(scope="module")
def two(etcd_server, session_run_id, tmp_path_factory):
    with fresh_cluster(etcd_server, session_run_id,
                       str(tmp_path_factory.mktemp("agent-two"))) as cluster:
        topo = cluster.topo
        cluster.add_node("node-a", "198.18.0.11/24")
        cluster.add_node("node-b", "198.18.0.12/24")
        pods = {"a1": cluster.add_pod("node-a", "a1", cni=True),
                "b1": cluster.add_pod("node-b", "b1", cni=True),
                "b2": cluster.add_pod("node-b", "b2", cni=True)}
        for name, app in (("a1", "client"), ("b1", "web"), ("b2", "other")):
            cluster.update_endpoint(pods[name], labels={"app": app})
        for name in ("a1", "b1", "b2"):
            serve(topo, pods[name], 80, 8080)
        for node in cluster.nodes:
            cluster.start_speaker(node)
            cluster.start_agent(node)
        for node in cluster.nodes:
            cluster.wait_established(node, 1)
            wait_ready(cluster, node)
        cluster.wait_route("node-a", block_of(pods["b1"].addr))
        cluster.wait_route("node-b", block_of(pods["a1"].addr))
        yield cluster, pods


def test_cross_node_policy_matrix(two):
    cluster, pods = two
    topo = cluster.topo
    a1, b1, b2 = pods["a1"], pods["b1"], pods["b2"]
    # no policy: profiles allow, across nodes
    assert ping(topo, a1, b1) and reach(topo, a1, b2, 80)
    apply(cluster, GNP, "web-in", {"order": 10, "selector": "app == 'web'", "ingress": [
        {"action": "Allow", "protocol": "TCP", "source": {"selector": "app == 'client'"},
         "destination": {"ports": [80]}}]})
    apply(cluster, GNP, "client-out", {"order": 10, "selector": "app == 'client'",
                                       "types": ["Egress"], "egress": [
        {"action": "Allow", "protocol": "TCP", "destination": {"ports": [80]}}]})
    try:
        settle(lambda: not reach(topo, b2, b1, 80), what="web-in on node-b")
        # a1 (node-a) is in node-b's ipset for app == 'client'
        got = tcp(topo, a1, f"{b1.addr}:80", f"{b1.addr}:8080", f"{b2.addr}:80",
                  f"{b2.addr}:8080")
        assert got == {f"{b1.addr}:80": a1.addr, f"{b1.addr}:8080": "",
                       f"{b2.addr}:80": a1.addr, f"{b2.addr}:8080": ""}
        assert not ping(topo, a1, b1), "ICMP: neither egress nor ingress allows it"
        assert not ping(topo, a1, b2), "ICMP: the client's egress does not allow it"
        # b2 → a1: a1 has only an egress policy; its ingress falls to the profile
        assert reach(topo, b2, a1, 8080) and ping(topo, b2, a1)
        assert not reach(topo, b2, b1, 80), "same node, not a client"
        # relabel: b2 becomes a client, and is let in at once
        cluster.update_endpoint(b2, labels={"app": "client"})
        settle(lambda: reach(topo, b2, b1, 80), what="the new label in the ipset")
        # the BGP sessions (port 179 between the hosts) never noticed
        for node in cluster.nodes:
            cluster.wait_established(node, 1, timeout=5)
    finally:
        cluster.update_endpoint(b2, labels={"app": "other"})
        delete(cluster, GNP, "web-in")
        delete(cluster, GNP, "client-out")
    settle(lambda: ping(topo, a1, b1), what="the policies to go")
