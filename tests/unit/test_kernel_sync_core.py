"""Unit tests for KernelSync over a fake kernel (no root): mark-and-sweep,
restart without churn, retries, persistence on close."""

from __future__ import annotations

import dataclasses
import errno
from collections.abc import Callable
from typing import Any

from pybgp.kernel_sync.desired import RTPROT_STATIC, KRoute, NextHop, Plan, blackhole, via
from pybgp.kernel_sync.netlink import ApplyResult, RouteError
from pybgp.kernel_sync.sync import KernelSync


class FakeKernel:
    """A route table keyed like the kernel's (prefix, table, metric), any protocol."""

    def __init__(self, routes: list[KRoute] = ()) -> None:  # type: ignore[assignment]
        self.routes: dict[tuple[str, int, int], KRoute] = {}
        for r in routes:
            self.routes[(r.prefix, r.table, r.metric)] = r
        self.writes: list[tuple[str, KRoute]] = []
        self.fail: set[str] = set()  # prefixes whose writes fail with ENETUNREACH
        self.dumps = 0
        self.closed = False

    def apply(self, plan: Plan) -> ApplyResult:
        res = ApplyResult()
        for op, route in plan.writes():
            self.writes.append((op, route))
            if route.prefix in self.fail:
                res.errors.append(RouteError(op, route, errno.ENETUNREACH))
                continue
            key = (route.prefix, route.table, route.metric)
            if op == "delete":
                have = self.routes.get(key)
                assert have is None or have.protocol == route.protocol, "deleted a foreign route"
                self.routes.pop(key, None)
            else:
                have = self.routes.get(key)
                assert have is None or have.protocol == route.protocol, "replaced a foreign route"
                self.routes[key] = route
            res.done.append((op, route))
        return res

    def dump_routes(self, protocol: int, table: int = 254, *,
                    keep: Callable[[KRoute], KRoute | str] | None = None,
                    ) -> list[Any]:
        # fresh objects, as netlink decodes them: the kernel holds no Python objects
        self.dumps += 1
        found = [dataclasses.replace(r) for r in self.routes.values()
                 if r.protocol == protocol and r.table == table]
        return list(found) if keep is None else [keep(r) for r in found]

    def ifname(self, index: int) -> str | int:
        return {2: "eth0"}.get(index, index)

    def close(self) -> None:
        self.closed = True


def kernel_view(k: FakeKernel, protocol: int = 12) -> set[KRoute]:
    return {r for r in k.routes.values() if r.protocol == protocol}


def test_startup_resync_sweeps_only_stale_routes_of_ours() -> None:
    right = via("198.19.1.0/26", "198.18.0.2", dev="eth0")
    wrong = via("198.19.2.0/26", "198.18.0.9", dev="eth0")
    stale = blackhole("198.19.9.0/26")
    foreign = KRoute("198.19.8.0/26", "blackhole", (), RTPROT_STATIC)
    kernel = FakeKernel([right, wrong, stale, foreign])
    ks = KernelSync(kernel)
    fixed = via("198.19.2.0/26", "198.18.0.2", dev="eth0")
    new = blackhole("198.19.3.0/26")
    ks.set_desired([via("198.19.1.0/26", "198.18.0.2"), fixed, new])  # dev left to the kernel
    res = ks.resync()
    assert res.ok
    assert sorted((op, r.prefix) for op, r in kernel.writes) == [
        ("add", "198.19.3.0/26"),
        ("delete", "198.19.9.0/26"),
        ("replace", "198.19.2.0/26"),
    ]
    assert kernel_view(kernel) == {right, fixed, new}
    assert foreign in kernel.routes.values()
    # what was right is known as the desired route (no dumped copy is kept)
    assert ks.actual["198.19.1.0/26"] == ks.desired["198.19.1.0/26"]
    assert not ks.plan()


def test_restart_with_same_desired_writes_nothing() -> None:
    kernel = FakeKernel()
    routes = [via(f"198.19.{i}.0/24", "198.18.0.2") for i in range(50)] + [
        blackhole("198.19.200.0/26")
    ]
    first = KernelSync(kernel)
    first.set_desired(routes)
    first.resync()
    first.close()
    assert kernel.closed and len(kernel_view(kernel)) == 51  # persist: close deleted nothing
    kernel.writes.clear()
    second = KernelSync(kernel)
    second.set_desired(routes)
    assert second.resync().done == []
    assert kernel.writes == []
    assert second.apply().done == [] and kernel.writes == []


