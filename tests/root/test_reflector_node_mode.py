"""A node acting as route reflector, the Calico way: ``routeReflectorClusterID``
on node-a, a BGPPeer from every node to the nodes labelled as reflectors,
the mesh off. node-b and node-c peer only with node-a, which reflects their
blocks to each other (through ExaBGP), and their pods reach each other."""

from __future__ import annotations

import ipaddress

from pybgp.datastore.kv import Delete
from pybgp.ipam.keys import affinity_key
from pybgp.testing.cluster import Cluster, block_of, resource, wait_until

NODES = {"node-a": "198.18.0.11", "node-b": "198.18.0.12", "node-c": "198.18.0.13"}
CID = "198.18.0.100"



def test_node_as_route_reflector(etcd, topology, tmp_path):
    cluster = Cluster(topology, etcd, workdir=str(tmp_path / "cluster"))
    try:
        cluster.store.apply([
            resource("BGPConfiguration", "default", {"nodeToNodeMeshEnabled": False}),
            resource("BGPPeer", "peer-with-rr", {
                "nodeSelector": "all()", "peerSelector": "route-reflector == 'true'"}),
        ])
        cluster.add_node("node-a", f"{NODES['node-a']}/24", routeReflectorClusterID=CID)
        cluster.store.apply([resource(
            "Node", "node-a", {"bgp": {"ipv4Address": f"{NODES['node-a']}/24",
                                       "routeReflectorClusterID": CID}},
            labels={"route-reflector": "true"})])
        for name in ("node-b", "node-c"):
            cluster.add_node(name, f"{NODES[name]}/24")
        pods = {name: cluster.add_pod(name, f"pod-{name[-1]}") for name in NODES}
        for name in NODES:
            cluster.start_speaker(name)
        cluster.wait_established("node-a", 2)
        for name in ("node-b", "node-c"):
            cluster.wait_established(name, 1)
            out = cluster.birdcl(name, "show", "protocols")
            assert "Node_198_18_0_11 " in out and "Mesh_" not in out, out
        rr = cluster.birdcl("node-a", "show", "protocols")
        assert "Node_198_18_0_12 " in rr and "Node_198_18_0_13 " in rr, rr
        b_block, c_block = block_of(pods["node-b"].ip), block_of(pods["node-c"].ip)
        # reflected by node-a: next hop unchanged, RFC 4456 attributes set
        cluster.wait_route("node-b", c_block)
        cluster.wait_route("node-c", b_block)
        assert f"{c_block} via {NODES['node-c']} dev eth0 proto bird" in cluster.routes("node-b")
        detail = cluster.birdcl("node-b", "show", "route", c_block, "all")
        assert f"BGP.originator_id: {NODES['node-c']}" in detail, detail
        assert f"BGP.cluster_list: {CID}" in detail, detail
        # and node-a's own block reaches both, as a plain advertisement
        a_block = block_of(pods["node-a"].ip)
        for name in ("node-b", "node-c"):
            cluster.wait_route(name, a_block)
        # real packets across the reflected routes
        assert topology.wait_ping(pods["node-b"], str(pods["node-c"].ip), within=5)
        assert topology.ping(pods["node-c"], str(pods["node-b"].ip), count=2, timeout=1)
        assert topology.ping(pods["node-b"], str(pods["node-a"].ip), count=2, timeout=1)
        # a new block of node-c's is reflected; when node-c stops advertising it
        # (its affinity gone), node-a withdraws it from node-b
        extra = cluster.add_pod("node-c", "pod-c2", ip="198.19.250.5")
        cluster.wait_route("node-b", "198.19.250.0/26")
        assert topology.ping(pods["node-b"], str(extra.ip), count=2, timeout=1)
        key = affinity_key("node-c", ipaddress.ip_network("198.19.250.0/26"))
        cluster.kv.txn([], [Delete(key)])
        wait_until(lambda: "198.19.250.0/26" not in cluster.routes("node-b"), 30,
                   "node-c's block withdrawn from node-b through node-a")
    finally:
        cluster.close()
