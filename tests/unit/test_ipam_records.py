"""IPAM keys, JSON records and pure block operations (no store)."""

import ipaddress
import json

import pytest

from pybgp.errors import IPAMError, ValidationError
from pybgp.ipam import block as blk
from pybgp.ipam.keys import (
    affinity_key,
    block_key,
    handle_key,
    parse_affinity_key,
    parse_block_key,
    parse_handle_key,
)
from pybgp.ipam.pools import Pool, candidate_blocks, match_all_only, usable_pools
from pybgp.ipam.records import Affinity, Block, Handle, IPAMConfig

V4 = ipaddress.ip_network("198.19.0.0/26")
V6 = ipaddress.ip_network("2001:db8::/122")


def test_keys_match_calico_etcd_layout():
    assert block_key(V4) == "/calico/ipam/v2/assignment/ipv4/block/198.19.0.0-26"
    assert block_key(V6) == "/calico/ipam/v2/assignment/ipv6/block/2001:db8::-122"
    assert affinity_key("n1", V4) == "/calico/ipam/v2/host/n1/ipv4/block/198.19.0.0-26"
    assert affinity_key("n1", V6) == "/calico/ipam/v2/host/n1/ipv6/block/2001:db8::-122"
    assert handle_key("k8s-pod-network.abc") == "/calico/ipam/v2/handle/k8s-pod-network.abc"
    for net in (V4, V6):
        assert parse_block_key(block_key(net)) == net
        assert parse_affinity_key(affinity_key("n1", net)) == ("n1", net)
    assert parse_handle_key("/calico/ipam/v2/handle/h1") == "h1"
    assert parse_block_key("/calico/ipam/v2/assignment/ipv4/block/junk") is None
    assert parse_affinity_key("/calico/ipam/v2/host/n1/ipv6/block/198.19.0.0-26") is None
    with pytest.raises(ValidationError):
        handle_key("a/b")


def test_block_json_shape_is_calicos():
    b = blk.new_block(V4, "n1", claim_time="2026-01-01T00:00:00Z", sequence=7)
    b, ords = blk.take(b, 2, "h1", {"node": "n1", "pod": "p"})
    obj = json.loads(b.encode())
    assert list(obj) == [
        "cidr",
        "affinity",
        "affinity_claim_time",
        "allocations",
        "unallocated",
        "attributes",
        "sequenceNumber",
        "sequenceNumberForAllocation",
        "deleted",
    ]
    assert obj["cidr"] == "198.19.0.0/26" and obj["affinity"] == "host:n1"
    assert obj["allocations"][:3] == [0, 0, None] and len(obj["allocations"]) == 64
    assert obj["unallocated"][:2] == [2, 3] and len(obj["unallocated"]) == 62
    assert obj["attributes"] == [{"handle_id": "h1", "secondary": {"node": "n1", "pod": "p"}}]
    assert obj["sequenceNumberForAllocation"] == {"0": 8, "1": 8}
    assert Block.decode(b.encode()) == b
    assert ords == [0, 1]


def test_block_decode_keeps_unknown_fields_and_go_nulls():
    raw = json.dumps(
        {
            "cidr": "198.19.0.0/30",
            "affinity": None,
            "hostAffinity": "old",
            "allocations": [0, None, None, None],
            "unallocated": [1, 2, 3],
            "attributes": [{"handle_id": "h", "secondary": None, "alternate": {"pod": "x"}}],
            "sequenceNumber": 1,
            "sequenceNumberForAllocation": None,
            "deleted": False,
        }
    ).encode()
    b = Block.decode(raw)
    assert b.extra == {"hostAffinity": "old"}
    assert b.attributes[0].extra == {"alternate": {"pod": "x"}}
    again = json.loads(b.encode())
    assert again["hostAffinity"] == "old" and again["attributes"][0]["alternate"] == {"pod": "x"}
    with pytest.raises(ValidationError):
        Block.decode(b'{"cidr": "198.19.0.0/30", "allocations": [null]}')
    with pytest.raises(ValidationError):
        Block.decode(b"not json")


