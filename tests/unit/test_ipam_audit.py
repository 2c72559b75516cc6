"""ipam show / check: usage rows and every problem kind check() can report."""

import ipaddress

from pybgp.datastore.kv import Delete, Put
from pybgp.datastore.memory import MemoryKV
from pybgp.ipam import IPAM, Endpoint, Pool, audit, check, usage
from pybgp.ipam.keys import affinity_key, block_key, handle_key
from pybgp.ipam.records import Affinity, Block, Handle

POOL = Pool("198.19.0.0/24", name="p4")
B0 = ipaddress.ip_network("198.19.0.0/26")


def setup():
    store = MemoryKV()
    a = IPAM(store, "node-a", block_order="sequential")
    a.auto_assign("net.c1", count=2, pools=[POOL])  # .0 .1
    a.auto_assign("net.c2", pools=[POOL])  # .2
    eps = [("net.c1", ["198.19.0.0", "198.19.0.1/32"], "node-a"), Endpoint("c2", ("198.19.0.2",))]
    return store, eps


def put(store, key, value):
    store.txn([], [Put(key, value)])


def kinds(problems):
    return sorted(p.kind for p in problems)


def test_clean_state_has_no_problems_and_endpoint_ids_may_be_container_ids():
    store, eps = setup()
    assert check(store, eps) == []
    assert check(store) == []


def test_usage_rows():
    store, _ = setup()
    IPAM(store, "node-b", block_order="sequential").auto_assign("net.b", pools=[POOL])
    u = usage(store, [POOL, Pool("10.0.0.0/24", name="empty")])
    assert [(p.name, p.in_use, p.free, p.blocks) for p in u.pools] == [
        ("p4", 4, 252, 2),
        ("empty", 0, 256, 0),
    ]
    rows = [(b.cidr, b.pool, b.node, b.state, b.in_use, b.free) for b in u.blocks]
    assert rows == [
        ("198.19.0.0/26", "p4", "node-a", "confirmed", 3, 61),
        ("198.19.0.64/26", "p4", "node-b", "confirmed", 1, 63),
    ]


def test_leak_missing_mismatch_and_duplicate():
    store, eps = setup()
    problems = check(store, eps[:1] + [("c9", ["198.19.0.2", "198.19.0.9"], "node-a")])
    assert kinds(problems) == [
        audit.ENDPOINT_HANDLE_MISMATCH,
        audit.MISSING_ALLOCATION,
    ]
    leak = check(store, eps[:1])
    assert kinds(leak) == [audit.LEAKED_ADDRESS]
    assert leak[0].objects[:2] == ("198.19.0.2", "net.c2")
    dup = check(store, eps + [("c3", ["198.19.0.2"], "node-a")])
    assert audit.DUPLICATE_ENDPOINT_ADDRESS in kinds(dup)


def test_leak_after_a_crash_is_visible_by_handle():
    store, eps = setup()
    IPAM(store, "node-a", block_order="sequential").auto_assign("net.dead", pools=[POOL])
    problems = check(store, eps)
    assert [(p.kind, p.objects[1]) for p in problems] == [(audit.LEAKED_ADDRESS, "net.dead")]


def test_tunnel_addresses_are_not_leaks():
    store, eps = setup()
    a = IPAM(store, "node-a", block_order="sequential")
    a.auto_assign("ipip-tunnel-addr-node-a", attrs={"type": "ipipTunnelAddress"}, pools=[POOL])
    assert check(store, eps) == []


def test_handle_count_mismatch_and_missing_handle():
    store, eps = setup()
    put(store, handle_key("net.c1"), Handle({"198.19.0.0/26": 5}).encode())
    store.txn([], [Delete(handle_key("net.c2"))])
    problems = check(store, eps)
    assert kinds(problems) == [audit.HANDLE_COUNT_MISMATCH, audit.HANDLE_MISSING]
    assert (
        "record 5, blocks 2" in problems[0].message or "record 5, blocks 2" in problems[1].message
    )


def test_affinity_problems():
    store, eps = setup()
    store.txn([], [Delete(affinity_key("node-a", B0))])
    assert kinds(check(store, eps)) == [audit.AFFINITY_MISSING]
    put(store, affinity_key("node-a", B0), Affinity("confirmed").encode())
    put(store, affinity_key("node-b", B0), Affinity("confirmed").encode())
    b5 = ipaddress.ip_network("198.19.1.0/26")
    put(store, affinity_key("node-c", b5), Affinity("pending").encode())
    problems = check(store, eps)
    assert kinds(problems) == [audit.AFFINITY_MISMATCH, audit.AFFINITY_WITHOUT_BLOCK]
    assert any("node-b" in p.message and "affine to node-a" in p.message for p in problems)


def test_pending_affinity_without_claim_time_is_reported():
    store, eps = setup()
    raw = Block.decode(store.get(block_key(B0)).value)
    raw.affinity_claim_time = None
    put(store, block_key(B0), raw.encode())
    put(store, affinity_key("node-a", B0), Affinity("pending").encode())
    problems = check(store, eps)
    assert kinds(problems) == [audit.AFFINITY_PENDING]
    assert "unknown time" in problems[0].message


def test_corrupt_block_is_reported():
    store, eps = setup()
    raw = Block.decode(store.get(block_key(B0)).value)
    raw.unallocated.remove(40)
    raw.unallocated.append(1)
    put(store, block_key(B0), raw.encode())
    texts = [p.message for p in check(store, eps) if p.kind == audit.BLOCK_INCONSISTENT]
    assert len(texts) == 2
    assert any("198.19.0.40" in t for t in texts) and any(
        "both allocated and free" in t for t in texts
    )
    put(store, block_key(ipaddress.ip_network("198.19.0.64/26")), b"{not json")
    assert audit.BLOCK_INCONSISTENT in kinds(check(store, eps))


def test_every_problem_kind_is_documented():
    assert len(set(audit.PROBLEM_KINDS)) == 11
