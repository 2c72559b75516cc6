"""Unit tests for the pure desired-state core of kernel_sync (no root, no I/O)."""

from __future__ import annotations

import pytest

from pybgp.kernel_sync.desired import (
    RTPROT_BIRD,
    RTPROT_STATIC,
    KRoute,
    NextHop,
    Plan,
    blackhole,
    diff,
    index,
    via,
)

P = RTPROT_BIRD


def test_kroute_normalises_prefix_and_ipv6_metric() -> None:
    assert KRoute("198.19.0.5", "blackhole").prefix == "198.19.0.5/32"
    assert KRoute("2001:db8:0::5", "blackhole").prefix == "2001:db8::5/128"
    assert blackhole("2001:db8::/64").metric == 1024
    assert blackhole("198.19.0.0/26").metric == 0
    assert NextHop("2001:0db8::0001").gateway == "2001:db8::1"


@pytest.mark.parametrize(
    "make",
    [
        lambda: KRoute("198.19.0.1/26", "blackhole"),  # host bits set
        lambda: KRoute("198.19.0.0/26", "unicast"),  # no next hop
        lambda: KRoute("198.19.0.0/26", "blackhole", (NextHop("198.18.0.1"),)),
        lambda: KRoute("198.19.0.0/26", "bogus"),  # type: ignore[arg-type]
        lambda: via("198.19.0.0/26", "2001:db8::1"),  # family mismatch
        lambda: KRoute("198.19.0.0/26", "blackhole", protocol=0),
        lambda: NextHop(),
        lambda: NextHop("198.18.0.1", weight=0),
    ],
)
def test_kroute_rejects_invalid(make: object) -> None:
    with pytest.raises(ValueError):
        make()  # type: ignore[operator]


def test_via_builds_ecmp_and_device_routes() -> None:
    r = via("198.19.1.0/26", "198.18.0.2", "198.18.0.3", dev="eth0", onlink=True)
    assert [nh.gateway for nh in r.nexthops] == ["198.18.0.2", "198.18.0.3"]
    assert all(nh.dev == "eth0" and nh.onlink for nh in r.nexthops)
    d = via("198.19.1.7/32", dev="cali0")
    assert d.nexthops == (NextHop(None, "cali0"),)


def test_diff_empty_when_equal() -> None:
    routes = index([via("198.19.1.0/26", "198.18.0.2"), blackhole("198.19.2.0/26")])
    assert not diff(routes, dict(routes), P)
    assert len(diff(routes, dict(routes), P)) == 0


def test_diff_adds_missing_and_deletes_stale_of_ours() -> None:
    desired = index([via("198.19.1.0/26", "198.18.0.2")])
    stale = blackhole("198.19.9.0/26")
    plan = diff(desired, index([stale]), P)
    assert plan.add == [desired["198.19.1.0/26"]]
    assert plan.replace == []
    assert plan.delete == [stale]


def test_diff_never_touches_other_protocols() -> None:
    foreign = KRoute("198.19.1.0/26", "unicast", (NextHop("198.18.0.9"),), RTPROT_STATIC)
    foreign2 = KRoute("198.19.7.0/26", "blackhole", (), RTPROT_STATIC)
    desired = index([via("198.19.1.0/26", "198.18.0.2")])
    plan = diff(desired, index([foreign, foreign2]), P)
    assert plan.add == [desired["198.19.1.0/26"]]  # beside the foreign one, not over it
    assert plan.replace == [] and plan.delete == []
    for _op, route in plan.writes():
        assert route.protocol == P


def test_diff_rejects_desired_of_other_protocol() -> None:
    with pytest.raises(ValueError):
        diff(index([blackhole("198.19.1.0/26", protocol=RTPROT_STATIC)]), {}, P)


def test_diff_replaces_changed_next_hop_and_kind() -> None:
    old = via("198.19.1.0/26", "198.18.0.2")
    new = via("198.19.1.0/26", "198.18.0.3")
    assert diff(index([new]), index([old]), P).replace == [new]
    bh = blackhole("198.19.1.0/26")
    assert diff(index([bh]), index([old]), P).replace == [bh]


def test_diff_ecmp_is_order_insensitive_but_count_sensitive() -> None:
    a = via("198.19.1.0/26", "198.18.0.2", "198.18.0.3")
    b = via("198.19.1.0/26", "198.18.0.3", "198.18.0.2")
    assert not diff(index([a]), index([b]), P)
    one = via("198.19.1.0/26", "198.18.0.2")
    assert diff(index([a]), index([one]), P).replace == [a]
    dup = via("198.19.1.0/26", "198.18.0.2", "198.18.0.2")
    assert diff(index([a]), index([dup]), P).replace == [a]


def test_diff_desired_without_dev_matches_kernel_resolved_dev() -> None:
    want = via("198.19.1.0/26", "198.18.0.2")
    have = KRoute("198.19.1.0/26", "unicast", (NextHop("198.18.0.2", "eth0"),))
    assert not diff(index([want]), index([have]), P)
    pinned = via("198.19.1.0/26", "198.18.0.2", dev="eth1")
    assert diff(index([pinned]), index([have]), P).replace == [pinned]


def test_diff_onlink_and_weight_matter() -> None:
    have = via("198.19.1.0/26", "198.18.0.2", dev="eth0")
    onlink = via("198.19.1.0/26", "198.18.0.2", dev="eth0", onlink=True)
    assert diff(index([onlink]), index([have]), P).replace == [onlink]
    heavy = KRoute("198.19.1.0/26", "unicast", (NextHop("198.18.0.2", "eth0", weight=3),))
    assert diff(index([heavy]), index([have]), P).replace == [heavy]


def test_diff_metric_or_table_change_is_add_then_delete() -> None:
    old = via("198.19.1.0/26", "198.18.0.2", metric=10)
    new = via("198.19.1.0/26", "198.18.0.2", metric=20)
    plan = diff(index([new]), index([old]), P)
    assert plan.add == [new] and plan.delete == [old] and plan.replace == []
    assert [op for op, _ in plan.writes()] == ["add", "delete"]  # make before break


def test_plan_writes_order() -> None:
    a, r, d = blackhole("198.19.1.0/26"), blackhole("198.19.2.0/26"), blackhole("198.19.3.0/26")
    plan = Plan(add=[a], replace=[r], delete=[d])
    assert plan.writes() == [("add", a), ("replace", r), ("delete", d)]
    assert len(plan) == 3 and plan