def test_affinity_handle_config_json():
    assert json.loads(Affinity("pending").encode()) == {"state": "pending", "deleted": False}
    assert Affinity.decode(b"{}").state == "confirmed"
    h = Handle({"198.19.0.0/26": 2})
    assert json.loads(h.encode()) == {"block": {"198.19.0.0/26": 2}, "deleted": False}
    assert Handle.decode(h.encode()).total() == 2
    # A present config record decodes as Go does: absent booleans are false.
    cfg = IPAMConfig.decode(b'{"strict_affinity": true, "maxBlocksPerHost": 4}')
    assert cfg == IPAMConfig(
        strict_affinity=True, auto_allocate_blocks=False, max_blocks_per_host=4
    )
    assert json.loads(IPAMConfig().encode()) == {"auto_allocate_blocks": True}


def test_block_fifo_release_and_attribute_cleanup():
    b = blk.new_block(ipaddress.ip_network("10.0.0.0/29"), "n1", claim_time=None, sequence=0)
    b, _ = blk.take(b, 3, "h1", {"node": "n1"})
    b, _ = blk.take(b, 2, "h2", {"node": "n1"})
    assert b.unallocated == [5, 6, 7]
    b2, freed, per = blk.release(b, [1, 0, 6])
    assert freed == [1, 0] and per == {"h1": 2}
    assert b2.unallocated == [5, 6, 7, 1, 0]
    b3, freed = blk.release_handle(b2, "h1")
    assert freed == [2]
    assert [a.handle_id for a in b3.attributes] == ["h2"]
    assert b3.allocations[3] == 0 and b3.allocations[4] == 0
    assert blk.problems(b3) == []
    b4, got = blk.take(b3, 10, "h3", {})
    assert got == [5, 6, 7, 1, 0, 2]
    assert b3.unallocated == [5, 6, 7, 1, 0, 2]  # the input was not mutated
    with pytest.raises(IPAMError, match="already assigned"):
        blk.take_ordinal(b4, 3, "h9", {})
    with pytest.raises(IPAMError):
        blk.ordinal_of(b4, ipaddress.ip_address("10.0.0.9"))


def test_block_problems_detects_corruption():
    b = blk.new_block(ipaddress.ip_network("10.0.0.0/30"), "n1", claim_time=None, sequence=0)
    b, _ = blk.take(b, 1, "h", {})
    b.unallocated = [0, 2, 2]
    texts = " | ".join(blk.problems(b))
    assert "duplicates" in texts and "both allocated and free" in texts and "missing" in texts


def test_pool_validation_and_selection():
    p = Pool("198.19.0.0/24", name="p1")
    assert p.block_size == 26 and p.block_count == 4
    assert Pool("2001:db8::/64").block_size == 122
    with pytest.raises(ValidationError, match="block size"):
        Pool("198.19.0.0/24", block_size=33)
    with pytest.raises(ValidationError, match="smaller"):
        Pool("198.19.0.0/28")
    assert [str(n) for n in candidate_blocks(p, "x", "sequential")][:2] == [
        "198.19.0.0/26",
        "198.19.0.64/26",
    ]
    hashed = list(candidate_blocks(p, "node-a"))
    assert sorted(map(str, hashed)) == sorted(map(str, candidate_blocks(p, "y", "sequential")))
    r = Pool.from_resource(
        {"metadata": {"name": "r"}, "spec": {"cidr": "10.1.0.0/16", "blockSize": 28}}
    )
    assert (r.name, r.block_size, r.disabled) == ("r", 28, False)
    off = Pool("10.2.0.0/24", disabled=True, name="off")
    sel = Pool("10.3.0.0/24", node_selector="zone == 'a'", name="sel")
    assert usable_pools([p, off], 4, {}, match_all_only) == [p]
    with pytest.raises(IPAMError, match="does not exist, or is not enabled"):
        usable_pools([p, off], 4, {}, match_all_only, ["off"])
    assert usable_pools([p, off], 4, {}, match_all_only, ["198.19.0.0/24"]) == [p]
    with pytest.raises(ValidationError, match="selector"):
        usable_pools([sel], 4, {}, match_all_only)

    def zone_a(selector: str, labels: dict) -> bool:
        return selector == "" or labels.get("zone") == "a"

    assert usable_pools([p, sel], 4, {"zone": "a"}, zone_a) == [p, sel]
    assert usable_pools([p, sel], 4, {"zone": "b"}, zone_a) == [p]
