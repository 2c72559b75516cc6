"""The speaker's pure core: effects for datastore, kernel and ExaBGP events."""

from __future__ import annotations

import json

from pybgp.kernel_sync.desired import KRoute, NextHop
from pybgp.model.selector import matches
from pybgp.speaker.core import SPEAKER_PROTOCOL, Speaker
from pybgp.speaker.inputs import Inputs

RES = "/calico/resources/v3/projectcalico.org"


def node(name, ip):
    return (f"{RES}/nodes/{name}", json.dumps({
        "apiVersion": "projectcalico.org/v3", "kind": "Node", "metadata": {"name": name},
        "spec": {"bgp": {"ipv4Address": ip}}}).encode())


POOL = (f"{RES}/ippools/p", json.dumps({
    "apiVersion": "projectcalico.org/v3", "kind": "IPPool", "metadata": {"name": "p"},
    "spec": {"cidr": "198.19.0.0/16"}}).encode())


def affinity(node_name, cidr, state="confirmed"):
    return (f"/calico/ipam/v2/host/{node_name}/ipv4/block/{cidr.replace('/', '-')}",
            json.dumps({"state": state, "deleted": False}).encode())


def state_line(peer, state):
    return json.dumps({"type": "state", "neighbor": {
        "address": {"local": "198.18.0.11", "peer": peer},
        "asn": {"local": 64512, "peer": 64512}, "state": state}})


def open_line(peer, router_id, gr=120):
    caps = {"64": {"name": "graceful restart", "time": gr}} if gr else {}
    return json.dumps({"type": "open", "neighbor": {
        "address": {"local": "198.18.0.11", "peer": peer}, "asn": {"peer": 64512},
        "direction": "receive", "open": {
            "version": 4, "asn": 64512, "hold_time": 180, "router_id": router_id,
            "capabilities": caps}}})


def update_line(peer, prefix, next_hop):
    return json.dumps({"type": "update", "neighbor": {
        "address": {"local": "198.18.0.11", "peer": peer}, "asn": {"peer": 64512},
        "direction": "receive", "message": {"update": {
            "attribute": {"origin": "igp", "local-preference": 100},
            "announce": {"ipv4 unicast": {next_hop: [{"nlri": prefix}]}}}}}})


def eor_line(peer):
    return json.dumps({"type": "update", "neighbor": {
        "address": {"local": "198.18.0.11", "peer": peer}, "asn": {"peer": 64512},
        "direction": "receive", "message": {"eor": {"afi": "ipv4", "safi": "unicast"}}}})


def speaker(synced=True):
    sp = Speaker(Inputs("node-a"), matches, startup_hold=30)
    sp.start(0.0, [])
    for key, value in (node("node-a", "198.18.0.11/24"), node("node-b", "198.18.0.12/24"),
                       POOL, affinity("node-a", "198.19.1.0/26")):
        sp.on_datastore(key, value, 1.0)
    if synced:
        sp.on_synced(1.0)
    return sp


def test_nothing_originated_before_sync():
    sp = speaker(synced=False)
    fx = sp.on_local_route("add", "198.19.200.5/32", "cali123", 1.0)
    assert fx.commands == [] and sp.advertised == set()
    assert sp.peers  # peers are known; ExaBGP is configured once the shell is in sync
    fx = sp.on_synced(2.0)
    assert sp.advertised == {"198.19.1.0/26", "198.19.200.5/32"}
    assert any("198.19.1.0/26" in c and c.startswith("announce") for c in fx.commands)


def test_own_pod_route_is_suppressed_borrowed_is_advertised():
    sp = speaker()
    sp.on_local_route("add", "198.19.1.5/32", "caliaaa", 2.0)
    sp.on_local_route("add", "198.19.9.9/32", "calibbb", 2.0)
    assert sp.advertised == {"198.19.1.0/26", "198.19.9.9/32"}
    fx = sp.on_local_route("del", "198.19.9.9/32", "calibbb", 3.0)
    assert sp.advertised == {"198.19.1.0/26"}
    assert any(c.startswith("withdraw") and "198.19.9.9/32" in c for c in fx.commands)
    assert "198.19.1.0/26" in sp.kernel_routes()  # our blackhole


def test_pending_affinity_neither_advertised_nor_blackholed():
    sp = speaker()
    sp.on_datastore(*affinity("node-a", "198.19.2.0/26", state="pending"), 2.0)
    assert "198.19.2.0/26" not in sp.advertised
    assert "198.19.2.0/26" not in sp.kernel_routes()


def test_peer_up_gets_our_routes_then_our_eor():
    sp = speaker()
    fx = sp.on_exabgp(state_line("198.18.0.12", "up"), 2.0)
    assert fx.commands[0].startswith("neighbor 198.18.0.12 announce")
    assert "198.19.1.0/26" in fx.commands[0]
    assert fx.commands[-1] == "neighbor 198.18.0.12 announce eor ipv4 unicast"


