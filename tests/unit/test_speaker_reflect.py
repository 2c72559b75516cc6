"""A node acting as route reflector (routeReflectorClusterID): the speaker
reflects learned paths through ExaBGP commands, by RFC 4456's rules."""

from __future__ import annotations

import json

from pybgp.model.selector import matches
from pybgp.speaker.core import Speaker
from pybgp.speaker.inputs import Inputs

RES = "/calico/resources/v3/projectcalico.org"


def res(plural: str, kind: str, name: str, spec: dict, labels: dict | None = None):
    meta: dict = {"name": name}
    if labels:
        meta["labels"] = labels
    return (f"{RES}/{plural}/{name}", json.dumps({
        "apiVersion": "projectcalico.org/v3", "kind": kind, "metadata": meta,
        "spec": spec}).encode())


def line(kind: str, peer: str, **message) -> str:
    base = {"address": {"local": "198.18.0.11", "peer": peer},
            "asn": {"local": 64512, "peer": 64512}}
    if kind == "state":
        base["state"] = message["state"]
        return json.dumps({"type": "state", "neighbor": base})
    if kind == "open":
        base |= {"direction": "receive", "open": {
            "version": 4, "asn": 64512, "hold_time": 90, "router_id": peer,
            "capabilities": {}}}
        return json.dumps({"type": "open", "neighbor": base})
    base |= {"direction": "receive", "message": message}
    return json.dumps({"type": "update", "neighbor": base})


def announce(peer: str, prefix: str, **attrs) -> str:
    attribute = {"origin": "igp", "local-preference": 100, **attrs}
    return line("update", peer, update={"attribute": attribute,
                                        "announce": {"ipv4 unicast": {peer: [prefix]}}})


def withdraw(peer: str, prefix: str) -> str:
    return line("update", peer, update={"withdraw": {"ipv4 unicast": [prefix]}})


A, B, C, X = "198.18.0.11", "198.18.0.12", "198.18.0.13", "198.18.0.254"


def rr_node() -> Speaker:
    """node-a is a reflector (cluster 198.18.0.100); node-b, node-c clients;
    a ToR X is a non-client iBGP peer. Mesh off."""
    sp = Speaker(Inputs("node-a"), matches, startup_hold=30)
    sp.start(0.0, [])
    items = [
        res("nodes", "Node", "node-a", {"bgp": {"ipv4Address": f"{A}/24",
                                                "routeReflectorClusterID": "198.18.0.100"}},
            {"route-reflector": "true"}),
        res("nodes", "Node", "node-b", {"bgp": {"ipv4Address": f"{B}/24"}}),
        res("nodes", "Node", "node-c", {"bgp": {"ipv4Address": f"{C}/24"}}),
        res("bgpconfigurations", "BGPConfiguration", "default",
            {"nodeToNodeMeshEnabled": False}),
        res("bgppeers", "BGPPeer", "to-rr", {"nodeSelector": "all()",
                                             "peerSelector": "route-reflector == 'true'"}),
        res("bgppeers", "BGPPeer", "tor", {"peerIP": X, "asNumber": 64512}),
        res("ippools", "IPPool", "p", {"cidr": "198.19.0.0/16"}),
    ]
    sp.on_datastore_batch(items, 1.0)
    sp.on_synced(1.0)
    for peer in (B, C, X):
        sp.on_exabgp(line("open", peer), 2.0)
        sp.on_exabgp(line("state", peer, state="up"), 2.0)
    return sp