def test_apply_writes_only_the_delta() -> None:
    kernel = FakeKernel()
    ks = KernelSync(kernel)
    ks.set_desired([blackhole("198.19.1.0/26"), blackhole("198.19.2.0/26")])
    ks.apply()
    kernel.writes.clear()
    ks.update("198.19.3.0/26", via("198.19.3.0/26", "198.18.0.2"))
    ks.update("198.19.1.0/26", None)
    assert ks.plan().add and ks.plan().delete
    ks.apply()
    assert sorted((op, r.prefix) for op, r in kernel.writes) == [
        ("add", "198.19.3.0/26"),
        ("delete", "198.19.1.0/26"),
    ]
    kernel.writes.clear()
    assert ks.apply().done == [] and kernel.writes == []


def test_failed_writes_are_reported_and_retried() -> None:
    kernel = FakeKernel()
    kernel.fail.add("198.19.5.0/24")
    ks = KernelSync(kernel)
    ks.set_desired([via("198.19.5.0/24", "198.18.0.2"), blackhole("198.19.6.0/26")])
    res = ks.apply()
    assert [e.route.prefix for e in res.errors] == ["198.19.5.0/24"]
    kernel.fail.clear()
    kernel.writes.clear()
    res = ks.apply()
    assert res.ok and [r.prefix for _, r in kernel.writes] == ["198.19.5.0/24"]


def test_metric_change_adds_new_then_deletes_old_and_tracks_actual() -> None:
    kernel = FakeKernel()
    ks = KernelSync(kernel)
    ks.set_desired([via("198.19.5.0/24", "198.18.0.2", metric=10)])
    ks.apply()
    ks.set_desired([via("198.19.5.0/24", "198.18.0.2", metric=20)])
    ks.apply()
    assert kernel_view(kernel) == {via("198.19.5.0/24", "198.18.0.2", metric=20)}
    assert ks.actual["198.19.5.0/24"].metric == 20
    assert not ks.plan()


def test_duplicate_routes_of_ours_are_swept() -> None:
    keep = via("198.19.5.0/24", "198.18.0.2", metric=20)
    dup = via("198.19.5.0/24", "198.18.0.3", metric=10)
    kernel = FakeKernel([dup, keep])
    ks = KernelSync(kernel)
    ks.set_desired([keep])
    assert ks.resync().ok
    assert kernel_view(kernel) == {keep}


def test_desired_ifindex_compared_by_name_and_owner_checked() -> None:
    kernel = FakeKernel([via("198.19.1.0/26", "198.18.0.2", dev="eth0")])
    ks = KernelSync(kernel)
    ks.set_desired([KRoute("198.19.1.0/26", "unicast", (NextHop("198.18.0.2", 2),))])
    ks.resync()
    assert kernel.writes == []
    for bad in (
        blackhole("198.19.1.0/26", protocol=RTPROT_STATIC),
        blackhole("198.19.1.0/26", table=7),
    ):
        try:
            ks.update(bad.prefix, bad)
        except ValueError:
            pass
        else:
            raise AssertionError("foreign route accepted")


def test_lost_acks_request_a_resync() -> None:
    class Lossy(FakeKernel):
        def apply(self, plan: Plan) -> ApplyResult:
            res = super().apply(plan)
            lost = res.done.pop()
            res.errors.append(RouteError(lost[0], lost[1], errno.ENOBUFS))
            return res

    ks = KernelSync(Lossy())
    ks.set_desired([blackhole("198.19.1.0/26"), blackhole("198.19.2.0/26")])
    ks.apply()
    assert ks.needs_resync
    ks.resync()
    assert not ks.needs_resync


def test_first_apply_reads_the_kernel_before_writing() -> None:
    routes = [blackhole("198.19.1.0/26"), via("198.19.2.0/24", "198.18.0.2")]
    kernel = FakeKernel(routes + [blackhole("198.19.9.0/26")])
    ks = KernelSync(kernel)
    ks.set_desired(routes)
    res = ks.apply()  # no explicit resync: still no re-adding of what is there
    assert [(op, r.prefix) for op, r in res.done] == [("delete", "198.19.9.0/26")]
    assert ks.synced


