"""The route race at pod creation, decided without a kernel: the CNI plugin's
``<ip>/32 dev cali… proto 80`` route, written before the pod's endpoint, is
spared by a resync for a grace period, never flapped when the endpoint
arrives, and swept when nothing explains it in time. Time is a number."""

from __future__ import annotations

from test_kernel_sync_core import FakeKernel

from pybgp.agent.routegrace import CLEANUP_GRACE, RouteGrace
from pybgp.kernel_sync.desired import RTPROT_FELIX, KRoute, via
from pybgp.kernel_sync.sync import KernelSync

LINKS = {"eth0": 2, "calinew": 7, "caliold": 8}


def grace_at(g: RouteGrace, now: float, endpoints=(), links=None) -> RouteGrace:
    g.observe(LINKS if links is None else links, set(endpoints), now)
    return g


def test_a_route_with_no_endpoint_is_spared_for_the_grace_period():
    g = grace_at(RouteGrace(10.0), 100.0)
    assert g.spare("198.19.0.5/32", "calinew")
    assert g.take_new() == [("198.19.0.5/32", "calinew")] and g.take_new() == []
    assert g.settle([("198.19.0.5/32", "calinew")]) == 110.0  # apply again then
    assert grace_at(g, 109.9).spare("198.19.0.5/32", "calinew")
    assert g.take_new() == []  # not new any more
    assert not grace_at(g, 110.0).spare("198.19.0.5/32", "calinew")
    assert g.settle([]) is None and g.routes == {}  # deleted: forgotten


def test_the_clock_is_the_routes_own_when_the_interface_has_no_endpoint():
    g = grace_at(RouteGrace(10.0), 0.0)  # both interfaces seen at 0
    grace_at(g, 50.0)
    assert g.spare("198.19.0.6/32", "caliold")  # an old interface, a route new at 50
    assert g.settle([("198.19.0.6/32", "caliold")]) == 60.0


def test_with_an_endpoint_only_a_new_interface_is_spared():
    """Felix's rule: every interface gets the grace period after it is first
    seen (a pod re-created under the same name can meet its old endpoint)."""
    g = grace_at(RouteGrace(10.0), 0.0)
    grace_at(g, 30.0, endpoints={"caliold", "calinew2"},
             links={**LINKS, "calinew2": 9})
    assert g.spare("198.19.0.7/32", "calinew2")  # first seen at 30
    assert not g.spare("198.19.0.8/32", "caliold")  # its endpoint wants other routes
    assert g.take_new() == [("198.19.0.7/32", "calinew2")]
    assert g.settle([("198.19.0.7/32", "calinew2"), ("198.19.0.8/32", "caliold")]) == 40.0


def test_never_spared_off_a_workload_interface_or_after_it_went():
    g = grace_at(RouteGrace(10.0), 0.0)
    assert not g.spare("198.19.0.9/32", "eth0")  # not a workload interface
    assert not g.spare("198.19.0.9/32", 42)  # an index the kernel did not name
    assert not g.spare("198.19.0.9/32", None)  # a route via a gateway
    assert not g.spare("198.19.0.9/32", "caligone")
    assert g.spare("198.19.0.5/32", "calinew")
    # the interface is deleted and made again under its name: a new grace period
    grace_at(g, 8.0, links={**LINKS, "calinew": 70})
    assert g.ifaces[("calinew", 70)] == 8.0 and ("calinew", 7) not in g.ifaces
    assert g.spare("198.19.0.5/32", "calinew")
    assert g.take_new() == [("198.19.0.5/32", "calinew"), ("198.19.0.5/32", "calinew")]
    assert g.settle([("198.19.0.5/32", "calinew")]) == 18.0


def workload(prefix: str, dev: str) -> KRoute:
    return via(prefix, dev=dev, protocol=RTPROT_FELIX)


def agent_routes(kernel: FakeKernel, g: RouteGrace) -> KernelSync:
    ks = KernelSync(kernel, protocol=RTPROT_FELIX)
    ks.spare = lambda r: g.spare(r.prefix, r.nexthops[0].dev)
    return ks


def test_the_race_a_resync_between_the_cni_route_and_the_endpoint():
    """The CNI plugin wrote the route; the endpoint is not in etcd yet; a
    resync runs (a link appeared): the route stays. The endpoint arrives:
    the route is desired and right, nothing is written — no flap."""
    cni = workload("198.19.0.5/32", "calinew")
    kernel = FakeKernel([cni])
    g = RouteGrace(CLEANUP_GRACE)
    ks = agent_routes(kernel, g)
    ks.set_desired([])
    grace_at(g, 0.0)
    assert ks.resync().ok and kernel.writes == []
    assert g.settle((r.prefix, r.nexthops[0].dev) for r in ks.strays()) == CLEANUP_GRACE
    ks.set_desired([workload("198.19.0.5/32", "calinew")])  # its endpoint
    grace_at(g, 1.0, endpoints={"calinew"})
    assert not ks.apply().done and ks.resync().ok and kernel.writes == []
    assert g.settle((r.prefix, r.nexthops[0].dev) for r in ks.strays()) is None
    # long after the grace period, a refresh still leaves the explained route
    grace_at(g, 500.0, endpoints={"calinew"})
    assert ks.resync().ok and kernel.writes == []


def test_the_race_lost_no_endpoint_comes_and_the_route_goes_after_the_grace():
    kernel = FakeKernel([workload("198.19.0.5/32", "calinew")])
    g = RouteGrace(CLEANUP_GRACE)
    ks = agent_routes(kernel, g)
    ks.set_desired([])
    grace_at(g, 0.0)
    assert ks.resync().ok and kernel.writes == []
    recheck = g.settle((r.prefix, r.nexthops[0].dev) for r in ks.strays())
    grace_at(g, 4.0)
    assert ks.resync().ok and kernel.writes == []  # a refresh inside the grace
    assert recheck is not None
    grace_at(g, recheck)
    dumps = kernel.dumps
    assert [(op, r.prefix) for op, r in ks.apply().done] == [("delete", "198.19.0.5/32")]
    assert kernel.dumps == dumps and kernel.routes == {}
