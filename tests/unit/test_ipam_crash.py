"""Crash consistency: a process dying at any write point leaks no address.

``CrashingKV`` fails the Nth ``txn`` either before it is applied (the process
died before the write) or after (the write happened but the caller never
learnt it: an ambiguous commit, or a crash just after). Recovery is what the
real system does: a new process, the runtime's CNI DEL (release by handle),
and later assignments on the same node.
"""

import ipaddress

import pytest

from pybgp.datastore.kv import Delete
from pybgp.datastore.memory import MemoryKV
from pybgp.errors import DatastoreUnavailable
from pybgp.ipam import IPAM, Pool, check, usage
from pybgp.ipam.audit import AFFINITY_MISMATCH, AFFINITY_PENDING, AFFINITY_WITHOUT_BLOCK
from pybgp.ipam.keys import affinity_key
from pybgp.ipam.records import Affinity

POOL = Pool("198.19.0.0/24")


class CrashingKV:
    def __init__(self, inner: MemoryKV, fail_at: int, after: bool):
        self.inner, self.fail_at, self.after, self.n = inner, fail_at, after, 0

    def get(self, key):
        return self.inner.get(key)

    def list(self, prefix):
        return self.inner.list(prefix)

    def txn(self, checks, ops):
        self.n += 1
        if self.n == self.fail_at:
            if self.after:
                self.inner.txn(checks, ops)
            raise DatastoreUnavailable(f"simulated crash at txn {self.n}")
        return self.inner.txn(checks, ops)

    def watch(self, prefix, start_revision):
        raise NotImplementedError

    def close(self):
        pass


def ipam(store, node="node-a"):
    return IPAM(store, node, block_order="sequential", sleep=lambda s: None)


def in_use(store):
    return sum(r.in_use for r in usage(store, [POOL]).blocks)


def confirmed_blocks(store, node):
    kvs, _ = store.list(f"/calico/ipam/v2/host/{node}/")
    return [
        kv.key.rsplit("/", 1)[1] for kv in kvs if Affinity.decode(kv.value).state == "confirmed"
    ]


# First assignment on a fresh node: pending affinity, block create, confirm, allocate.
CLAIM_AND_ALLOCATE_TXNS = 4


@pytest.mark.parametrize("after", [False, True], ids=["before-commit", "after-commit"])
@pytest.mark.parametrize("fail_at", range(1, CLAIM_AND_ALLOCATE_TXNS + 1))
def test_crash_during_first_assignment_leaks_nothing(fail_at, after):
    store = MemoryKV()
    with pytest.raises(DatastoreUnavailable):
        ipam(CrashingKV(store, fail_at, after)).auto_assign("net.c1", pools=[POOL])

    # Whatever the crash left, nothing is allocated except (for an ambiguous
    # commit of the allocation itself) the one address the handle records.
    assert in_use(store) == (1 if (fail_at, after) == (4, True) else 0)

    restarted = ipam(store)
    restarted.release_by_handle("net.c1")  # the runtime's CNI DEL for the failed ADD
    got = [str(i.ip) for i in restarted.auto_assign("net.c2", pools=[POOL])]
    # .0 if it was never handed out, else .1 (.0 went to the tail of the free list).
    assert got == ["198.19.0.1" if (fail_at, after) == (4, True) else "198.19.0.0"]
    # The interrupted claim was resumed: still one block, confirmed, no second block.
    assert confirmed_blocks(store, "node-a") == ["198.19.0.0-26"]
    assert in_use(store) == 1
    assert check(store, [("net.c2", got, "node-a")]) == []


@pytest.mark.parametrize("after", [False, True], ids=["before-commit", "after-commit"])
def test_crash_during_release_is_all_or_nothing(after):
    store = MemoryKV()
    a = ipam(store)
    got = [str(i.ip) for i in a.auto_assign("net.c1", count=3, pools=[POOL])]
    with pytest.raises(DatastoreUnavailable):
        ipam(CrashingKV(store, 1, after)).release_by_handle("net.c1")
    assert in_use(store) == (0 if after else 3)
    problems = check(store, [] if after else [("net.c1", got, "node-a")])
    assert problems == []
    a.release_by_handle("net.c1")  # DEL retried
    assert in_use(store) == 0 and check(store, []) == []


