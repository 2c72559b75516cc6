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
    assert fx.commands == []  # no session is up: each peer gets the set when it comes up
    fx = sp.on_exabgp(state_line("198.18.0.12", "up"), 3.0)
    assert any("198.19.1.0/26" in c and c.startswith("neighbor 198.18.0.12 announce")
               for c in fx.commands)


def test_own_pod_route_is_suppressed_borrowed_is_advertised():
    sp = speaker()
    sp.on_exabgp(state_line("198.18.0.12", "up"), 2.0)
    sp.on_local_route("add", "198.19.1.5/32", "caliaaa", 2.0)
    fx = sp.on_local_route("add", "198.19.9.9/32", "calibbb", 2.0)
    assert sp.advertised == {"198.19.1.0/26", "198.19.9.9/32"}
    assert any(c.startswith("neighbor 198.18.0.12 announce") and "198.19.9.9/32" in c
               for c in fx.commands)
    fx = sp.on_local_route("del", "198.19.9.9/32", "calibbb", 3.0)
    assert sp.advertised == {"198.19.1.0/26"}
    assert any(c.startswith("neighbor 198.18.0.12 withdraw") and "198.19.9.9/32" in c
               for c in fx.commands)
    assert "198.19.1.0/26" in sp.kernel_routes()  # our blackhole


def test_pending_affinity_neither_advertised_nor_blackholed():
    sp = speaker()
    sp.on_datastore(*affinity("node-a", "198.19.2.0/26", state="pending"), 2.0)
    assert "198.19.2.0/26" not in sp.advertised
    assert "198.19.2.0/26" not in sp.kernel_routes()


def test_changes_go_to_established_peers_only():
    """A down peer gets nothing queued (it gets the whole set when it comes up):
    ExaBGP 5.0 drops reloads while a connecting peer has updates queued."""
    sp = speaker()
    sp.on_datastore(*node("node-c", "198.18.0.13/24"), 2.0)
    fx = sp.on_local_route("add", "198.19.9.9/32", "calibbb", 2.0)
    assert fx.commands == []
    sp.on_exabgp(state_line("198.18.0.12", "up"), 2.0)
    sp.on_exabgp(state_line("198.18.0.13", "up"), 2.0)
    fx = sp.on_local_route("add", "198.19.9.10/32", "caliccc", 3.0)
    assert fx.commands == ["neighbor 198.18.0.12 , neighbor 198.18.0.13 announce attributes "
                           "next-hop self origin igp nlri 198.19.9.10/32"]
    sp.on_exabgp(state_line("198.18.0.13", "down"), 4.0)
    fx = sp.on_local_route("del", "198.19.9.10/32", "caliccc", 5.0)
    assert fx.commands == ["neighbor 198.18.0.12 withdraw attributes nlri 198.19.9.10/32"]


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


def test_removed_peer_is_drained_then_dropped_and_ignored():
    sp = speaker()
    learn(sp)  # node-b up, one path learned from it
    assert "198.19.8.0/26" in sp.kernel_routes()
    sp.take_kernel_changes()
    fx = sp.on_datastore(node("node-b", "")[0], None, 3.0)  # node-b deleted
    # its paths leave at once, our routes are withdrawn from it, the session lingers
    full, changed = sp.take_kernel_changes()
    assert fx.kernel and (full or "198.19.8.0/26" in changed)
    assert "198.19.8.0/26" not in sp.kernel_routes()
    assert fx.commands == ["neighbor 198.18.0.12 withdraw attributes nlri 198.19.1.0/26"]
    assert ("drain:198.18.0.12", 2.0) in fx.timers
    assert [n.address for n in sp.neighbor_configs()] == ["198.18.0.12"]
    # a late update from it is ignored
    fx = sp.on_exabgp(update_line("198.18.0.12", "198.19.7.0/26", "198.18.0.12"), 3.5)
    assert "198.19.7.0/26" not in sp.kernel_routes() and not fx.kernel
    fx = sp.on_timer("drain:198.18.0.12", 5.0)
    assert fx.reconfigure and sp.neighbor_configs() == []


def test_peer_back_while_draining_restarts_its_session():
    sp = speaker()
    learn(sp)
    sp.on_datastore(node("node-b", "")[0], None, 3.0)
    fx = sp.on_datastore(*node("node-b", "198.18.0.12/24"), 3.5)
    assert "neighbor 198.18.0.12 teardown 3" in fx.commands
    assert not sp.on_timer("drain:198.18.0.12", 5.0).reconfigure
    assert [n.address for n in sp.neighbor_configs()] == ["198.18.0.12"]