def learn(sp, peer="198.18.0.12", prefix="198.19.8.0/26", gr=120):
    sp.on_exabgp(open_line(peer, peer, gr), 2.0)
    sp.on_exabgp(state_line(peer, "up"), 2.0)
    fx = sp.on_exabgp(update_line(peer, prefix, peer), 2.0)
    assert fx.kernel
    assert sp.kernel_routes()[prefix] == KRoute(prefix, "unicast", (NextHop(peer),),
                                                SPEAKER_PROTOCOL)


def test_graceful_restart_keeps_routes_until_eor():
    sp = speaker()
    learn(sp)
    fx = sp.on_exabgp(state_line("198.18.0.12", "down"), 3.0)
    assert ("gr:198.18.0.12", 120.0) in fx.timers
    assert "198.19.8.0/26" in sp.kernel_routes()  # kept while the peer restarts
    sp.on_exabgp(state_line("198.18.0.12", "up"), 4.0)
    sp.on_exabgp(update_line("198.18.0.12", "198.19.8.64/26", "198.18.0.12"), 4.0)
    fx = sp.on_exabgp(eor_line("198.18.0.12"), 4.0)
    routes = sp.kernel_routes()
    assert fx.kernel and "198.19.8.0/26" not in routes  # not re-sent: swept at EoR
    assert "198.19.8.64/26" in routes


def test_graceful_restart_timer_sweeps_if_peer_never_returns():
    sp = speaker()
    learn(sp)
    sp.on_exabgp(state_line("198.18.0.12", "down"), 3.0)
    assert "198.19.8.0/26" in sp.kernel_routes()
    assert sp.on_timer("gr:198.18.0.12", 123.0).kernel
    assert "198.19.8.0/26" not in sp.kernel_routes()


def test_peer_without_graceful_restart_loses_routes_at_once():
    sp = speaker()
    learn(sp, gr=0)
    fx = sp.on_exabgp(state_line("198.18.0.12", "down"), 3.0)
    assert fx.kernel and fx.timers == []
    assert "198.19.8.0/26" not in sp.kernel_routes()


def test_startup_hold_keeps_old_routes_until_every_peer_sent_eor():
    old = KRoute("198.19.8.0/26", "unicast", (NextHop("198.18.0.12"),), SPEAKER_PROTOCOL)
    stale = KRoute("198.19.99.0/26", "unicast", (NextHop("198.18.0.12"),), SPEAKER_PROTOCOL)
    sp = Speaker(Inputs("node-a"), matches, startup_hold=30)
    fx = sp.start(0.0, [old, stale])
    assert ("startup-hold", 30.0) in fx.timers
    for key, value in (node("node-a", "198.18.0.11/24"), node("node-b", "198.18.0.12/24"),
                       POOL):
        sp.on_datastore(key, value, 1.0)
    sp.on_synced(1.0)
    assert {"198.19.8.0/26", "198.19.99.0/26"} <= set(sp.kernel_routes())
    sp.on_exabgp(open_line("198.18.0.12", "198.18.0.12"), 2.0)
    sp.on_exabgp(state_line("198.18.0.12", "up"), 2.0)
    sp.on_exabgp(update_line("198.18.0.12", "198.19.8.0/26", "198.18.0.12"), 2.0)
    assert "198.19.99.0/26" in sp.kernel_routes()  # still holding: no EoR yet
    sp.on_exabgp(eor_line("198.18.0.12"), 2.0)
    routes = sp.kernel_routes()
    assert "198.19.8.0/26" in routes and "198.19.99.0/26" not in routes


def test_startup_hold_timer_ends_hold():
    stale = KRoute("198.19.99.0/26", "unicast", (NextHop("198.18.0.12"),), SPEAKER_PROTOCOL)
    sp = Speaker(Inputs("node-a"), matches, startup_hold=30)
    sp.start(0.0, [stale])
    assert "198.19.99.0/26" in sp.kernel_routes()
    assert sp.on_timer("startup-hold", 30.0).kernel
    assert "198.19.99.0/26" not in sp.kernel_routes()


def test_node_removal_drops_peer_and_its_routes():
    sp = speaker()
    learn(sp)
    fx = sp.on_datastore(f"{RES}/nodes/node-b", None, 5.0)
    assert fx.reconfigure and fx.kernel
    assert sp.peers == {} and "198.19.8.0/26" not in sp.kernel_routes()


def test_vxlan_pool_routes_not_imported():
    sp = speaker()
    sp.on_datastore(f"{RES}/ippools/vx", json.dumps({
        "apiVersion": "projectcalico.org/v3", "kind": "IPPool", "metadata": {"name": "vx"},
        "spec": {"cidr": "198.18.128.0/20", "vxlanMode": "Always"}}).encode(), 2.0)
    sp.on_exabgp(state_line("198.18.0.12", "up"), 2.0)
    sp.on_exabgp(update_line("198.18.0.12", "198.18.130.0/26", "198.18.0.12"), 2.0)
    assert "198.18.130.0/26" not in sp.kernel_routes()


def test_bad_resource_is_reported_not_fatal():
    sp = speaker()
    fx = sp.on_datastore(f"{RES}/nodes/node-b", b"{not json", 3.0)
    assert f"{RES}/nodes/node-b" in sp.inputs.errors
    assert fx.reconfigure and sp.peers == {}
