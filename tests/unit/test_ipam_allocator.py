"""IPAM allocation semantics over MemoryKV: order, limits, borrowing, release, races."""

import ipaddress
import json
import threading
import time

import pytest

from pybgp.datastore.kv import Put
from pybgp.datastore.memory import MemoryKV
from pybgp.errors import ConflictError, IPAMError, PoolExhaustedError, ValidationError
from pybgp.ipam import IPAM, Pool, check, usage
from pybgp.ipam.keys import CONFIG_KEY, affinity_key, block_key, handle_key
from pybgp.ipam.pools import candidate_blocks
from pybgp.ipam.records import Affinity, Block, Handle

POOL = Pool("198.19.0.0/24", name="default-ipv4-ippool")  # four /26 blocks


def ipam(store, node="node-a", **kw):
    kw.setdefault("block_order", "sequential")
    kw.setdefault("sleep", lambda s: None)
    return IPAM(store, node, **kw)


def ips(ifaces):
    return [str(i.ip) for i in ifaces]


def block_of(store, cidr):
    kv = store.get(block_key(ipaddress.ip_network(cidr)))
    return Block.decode(kv.value)


def handle_of(store, h):
    kv = store.get(handle_key(h))
    return None if kv is None else Handle.decode(kv.value).block


def test_first_assignment_claims_a_block_two_phase_and_returns_block_prefix():
    store = MemoryKV()
    got = ipam(store).auto_assign("net.c1", attrs={"pod": "p1", "namespace": "ns"}, pools=[POOL])
    assert [str(i) for i in got] == ["198.19.0.0/26"]
    net = ipaddress.ip_network("198.19.0.0/26")
    aff = Affinity.decode(store.get(affinity_key("node-a", net)).value)
    assert aff.state == "confirmed"
    b = block_of(store, "198.19.0.0/26")
    assert b.affinity == "host:node-a" and b.affinity_claim_time
    sec = b.attributes[0].secondary
    assert b.attributes[0].handle_id == "net.c1"
    assert sec["node"] == "node-a" and sec["pod"] == "p1" and sec["namespace"] == "ns"
    assert sec["timestamp"].endswith("+0000 UTC")
    assert handle_of(store, "net.c1") == {"198.19.0.0/26": 1}
    # pending affinity, block create, confirm, allocation: four transactions
    assert store.txn_count == 4


def test_hashed_order_starts_at_the_nodes_own_block():
    store = MemoryKV()
    got = IPAM(store, "node-x").auto_assign("h", pools=[POOL])
    first = next(candidate_blocks(POOL, "node-x"))
    assert got[0].network == first


def test_64_per_block_then_a_second_block_and_fifo_reuse():
    store = MemoryKV()
    a = ipam(store)
    first = [ips(a.auto_assign(f"net.c{i}", pools=[POOL]))[0] for i in range(64)]
    assert first == [f"198.19.0.{i}" for i in range(64)]
    assert ips(a.auto_assign("net.c64", pools=[POOL])) == ["198.19.0.64"]
    # Freed addresses go to the tail: the first block is full, so they come back in release order.
    assert a.release_ips(["198.19.0.5", "198.19.0.2"]) == ["198.19.0.5", "198.19.0.2"]
    assert ips(a.auto_assign("net.x", count=2, pools=[POOL])) == ["198.19.0.5", "198.19.0.2"]


def test_fifo_release_goes_to_the_tail_of_the_free_list():
    store = MemoryKV()
    a = ipam(store)
    a.auto_assign("h1", count=3, pools=[POOL])  # .0 .1 .2
    a.release_ips(["198.19.0.1"])
    nxt = ips(a.auto_assign("h2", count=62, pools=[POOL]))
    assert nxt[0] == "198.19.0.3" and nxt[-1] == "198.19.0.1"