def test_crash_in_allocation_of_a_multi_block_request_assigns_none():
    store = MemoryKV()
    a = ipam(store)
    a.auto_assign("net.c0", count=60, pools=[POOL])
    # 4 free in block 0, then claim block 1 (3 txns), then ONE allocation txn for all 10.
    with pytest.raises(DatastoreUnavailable):
        ipam(CrashingKV(store, 4, False)).auto_assign("net.c1", count=10, pools=[POOL])
    assert in_use(store) == 60
    assert check(store) == []


def test_stale_pending_claim_is_reported_then_cleaned_when_another_node_won():
    store = MemoryKV()
    # node-a dies right after writing its pending affinity for block 0.
    with pytest.raises(DatastoreUnavailable):
        ipam(CrashingKV(store, 1, True)).auto_assign("net.a1", pools=[POOL])
    kinds = {p.kind for p in check(store)}
    assert kinds == {AFFINITY_WITHOUT_BLOCK}
    # node-b takes block 0 meanwhile.
    ipam(store, "node-b").auto_assign("net.b1", pools=[POOL])
    assert {p.kind for p in check(store, [("net.b1", ["198.19.0.0"], "node-b")])} == {
        AFFINITY_MISMATCH
    }
    # node-a's next assignment drops its stale claim and claims another block.
    got = ipam(store).auto_assign("net.a2", pools=[POOL])
    assert str(got[0].ip) == "198.19.0.64"
    net0 = ipaddress.ip_network("198.19.0.0/26")
    assert store.get(affinity_key("node-a", net0)) is None
    endpoints = [("net.b1", ["198.19.0.0"], "node-b"), ("net.a2", ["198.19.0.64"], "node-a")]
    assert check(store, endpoints) == []


def test_pending_affinity_with_block_is_reported_after_grace():
    store = MemoryKV()
    clock = [1_000_000.0]
    crashing = CrashingKV(store, 3, False)  # dies before confirming
    a = IPAM(crashing, "node-a", block_order="sequential", clock=lambda: clock[0])
    with pytest.raises(DatastoreUnavailable):
        a.auto_assign("net.c1", pools=[POOL])
    assert check(store, now=clock[0] + 5) == []  # a claim may be in progress
    problems = check(store, now=clock[0] + 120)
    assert [p.kind for p in problems] == [AFFINITY_PENDING]
    assert "pending for 120s" in problems[0].message


def test_interrupted_claim_is_resumed_even_at_the_block_limit():
    store = MemoryKV()
    with pytest.raises(DatastoreUnavailable):
        ipam(CrashingKV(store, 2, False)).auto_assign("net.c1", pools=[POOL])  # pending only
    limited = IPAM(store, "node-a", block_order="sequential", max_blocks_per_host=1)
    got = limited.auto_assign("net.c2", pools=[POOL])
    assert str(got[0].ip) == "198.19.0.0"
    assert confirmed_blocks(store, "node-a") == ["198.19.0.0-26"]
    assert check(store, [("net.c2", ["198.19.0.0"], "node-a")]) == []


def test_confirmed_affinity_whose_block_vanished_gets_an_empty_block_again():
    store = MemoryKV()
    a = ipam(store)
    a.auto_assign("net.c1", pools=[POOL])
    a.release_by_handle("net.c1")
    store.txn([], [Delete("/calico/ipam/v2/assignment/ipv4/block/198.19.0.0-26")])
    assert [p.kind for p in check(store)] == [AFFINITY_WITHOUT_BLOCK]
    got = a.auto_assign("net.c2", pools=[POOL])
    assert str(got[0].ip) == "198.19.0.0"
    assert check(store, [("net.c2", ["198.19.0.0"], "node-a")]) == []
