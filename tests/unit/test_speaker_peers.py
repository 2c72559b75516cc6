"""Desired peers (mesh, global, node-specific, reverse, route reflector) and
the peer diff."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from pybgp.speaker.peers import (
    BgpConfig,
    BgpPeer,
    NodeInfo,
    PeerSpec,
    desired_peers,
    diff_peers,
    split_host_port,
)


def matches(selector: str, labels: Mapping[str, str]) -> bool:
    """A tiny stand-in for pybgp.model.selector: ``k == 'v'`` and ``all()``."""
    if selector.strip() == "all()":
        return True
    key, _, value = selector.partition("==")
    return labels.get(key.strip()) == value.strip().strip("'\"")


N11 = NodeInfo("n11", "198.18.0.11/24")
N12 = NodeInfo("n12", "198.18.0.12/24", labels={"rack": "a"})
N9 = NodeInfo("n9", "198.18.0.9", labels={"rack": "b"})
NOIP = NodeInfo("noip", None)
CFG = BgpConfig()


def test_mesh_names_passive_and_defaults() -> None:
    peers = desired_peers(N11, [N11, N12, N9, NOIP], CFG, [], matches)
    assert set(peers) == {"Mesh_198_18_0_12", "Mesh_198_18_0_9"}
    m12 = peers["Mesh_198_18_0_12"]
    assert m12 == PeerSpec(name="Mesh_198_18_0_12", address="198.18.0.12", port=179,
                           peer_as=64512, local_as=64512, local_address="198.18.0.11",
                           passive=True, md5_password=None, restart_time=120, rr_client=False,
                           cluster_id=None, peer_type="mesh")
    # "198.18.0.9" > "198.18.0.11" as strings, exactly as confd compares.
    assert peers["Mesh_198_18_0_9"].passive is True
    assert m12.ibgp


def test_mesh_pair_opens_exactly_one_connection() -> None:
    nodes = [N11, N12, N9]
    for a in nodes:
        for b in nodes:
            if a is b:
                continue
            pa = desired_peers(a, nodes, CFG, [], matches)[f"Mesh_{b.address.replace('.', '_')}"]  # type: ignore[union-attr]
            pb = desired_peers(b, nodes, CFG, [], matches)[f"Mesh_{a.address.replace('.', '_')}"]  # type: ignore[union-attr]
            assert pa.passive != pb.passive


def test_mesh_settings_from_bgp_configuration() -> None:
    cfg = BgpConfig(as_number=65010, listen_port=1179, node_mesh_password="pw",
                    node_mesh_max_restart_time=300)
    n12 = dataclasses.replace(N12, as_number=65020)
    p = desired_peers(N11, [n12], cfg, [], matches)["Mesh_198_18_0_12"]
    assert (p.port, p.peer_as, p.local_as, p.md5_password, p.restart_time) == (
        1179, 65020, 65010, "pw", 300)


def test_mesh_disabled_and_no_own_ip() -> None:
    assert desired_peers(N11, [N12], BgpConfig(node_to_node_mesh=False), [], matches) == {}
    assert desired_peers(NOIP, [N12], CFG, [], matches) == {}


def test_global_peer_with_port_and_password() -> None:
    bp = BgpPeer("tor", peer_ip="198.18.0.1:1179", as_number=64513, password="s",
                 max_restart_time=60)
    peers = desired_peers(N11, [N12], CFG, [bp], matches)
    g = peers["Global_198_18_0_1_port_1179"]
    assert (g.address, g.port, g.peer_as, g.md5_password, g.restart_time, g.passive,
            g.peer_type) == ("198.18.0.1", 1179, 64513, "s", 60, False, "global")
    assert not g.ibgp


def test_node_specific_peer_by_name_and_selector() -> None:
    by_name = BgpPeer("p1", node="n11", peer_ip="198.18.0.2", as_number=64513)
    by_sel = BgpPeer("p2", node_selector="rack == 'a'", peer_ip="198.18.0.3", as_number=64514)
    other = BgpPeer("p3", node="n12", peer_ip="198.18.0.4", as_number=64515)
    peers = desired_peers(N11, [N12], BgpConfig(node_to_node_mesh=False),
                          [by_name, by_sel, other], matches)
    assert set(peers) == {"Node_198_18_0_2"}
    peers12 = desired_peers(N12, [N11], BgpConfig(node_to_node_mesh=False),
                            [by_name, by_sel, other], matches)
    assert set(peers12) == {"Node_198_18_0_3", "Node_198_18_0_4"}


def test_node_peer_skipped_when_global_exists() -> None:
    g = BgpPeer("g", peer_ip="198.18.0.2", as_number=64513)
    n = BgpPeer("n", node="n11", peer_ip="198.18.0.2", as_number=64513)
    assert set(desired_peers(N11, [], CFG, [g, n], matches)) == {"Global_198_18_0_2"}


def test_route_reflector_topology() -> None:
    rr = NodeInfo("rr", "198.18.0.5", rr_cluster_id="198.18.0.5", labels={"rr": "yes"})
    clients = [N11, N12]
    to_rr = BgpPeer("to-rr", node_selector="all()", peer_selector="rr == 'yes'")
    cfg = BgpConfig(node_to_node_mesh=True)
    rr_peers = desired_peers(rr, [rr, *clients], cfg, [to_rr], matches)
    # The reflector leaves the mesh; it gets reverse peerings to every client.
    assert set(rr_peers) == {"Node_198_18_0_11", "Node_198_18_0_12"}
    assert all(p.rr_client and p.cluster_id == "198.18.0.5" for p in rr_peers.values())
    c_peers = desired_peers(N11, [rr, *clients], cfg, [to_rr], matches)
    # Clients keep the mesh among themselves (not with the reflector) and peer with it.
    assert set(c_peers) == {"Mesh_198_18_0_12", "Node_198_18_0_5"}
    assert not c_peers["Node_198_18_0_5"].rr_client


def test_same_cluster_reflectors_are_not_clients() -> None:
    rr1 = NodeInfo("rr1", "198.18.0.5", rr_cluster_id="1.0.0.1", labels={"rr": "yes"})
    rr2 = NodeInfo("rr2", "198.18.0.6", rr_cluster_id="1.0.0.1", labels={"rr": "yes"})
    mesh_rr = BgpPeer("rr-mesh", node_selector="rr == 'yes'", peer_selector="rr == 'yes'")
    peers = desired_peers(rr1, [rr1, rr2], CFG, [mesh_rr], matches)
    assert set(peers) == {"Node_198_18_0_6"}
    assert not peers["Node_198_18_0_6"].rr_client


def test_global_calico_node_peer_passivity() -> None:
    sel = BgpPeer("all-to-b", peer_selector="rack == 'b'")
    n8 = NodeInfo("n8", "198.18.0.8")
    p = desired_peers(n8, [n8, N9], BgpConfig(node_to_node_mesh=False), [sel], matches)
    assert p["Global_198_18_0_9"].passive  # "198.18.0.9" > "198.18.0.8"
    back = desired_peers(N9, [n8, N9], BgpConfig(node_to_node_mesh=False), [sel], matches)
    assert not back["Node_198_18_0_8"].passive  # the reverse side connects


def test_ebgp_peer_never_rr_client() -> None:
    rr = NodeInfo("rr", "198.18.0.5", rr_cluster_id="1.0.0.1")
    tor = BgpPeer("tor", peer_ip="198.18.0.1", as_number=65000)
    assert not desired_peers(rr, [], CFG, [tor], matches)["Global_198_18_0_1"].rr_client


def test_split_host_port() -> None:
    assert split_host_port("198.18.0.1") == ("198.18.0.1", 179)
    assert split_host_port("198.18.0.1:1179") == ("198.18.0.1", 1179)
    assert split_host_port("[2001:db8::1]:1179") == ("2001:db8::1", 1179)
    assert split_host_port("2001:db8::1") == ("2001:db8::1", 179)


def test_diff_peers() -> None:
    old = desired_peers(N11, [N12, N9], CFG, [], matches)
    same = desired_peers(N11, [N12, N9], CFG, [], matches)
    assert diff_peers(old, same) == ([], [], [])
    new = desired_peers(N11, [N12, NodeInfo("n13", "198.18.0.13")],
                        BgpConfig(node_mesh_password="x"), [], matches)
    added, removed, changed = diff_peers(old, new)
    assert [p.name for p in added] == ["Mesh_198_18_0_13"]
    assert [p.name for p in removed] == ["Mesh_198_18_0_9"]
    assert [p.name for p in changed] == ["Mesh_198_18_0_12"]