def test_incremental_kernel_view_matches_the_whole_table():
    """kernel_route(p) for the prefixes take_kernel_changes() names must equal
    kernel_routes(): the daemon applies only those, so a miss would leave the
    kernel wrong until the next full resync."""
    import random

    for seed in range(40):
        rnd = random.Random(seed)
        retained = [KRoute(f"198.19.{i}.0/26", "unicast", (NextHop("198.18.0.12"),),
                           SPEAKER_PROTOCOL) for i in rnd.sample(range(20), 3)]
        sp = Speaker(Inputs("node-a"), matches, startup_hold=30)
        sp.start(0.0, retained)
        for key, value in (node("node-a", "198.18.0.11/24"), node("node-b", "198.18.0.12/24"),
                           node("node-c", "198.18.0.13/24"), POOL):
            sp.on_datastore(key, value, 1.0)
        sp.on_synced(1.0)
        applied = dict(sp.kernel_routes())  # the kernel after the first full apply
        sp.take_kernel_changes()
        for peer in ("198.18.0.12", "198.18.0.13"):
            sp.on_exabgp(open_line(peer, peer), 2.0)
            sp.on_exabgp(state_line(peer, "up"), 2.0)
        for _step in range(60):
            peer = rnd.choice(("198.18.0.12", "198.18.0.13"))
            prefix = f"198.19.{rnd.randrange(20)}.0/26"
            kind = rnd.randrange(7)
            if kind <= 2:
                sp.on_exabgp(update_line(peer, prefix, peer), 3.0)
            elif kind == 3:
                sp.on_exabgp(json.dumps({"type": "update", "neighbor": {
                    "address": {"local": "198.18.0.11", "peer": peer}, "asn": {"peer": 64512},
                    "direction": "receive", "message": {"update": {
                        "withdraw": {"ipv4 unicast": [{"nlri": prefix}]}}}}}), 3.0)
            elif kind == 4:
                sp.on_exabgp(state_line(peer, rnd.choice(("down", "up"))), 3.0)
            elif kind == 5:
                sp.on_exabgp(eor_line(peer), 3.0)
            else:
                sp.on_datastore(*affinity("node-a", prefix, rnd.choice(
                    ("confirmed", "pending"))), 3.0)
            full, dirty = sp.take_kernel_changes()
            want = sp.kernel_routes()
            if full:
                applied = dict(want)
            else:
                for p in dirty:
                    route = sp.kernel_route(p)
                    if route is None:
                        applied.pop(p, None)
                    else:
                        applied[p] = route
            assert applied == want, f"seed {seed}"
        sp.on_timer("startup-hold", 40.0)
        full, dirty = sp.take_kernel_changes()
        for p in dirty:
            route = sp.kernel_route(p)
            applied.pop(p, None) if route is None else applied.__setitem__(p, route)
        assert full or applied == sp.kernel_routes(), f"seed {seed} after hold"


def test_batches_end_where_one_event_at_a_time_ends():
    """A burst handed over at once recomputes once, to the same outcome."""
    events = [("add", f"198.19.200.{i}/32", f"cali{i:011d}") for i in range(1, 6)]
    events += [("del", "198.19.200.3/32", "cali00000000003"),
               ("add", "198.19.1.7/32", "cali00000000007")]  # inside our block: suppressed
    one, many = speaker(), speaker()
    for up in (one, many):
        up.on_exabgp(state_line("198.18.0.12", "up"), 2.0)
    singles = [one.on_local_route(a, p, i, 3.0) for a, p, i in events]
    batch = many.on_local_routes(events, 3.0)
    assert one.advertised == many.advertised == {
        "198.19.1.0/26", "198.19.200.1/32", "198.19.200.2/32", "198.19.200.4/32",
        "198.19.200.5/32"}
    assert sum(len(fx.commands) for fx in singles) > len(batch.commands) == 1
    assert one.take_kernel_changes()[1] == many.take_kernel_changes()[1]
    keys = [node("node-c", "198.18.0.13/24"), affinity("node-a", "198.19.2.0/26")]
    for key, value in keys:
        one.on_datastore(key, value, 4.0)
    many.on_datastore_batch(keys, 4.0)
    assert one.advertised == many.advertised and "198.19.2.0/26" in many.advertised
    assert set(one.peers) == set(many.peers) and len(many.peers) == 2
    assert many.on_datastore_batch([], 5.0).commands == []


def test_kernel_changes_handed_over_in_slices():
    """With a limit, the changed prefixes come out in slices that together
    are exactly the changes, each once; a full rebuild is never sliced."""
    sp = speaker()
    learn(sp)
    sp.take_kernel_changes()
    prefixes = [f"198.19.{i}.0/26" for i in range(64, 164)]
    for p in prefixes:
        sp.on_exabgp(update_line("198.18.0.12", p, "198.18.0.12"), 3.0)
    assert sp.kernel_changes_left == len(prefixes)
    seen: list[str] = []
    while sp.kernel_changes_left:
        full, part = sp.take_kernel_changes(limit=32)
        assert not full and 0 < len(part) <= 32
        seen += part
    assert sorted(seen) == sorted(prefixes)
    assert sp.take_kernel_changes(limit=32) == (False, set())
    sp._kernel_changed()  # everything: handed over whole whatever the limit
    assert sp.kernel_changes_left == -1
    assert sp.take_kernel_changes(limit=1) == (True, set())


def test_blocks_and_pods_do_not_recompute_peers():
    """A new block or pod redoes the exports only: the peer selection (which
    runs every BGPPeer's selectors over every Node) waits for a change of
    Nodes, the BGP configuration or peers."""
    calls = []

    def counting(selector, labels):
        calls.append(selector)
        return matches(selector, labels)

    sp = Speaker(Inputs("node-a"), counting, startup_hold=30)
    sp.start(0.0, [])
    peer = (f"{RES}/bgppeers/tor", json.dumps({
        "apiVersion": "projectcalico.org/v3", "kind": "BGPPeer", "metadata": {"name": "tor"},
        "spec": {"nodeSelector": "all()", "peerIP": "198.18.0.1", "asNumber": 64513}}).encode())
    for key, value in (node("node-a", "198.18.0.11/24"), POOL, peer):
        sp.on_datastore(key, value, 1.0)
    sp.on_synced(1.0)
    assert calls and any(s.address == "198.18.0.1" for s in sp.peers.values())
    calls.clear()
    sp.on_datastore(*affinity("node-a", "198.19.1.0/26"), 2.0)
    sp.on_local_route("add", "198.19.9.9/32", "cali1", 2.0)
    assert calls == [] and sp.advertised == {"198.19.1.0/26", "198.19.9.9/32"}
    sp.on_datastore(*node("node-b", "198.18.0.12/24"), 3.0)
    assert calls  # a Node did change: peers are selected again