def test_the_node_reflects_clients_to_everyone_and_never_back():
    sp = rr_node()
    assert {s.name for s in sp.peers.values()} == {"Node_198_18_0_12", "Node_198_18_0_13",
                                                   "Global_198_18_0_254"}
    fx = sp.on_exabgp(announce(B, "198.19.2.0/26"), 3.0)
    [cmd] = fx.commands
    assert cmd.startswith(f"neighbor {C} , neighbor {X} announce attributes next-hop {B} ")
    assert f"originator-id {B}" in cmd and "cluster-list [ 198.18.0.100 ]" in cmd
    assert cmd.endswith("nlri 198.19.2.0/26") and f"neighbor {B}" not in cmd
    # a non-client's route goes to clients only
    [cmd] = sp.on_exabgp(announce(X, "198.19.9.0/26"), 3.0).commands
    assert cmd.startswith(f"neighbor {B} , neighbor {C} announce")
    # outside every pool: not exported, as Calico's filter does
    assert sp.on_exabgp(announce(B, "198.18.100.0/24"), 3.0).commands == []


def test_a_better_path_from_another_client_moves_the_route():
    sp = rr_node()
    sp.on_exabgp(announce(B, "198.19.2.0/26"), 3.0)
    fx = sp.on_exabgp(announce(C, "198.19.2.0/26", **{"local-preference": 200}), 3.0)
    withdraws = [c for c in fx.commands if " withdraw " in c]
    announces = [c for c in fx.commands if " announce " in c]
    assert withdraws == [f"neighbor {C} withdraw attributes nlri 198.19.2.0/26"]
    [a] = announces
    assert a.startswith(f"neighbor {B} , neighbor {X} announce attributes next-hop {C} ")
    fx = sp.on_exabgp(withdraw(C, "198.19.2.0/26"), 3.0)
    assert f"neighbor {B} withdraw attributes nlri 198.19.2.0/26" in fx.commands
    assert any(c.startswith(f"neighbor {C} , neighbor {X} announce attributes next-hop {B}")
               for c in fx.commands)


def test_loops_are_refused_and_a_peer_coming_up_gets_the_table():
    sp = rr_node()
    fx = sp.on_exabgp(announce(B, "198.19.3.0/26", **{"cluster-list": ["198.18.0.100"]}), 3.0)
    assert fx.commands == [] and sp.rib is not None and sp.rib.best("198.19.3.0/26") is None
    fx = sp.on_exabgp(announce(B, "198.19.4.0/26", **{"originator-id": A}), 3.0)
    assert fx.commands == []
    sp.on_exabgp(announce(B, "198.19.2.0/26"), 3.0)
    sp.on_exabgp(line("state", C, state="down"), 4.0)
    fx = sp.on_exabgp(line("state", C, state="up"), 5.0)
    reflected = [c for c in fx.commands if f"next-hop {B}" in c]
    assert reflected and reflected[0].startswith(f"neighbor {C} announce attributes")
    assert fx.commands[-1] == f"neighbor {C} announce eor ipv4 unicast"  # after the table


def test_a_session_lost_withdraws_what_it_sent():
    sp = rr_node()
    sp.on_exabgp(announce(B, "198.19.2.0/26"), 3.0)
    fx = sp.on_exabgp(line("state", B, state="down"), 4.0)  # no GR capability seen
    assert f"neighbor {C} , neighbor {X} withdraw attributes nlri 198.19.2.0/26" in fx.commands


def test_a_plain_node_reflects_nothing():
    sp = Speaker(Inputs("node-b"), matches, startup_hold=30)
    sp.start(0.0, [])
    sp.on_datastore_batch([
        res("nodes", "Node", "node-a", {"bgp": {"ipv4Address": f"{A}/24"}}),
        res("nodes", "Node", "node-b", {"bgp": {"ipv4Address": f"{B}/24"}}),
        res("nodes", "Node", "node-c", {"bgp": {"ipv4Address": f"{C}/24"}}),
        res("ippools", "IPPool", "p", {"cidr": "198.19.0.0/16"})], 1.0)
    sp.on_synced(1.0)
    for peer in (A, C):
        sp.on_exabgp(line("state", peer, state="up"), 2.0)
    assert sp.reflector is None
    assert sp.on_exabgp(announce(A, "198.19.2.0/26"), 3.0).commands == []