def test_multi_address_request_spans_blocks_in_one_call():
    store = MemoryKV()
    got = ipam(store).auto_assign("h", count=70, pools=[POOL])
    assert len(set(ips(got))) == 70
    assert handle_of(store, "h") == {"198.19.0.0/26": 64, "198.19.0.64/26": 6}


def test_block_limit_then_borrow_when_not_strict():
    store = MemoryKV()
    b = ipam(store, "node-b")
    b.auto_assign("b.1", pools=[POOL])  # node-b owns 198.19.0.0/26
    a = ipam(store, "node-a", max_blocks_per_host=1)
    got = ips(a.auto_assign("a.1", count=64, pools=[POOL]))
    assert all(ipaddress.ip_address(x) in ipaddress.ip_network("198.19.0.64/26") for x in got)
    borrowed = ips(a.auto_assign("a.2", pools=[POOL]))
    assert borrowed == ["198.19.0.1"]  # from node-b's block
    blk = block_of(store, "198.19.0.0/26")
    assert blk.affinity == "host:node-b"
    assert blk.attributes[-1].secondary["node"] == "node-a"
    rows = {r.cidr: r for r in usage(store, [POOL]).blocks}
    assert rows["198.19.0.0/26"].borrowed == 1 and rows["198.19.0.64/26"].free == 0


def test_block_limit_with_strict_affinity_is_exhausted_with_a_clear_message():
    store = MemoryKV()
    ipam(store, "node-b").auto_assign("b.1", pools=[POOL])
    store.txn([], [Put(CONFIG_KEY, b'{"strict_affinity":true,"auto_allocate_blocks":true}')])
    a = ipam(store, "node-a", max_blocks_per_host=1)
    a.auto_assign("a.1", count=64, pools=[POOL])
    with pytest.raises(PoolExhaustedError) as exc:
        a.auto_assign("a.2", pools=[POOL])
    msg = str(exc.value)
    assert "node-a" in msg and "limit is 1" in msg and "strict affinity" in msg
    assert handle_of(store, "a.2") is None


def test_config_record_limit_and_auto_allocate():
    store = MemoryKV()
    store.txn([], [Put(CONFIG_KEY, json.dumps({"maxBlocksPerHost": 1}).encode())])
    a = ipam(store)
    # Present record without auto_allocate_blocks means false (Go semantics): no claim.
    with pytest.raises(PoolExhaustedError, match="auto_allocate_blocks is off"):
        a.auto_assign("h", pools=[POOL])
    store.txn([], [Put(CONFIG_KEY, b'{"auto_allocate_blocks":true,"maxBlocksPerHost":1}')])
    assert a.block_limit(a.config()) == 1
    a.auto_assign("h", count=64, pools=[POOL])
    with pytest.raises(PoolExhaustedError, match="other nodes' blocks"):
        a.auto_assign("h2", pools=[POOL])  # nothing to borrow either


def test_whole_pool_exhausted_assigns_nothing():
    store = MemoryKV()
    a = ipam(store)
    a.auto_assign("h1", count=250, pools=[POOL])
    with pytest.raises(PoolExhaustedError):
        a.auto_assign("h2", count=10, pools=[POOL])
    assert handle_of(store, "h2") is None
    assert ips(a.auto_assign("h3", count=6, pools=[POOL]))[-1] == "198.19.0.255"


def test_release_by_handle_is_all_or_none_and_idempotent():
    store = MemoryKV()
    a = ipam(store)
    got = ips(a.auto_assign("h1", count=3, pools=[POOL]))
    a.auto_assign("h2", pools=[POOL])
    assert sorted(a.release_by_handle("h1")) == sorted(got)
    assert handle_of(store, "h1") is None
    assert a.release_by_handle("h1") == []
    assert a.release_by_handle("never-seen") == []
    assert handle_of(store, "h2") == {"198.19.0.0/26": 1}
    assert check(store, [("h2", ["198.19.0.3"], "node-a")]) == []