def test_random_changes_failures_and_drift_always_converge() -> None:
    """A model check: random updates (new routes, next-hop and metric changes,
    withdrawals), whole replacements, failing writes, foreign routes and
    drift behind our back. ``actual`` always equals what the fake kernel
    holds, and once writes succeed one apply (after drift, one resync)
    leaves the kernel equal to the desired set; no foreign route is touched."""
    import random

    rnd = random.Random(11)
    prefixes = [f"198.19.{i}.0/26" for i in range(10)]
    gateways = ["198.18.0.2", "198.18.0.3", "198.18.0.4"]
    # (another owner's route for one of our prefixes would make our add fail
    # with EEXIST for good, as in the kernel: that case has its own test)
    foreign = KRoute("198.19.30.0/26", "blackhole", (), RTPROT_STATIC)
    kernel = FakeKernel([foreign])
    ks = KernelSync(kernel)

    def route(prefix: str) -> KRoute:
        kind = rnd.randrange(4)
        if kind == 0:
            return blackhole(prefix)
        return via(prefix, *rnd.sample(gateways, rnd.randrange(1, 3)),
                   metric=rnd.choice([0, 0, 20]))

    def ours() -> dict[str, KRoute]:
        out: dict[str, KRoute] = {}
        for r in kernel.routes.values():
            if r.protocol == 12:
                assert r.prefix not in out, "two routes of ours for one prefix"
                out[r.prefix] = r
        return out

    for step in range(400):
        op = rnd.randrange(10)
        if op < 6:
            prefix = rnd.choice(prefixes)
            ks.update(prefix, None if rnd.random() < 0.3 else route(prefix))
        elif op == 6:
            ks.set_desired([route(p) for p in rnd.sample(prefixes, rnd.randrange(len(prefixes)))])
        elif op == 7:
            kernel.fail = set(rnd.sample(prefixes, 2)) if rnd.random() < 0.5 else set()
        elif op == 8:  # drift: someone deletes or adds a route of ours
            victim = rnd.choice(prefixes)
            key = next((k for k in kernel.routes if k[0] == victim), None)
            if key is not None and kernel.routes[key].protocol == 12:
                del kernel.routes[key]
            elif key is None:
                stray = blackhole(victim)
                kernel.routes[(victim, 254, 0)] = stray
            ks.resync()
        ks.apply()
        known = {p: ks.actual[p] for p in ks.actual}
        assert len(ks.actual) == len(known)
        have = ours()
        assert set(known) == set(have), step
        assert all(known[p].matches(have[p]) and have[p].matches(known[p]) for p in have), step
        if not kernel.fail:
            assert set(have) == set(ks.desired), step
            assert all(ks.desired[p].matches(have[p]) for p in have), step
            assert not ks.plan(), step
        assert kernel.routes[(foreign.prefix, 254, 0)] is foreign


def test_resync_counts_right_routes_and_looks_closer_only_on_drift() -> None:
    """A resync where every desired route is there once reads the kernel once
    and holds none of them; a missing or doubled route makes it read again
    to name it, then repairs exactly that."""
    routes = [via(f"198.19.{i}.0/24", "198.18.0.2") for i in range(20)]
    kernel = FakeKernel(routes)
    ks = KernelSync(kernel)
    ks.set_desired(routes)
    assert ks.resync().ok and kernel.dumps == 1 and kernel.writes == []
    del kernel.routes[("198.19.7.0/24", 254, 0)]  # drift: one went missing
    assert ks.resync().ok and kernel.dumps == 3
    assert kernel.writes == [("add", routes[7])]
    stray = via("198.19.3.0/24", "198.18.0.9", metric=20)  # a second route of ours
    kernel.routes[("198.19.3.0/24", 254, 20)] = stray
    assert ks.resync().ok and kernel.dumps == 5
    assert kernel.writes[1:] == [("delete", stray)]
    assert kernel_view(kernel) == set(routes)


def test_spared_strays_stay_until_spare_says_no() -> None:
    """An owner sharing its mark (the agent with the CNI plugin) spares some
    routes of its own that nothing explains: left in place, known, and deleted
    by the next apply once spare() turns false, without another dump."""
    explained = via("198.19.0.1/32", dev="eth0", protocol=80)
    young = via("198.19.0.2/32", dev="eth0", protocol=80)
    old = via("198.19.0.3/32", dev="eth0", protocol=80)
    kernel = FakeKernel([explained, young, old])
    ks = KernelSync(kernel, protocol=80)
    spared = {"198.19.0.2/32"}
    asked: list[str] = []

    def spare(route: KRoute) -> bool:
        asked.append(route.prefix)
        return route.prefix in spared

    ks.spare = spare
    ks.set_desired([explained])
    assert ks.resync().ok
    assert [(op, r.prefix) for op, r in kernel.writes] == [("delete", "198.19.0.3/32")]
    assert [r.prefix for r in ks.strays()] == ["198.19.0.2/32"]
    assert "198.19.0.1/32" not in asked  # a desired route is never asked about
    kernel.writes.clear()
    assert not ks.apply().done and kernel_view(kernel, 80) == {explained, young}
    # its endpoint arrives: desired now, and already right — nothing is written
    ks.set_desired([explained, young])
    assert not ks.plan() and ks.strays() == []
    ks.set_desired([explained])  # gone again, and no longer spared
    spared.clear()
    dumps = kernel.dumps
    assert [(op, r.prefix) for op, r in ks.apply().done] == [("delete", "198.19.0.2/32")]
    assert kernel.dumps == dumps and kernel_view(kernel, 80) == {explained}