def test_handle_counts_follow_release_ips():
    store = MemoryKV()
    a = ipam(store)
    got = ips(a.auto_assign("h", count=3, pools=[POOL]))
    assert a.release_ips([got[0], "198.19.0.200", "10.9.9.9"]) == [got[0]]
    assert handle_of(store, "h") == {"198.19.0.0/26": 2}
    assert a.release_ips(got) == got[1:]
    assert handle_of(store, "h") is None
    assert a.release_ips(got) == []


def test_one_handle_holds_v4_and_v6():
    store = MemoryKV()
    v6 = Pool("2001:db8::/120")
    a = ipam(store)
    a.auto_assign("h", pools=[POOL, v6], ip_version=4)
    got6 = a.auto_assign("h", pools=[POOL, v6], ip_version=6)
    assert [str(i) for i in got6] == ["2001:db8::/122"]
    assert handle_of(store, "h") == {"198.19.0.0/26": 1, "2001:db8::/122": 1}
    assert sorted(a.release_by_handle("h")) == ["198.19.0.0", "2001:db8::"]
    with pytest.raises(ValidationError, match="ip_version"):
        a.auto_assign("h", pools=[POOL, v6])


def test_ipv6_blocks_of_122():
    store = MemoryKV()
    pool = Pool("2001:db8::/120")
    a = ipam(store)
    got = a.auto_assign("h", count=65, pools=[pool])
    assert str(got[0]) == "2001:db8::/122" and str(got[64]) == "2001:db8::40/122"
    assert store.get("/calico/ipam/v2/assignment/ipv6/block/2001:db8::-122") is not None
    assert store.get("/calico/ipam/v2/host/node-a/ipv6/block/2001:db8::40-122") is not None
    assert check(store, [("h", ips(got), "node-a")]) == []


def test_requested_pools_and_node_selector():
    store = MemoryKV()
    other = Pool("10.5.0.0/24", name="other")
    a = ipam(store)
    assert ips(a.auto_assign("h", pools=[POOL, other], requested_pools=["other"])) == ["10.5.0.0"]
    assert ips(a.auto_assign("h2", pools=[POOL, other], requested_pools=["10.5.0.0/24"])) == [
        "10.5.0.1"
    ]
    with pytest.raises(IPAMError, match="does not exist"):
        a.auto_assign("h3", pools=[POOL], requested_pools=["nope"])
    picky = Pool("10.6.0.0/24", name="picky", node_selector="rack == 'r1'")

    def matches(selector, labels):
        return selector in ("", "all()") or labels.get("rack") == "r1"

    b = ipam(store, "node-b", node_labels={"rack": "r2"}, matches=matches)
    with pytest.raises(IPAMError, match="no enabled IPv4 pool selects node node-b"):
        b.auto_assign("h4", pools=[picky])
    c = ipam(store, "node-c", node_labels={"rack": "r1"}, matches=matches)
    assert ips(c.auto_assign("h5", pools=[picky])) == ["10.6.0.0"]


def test_assign_specific_ip():
    store = MemoryKV()
    a = ipam(store)
    got = a.assign_ip("198.19.0.130", "h1", pools=[POOL])
    assert str(got) == "198.19.0.130/26"
    aff = store.get(affinity_key("node-a", ipaddress.ip_network("198.19.0.128/26")))
    assert Affinity.decode(aff.value).state == "confirmed"
    assert a.assign_ip("198.19.0.130", "h1", pools=[POOL]) == got  # same handle: idempotent
    with pytest.raises(IPAMError, match="already assigned .*h1"):
        a.assign_ip("198.19.0.130", "h2", pools=[POOL])
    with pytest.raises(IPAMError, match="not in any enabled IP pool"):
        a.assign_ip("10.0.0.1", "h2", pools=[POOL])
    with pytest.raises(IPAMError, match="not in any enabled IP pool"):
        a.assign_ip("198.19.0.1", "h2", pools=[Pool("198.19.0.0/24", disabled=True)])
    # Another node may take a specific address in our block unless affinity is strict.
    b = ipam(store, "node-b")
    b.assign_ip("198.19.0.131", "h3", pools=[POOL])
    strict = ipam(store, "node-b", strict_affinity=True)
    with pytest.raises(IPAMError, match="strict affinity"):
        strict.assign_ip("198.19.0.132", "h4", pools=[POOL])
    assert handle_of(store, "h1") == {"198.19.0.128/26": 1}
    assert sorted(a.release_by_handle("h1")) == ["198.19.0.130"]


def test_gives_up_after_retries_with_a_clear_error():
    class AlwaysConflict(MemoryKV):
        def txn(self, checks, ops):
            raise ConflictError("someone else", key="x")

    a = ipam(AlwaysConflict(), retries=3)
    with pytest.raises(IPAMError, match="3 attempts lost compare-and-swap races"):
        a.auto_assign("h", pools=[POOL])


def test_bad_input():
    a = ipam(MemoryKV())
    with pytest.raises(ValidationError):
        a.auto_assign("bad/handle", pools=[POOL])
    with pytest.raises(ValidationError):
        a.auto_assign("h", count=0, pools=[POOL])
    with pytest.raises(ValidationError):
        a.release_ips(["not-an-ip"])
    with pytest.raises(ValidationError):
        IPAM(MemoryKV(), "")


class InterleavingKV(MemoryKV):
    """MemoryKV that yields the GIL on every read, so racing threads really interleave."""

    def __init__(self):
        super().__init__()
        self.conflicts = 0

    def get(self, key):
        time.sleep(0.0005)
        return super().get(key)

    def list(self, prefix):
        time.sleep(0.0005)
        return super().list(prefix)

    def txn(self, checks, ops):
        try:
            return super().txn(checks, ops)
        except ConflictError:
            self.conflicts += 1
            raise


@pytest.mark.parametrize("shared", [True, False], ids=["instance-per-node", "instance-per-call"])
@pytest.mark.parametrize("order", ["sequential", "hashed"])
def test_two_nodes_racing_never_share_an_address_or_a_block(order, shared):
    store = InterleavingKV()
    results: dict[str, list[str]] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(50)
    per_node = {n: IPAM(store, n, block_order=order) for n in ("node-a", "node-b")}

    def worker(node, i):
        try:
            inst = per_node[node] if shared else IPAM(store, node, block_order=order, seed=i)
            start.wait()
            h = f"net.{node}-{i}"
            results[h] = ips(inst.auto_assign(h, pools=[POOL]))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [
        threading.Thread(target=worker, args=(node, i))
        for i in range(25)
        for node in ("node-a", "node-b")
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.conflicts > 0  # the race was real
    every = [ip for got in results.values() for ip in got]
    assert len(every) == 50 and len(set(every)) == 50
    # Every block has exactly one owner, and that owner's affinity is the only one.
    kvs, _ = store.list("/calico/ipam/v2/host/")
    owners: dict[str, list[str]] = {}
    for kv in kvs:
        node = kv.key.split("/")[5]
        cidr = kv.key.rsplit("/", 1)[1]
        owners.setdefault(cidr, []).append(node)
        assert Affinity.decode(kv.value).state == "confirmed"
    for cidr, nodes in owners.items():
        assert len(nodes) == 1
        assert block_of(store, cidr.replace("-", "/")).affinity == f"host:{nodes[0]}"
    # Each address sits in a block affine to the node that asked (no borrowing was needed).
    for h, got in results.items():
        node = h.split(".", 1)[1].rsplit("-", 1)[0]
        net = ipaddress.ip_network(f"{got[0]}/26", strict=False)
        assert block_of(store, str(net)).affinity == f"host:{node}"
    endpoints = [(h, got, "") for h, got in results.items()]
    assert check(store, endpoints) == []
