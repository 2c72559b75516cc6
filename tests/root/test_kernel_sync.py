"""Component tests of kernel_sync against a real kernel, inside throwaway
network namespaces (root). Nothing here touches the root namespace: every
namespace is created with a unique name and removed by name, even on failure.
"""

from __future__ import annotations

import asyncio
import errno
import os
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from pybgp.kernel_sync import KernelSync, RouteEvent, RouteMonitor, RouteWriter
from pybgp.kernel_sync.desired import RTPROT_BIRD, KRoute, NextHop, Plan, blackhole, via

pytestmark = pytest.mark.root
PROTO = RTPROT_BIRD


def run(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


@dataclass
class Netns:
    name: str

    def ip(self, *args: str) -> str:
        return run("ip", "-n", self.name, *args)

    def routes(self, *selector: str, v6: bool = False) -> list[str]:
        """`ip route show <selector>` as lines, nexthop lines folded into their route."""
        out = self.ip(*(["-6"] if v6 else []), "route", "show", *selector)
        lines: list[str] = []
        for line in out.splitlines():
            if line.startswith(("\t", " ")) and lines:
                lines[-1] += " | " + line.strip()
            elif line.strip():
                lines.append(line.strip())
        return lines

    def ours(self, v6: bool = False) -> list[str]:
        return self.routes("proto", str(PROTO), v6=v6)


@pytest.fixture
def netns() -> Iterator[Netns]:
    """A fresh namespace with two veth pairs:
    n0 198.18.0.1/24 + 2001:db8:ff::1/64 (peer p0), n1 198.18.1.1/24 (peer p1)."""
    if os.geteuid() != 0:
        pytest.fail("kernel_sync root tests need root (network namespaces)")
    ns = Netns(f"pybgp-kst-{secrets.token_hex(4)}")
    run("ip", "netns", "add", ns.name)
    try:
        for i in (0, 1):
            ns.ip("link", "add", f"n{i}", "type", "veth", "peer", "name", f"p{i}")
            ns.ip("link", "set", f"n{i}", "up")
            ns.ip("link", "set", f"p{i}", "up")
            ns.ip("addr", "add", f"198.18.{i}.1/24", "dev", f"n{i}")
        ns.ip("link", "set", "lo", "up")
        ns.ip("-6", "addr", "add", "2001:db8:ff::1/64", "dev", "n0", "nodad")
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", ns.name], check=False)


def host_routes(n: int, gateway: str = "198.18.0.2", base: int = 0) -> list[KRoute]:
    return [via(f"198.19.{(base + i) >> 8}.{(base + i) & 255}/32", gateway) for i in range(n)]


def test_apply_1000_routes_via_gateway(netns: Netns) -> None:
    ks = KernelSync(netns=netns.name)
    ks.set_desired(host_routes(1000))
    res = ks.apply()
    assert res.ok, res.errors[:3]
    assert len(res.done) == 1000
    lines = netns.ours()
    assert len(lines) == 1000
    assert all(" via 198.18.0.2 dev n0" in line for line in lines)
    assert "198.19.3.231 via 198.18.0.2 dev n0" in lines
    ks.close()


def test_replace_next_hops(netns: Netns) -> None:
    ks = KernelSync(netns=netns.name)
    ks.set_desired(host_routes(100))
    assert ks.apply().ok
    ks.set_desired(host_routes(100, gateway="198.18.1.2"))
    res = ks.apply()
    assert res.ok and {op for op, _ in res.done} == {"replace"} and len(res.done) == 100
    lines = netns.ours()
    assert len(lines) == 100
    assert all(" via 198.18.1.2 dev n1" in line for line in lines)


def test_ecmp_routes_show_two_nexthops(netns: Netns) -> None:
    ks = KernelSync(netns=netns.name)
    ks.set_desired(
        [
            via("198.19.50.0/24", "198.18.0.2", "198.18.1.2"),
            via("2001:db8:50::/64", "2001:db8:ff::2", "2001:db8:ff::3"),
        ]
    )
    assert ks.apply().ok
    (v4,) = netns.ours()
    assert v4.startswith("198.19.50.0/24")
    assert "nexthop via 198.18.0.2 dev n0" in v4 and "nexthop via 198.18.1.2 dev n1" in v4
    (v6,) = netns.ours(v6=True)
    assert "nexthop via 2001:db8:ff::2 dev n0" in v6 and "nexthop via 2001:db8:ff::3 dev n0" in v6
    # read back from the kernel, the ECMP routes need no write
    again = KernelSync(netns=netns.name)
    again.set_desired(ks.desired)
    assert again.resync().done == []


def test_blackhole_onlink_and_device_routes(netns: Netns) -> None:
    ks = KernelSync(netns=netns.name)
    ks.set_desired(
        [
            blackhole("198.19.60.0/26"),
            blackhole("2001:db8:60::/122"),
            via("198.19.61.0/26", "198.18.9.9", dev="n1", onlink=True),
            via("198.19.62.7/32", dev="n0", metric=20),
            via("2001:db8:61::/64", "2001:db8:ff::2"),
        ]
    )
    res = ks.apply()
    assert res.ok, res.errors
    v4 = netns.ours()
    assert "blackhole 198.19.60.0/26" in v4
    assert "198.19.61.0/26 via 198.18.9.9 dev n1 onlink" in v4
    assert "198.19.62.7 dev n0 scope link metric 20" in v4
    v6 = " ".join(netns.ours(v6=True))
    assert (
        "blackhole 2001:db8:60::/122" in v6 and "2001:db8:61::/64 via 2001:db8:ff::2 dev n0" in v6
    )
    again = KernelSync(netns=netns.name)
    again.set_desired(ks.desired)
    assert again.resync().done == []


def test_delete_and_already_gone_is_fine(netns: Netns) -> None:
    ks = KernelSync(netns=netns.name)
    ks.set_desired([blackhole("198.19.70.0/26"), blackhole("198.19.71.0/26")])
    assert ks.apply().ok
    netns.ip("route", "del", "198.19.71.0/26", "proto", str(PROTO))  # gone behind our back
    ks.update("198.19.70.0/26", None)
    ks.update("198.19.71.0/26", None)
    res = ks.apply()
    assert res.ok and len(res.done) == 2  # ESRCH on delete counts as done
    assert netns.ours() == []


def test_errors_map_to_their_routes(netns: Netns) -> None:
    w = RouteWriter(netns.name, chunk=7)
    good = host_routes(20)
    bad = via("198.19.80.0/24", "198.18.77.7")  # gateway not on any link
    res = w.apply(Plan(add=good[:10] + [bad] + good[10:]))
    assert [(e.route, e.errno) for e in res.errors] == [(bad, errno.ENETUNREACH)]
    assert "gateway" in res.errors[0].message.lower() or res.errors[0].message == ""
    assert len(res.done) == 20 and len(netns.ours()) == 20
    # the failing request last in its chunk (the one the kernel answers anyway)
    more = host_routes(6, base=100)
    res = w.apply(Plan(add=more + [bad] + more[:2]))  # chunk 1: 6 + bad; chunk 2: 2 taken
    assert [(e.route, e.errno) for e in res.errors] == [
        (bad, errno.ENETUNREACH), (more[0], errno.EEXIST), (more[1], errno.EEXIST)]
    assert res.done == [("add", r) for r in more] and len(netns.ours()) == 26
    missing_dev = w.apply(Plan(add=[via("198.19.81.0/24", "198.18.0.2", dev="nosuch0")]))
    assert [e.errno for e in missing_dev.errors] == [errno.ENODEV]
    w.close()


def test_resync_sweeps_stale_routes_of_ours_only(netns: Netns) -> None:
    netns.ip("route", "add", "198.19.90.0/24", "via", "198.18.0.2", "proto", "static")
    netns.ip("route", "add", "198.19.91.0/24", "via", "198.18.0.2", "proto", str(PROTO))  # stale
    netns.ip("route", "add", "198.19.92.0/24", "via", "198.18.0.9", "proto", str(PROTO))  # wrong
    netns.ip("route", "add", "198.19.93.0/24", "via", "198.18.0.2", "proto", str(PROTO))  # right
    netns.ip("route", "add", "198.19.94.0/24", "via", "198.18.1.2", "proto", "static")  # same key
    ks = KernelSync(netns=netns.name)
    ks.set_desired(
        [
            via("198.19.92.0/24", "198.18.0.2"),
            via("198.19.93.0/24", "198.18.0.2"),
            blackhole("198.19.95.0/26"),
            blackhole("198.19.94.0/24"),  # clashes with the static route: must not replace it
        ]
    )
    res = ks.resync()
    assert sorted((op, r.prefix) for op, r in res.done) == [
        ("add", "198.19.95.0/26"),
        ("delete", "198.19.91.0/24"),
        ("replace", "198.19.92.0/24"),
    ]
    assert [(e.route.prefix, e.errno) for e in res.errors] == [("198.19.94.0/24", errno.EEXIST)]
    assert sorted(netns.ours()) == [
        "198.19.92.0/24 via 198.18.0.2 dev n0",
        "198.19.93.0/24 via 198.18.0.2 dev n0",
        "blackhole 198.19.95.0/26",
    ]
    assert netns.routes("proto", "static") == [
        "198.19.90.0/24 via 198.18.0.2 dev n0",
        "198.19.94.0/24 via 198.18.1.2 dev n1",
    ]


def test_restart_writes_nothing_when_desired_equals_actual(netns: Netns) -> None:
    desired = [
        *host_routes(500),
        blackhole("198.19.200.0/26"),
        via("198.19.201.0/24", "198.18.0.2", "198.18.1.2"),
        via("198.19.202.0/24", "198.18.9.9", dev="n1", onlink=True),
        via("2001:db8:203::/64", "2001:db8:ff::2"),
        blackhole("2001:db8:204::/122"),
    ]
    first = KernelSync(netns=netns.name)
    first.set_desired(desired)
    assert first.resync().ok
    first.close()  # persist: nothing deleted on exit
    assert len(netns.ours()) + len(netns.ours(v6=True)) == len(desired)

    writer = RouteWriter(netns.name)
    second = KernelSync(writer)
    second.set_desired(desired)
    res = second.resync()
    assert res.ok and res.done == [] and writer.writes == 0
    assert second.apply().done == [] and writer.writes == 0

    # a restart with fewer desired routes removes exactly the stale ones
    third_writer = RouteWriter(netns.name)
    third = KernelSync(third_writer)
    third.set_desired(desired[10:])
    res = third.resync()
    assert res.ok and sorted(r.prefix for _, r in res.done) == sorted(
        r.prefix for r in desired[:10]
    )
    assert third_writer.writes == 10


def test_missing_netns_is_an_error_and_is_not_created() -> None:
    name = f"pybgp-kst-missing-{secrets.token_hex(4)}"
    with pytest.raises(FileNotFoundError):
        RouteWriter(name)
    assert name not in run("ip", "netns", "list")
    assert not os.path.exists(f"/run/netns/{name}")


def test_monitor_reports_cali_host_routes(netns: Netns) -> None:
    netns.ip("link", "add", "cali1a2b3c4d5e6", "type", "veth", "peer", "name", "pod0")
    netns.ip("link", "set", "cali1a2b3c4d5e6", "up")
    netns.ip("link", "set", "pod0", "up")
    netns.ip("route", "add", "198.19.0.10/32", "dev", "cali1a2b3c4d5e6")
    with RouteMonitor(netns.name) as mon:
        assert mon.seed() == [RouteEvent("add", "198.19.0.10/32", "cali1a2b3c4d5e6")]
        netns.ip("route", "add", "198.19.0.11/32", "dev", "cali1a2b3c4d5e6", "proto", "80")
        netns.ip("route", "add", "198.19.0.12/32", "dev", "pod0")  # not a cali interface
        assert mon.wait(5) == [RouteEvent("add", "198.19.0.11/32", "cali1a2b3c4d5e6")]
        netns.ip("route", "del", "198.19.0.11/32", "dev", "cali1a2b3c4d5e6")
        assert mon.wait(5) == [RouteEvent("delete", "198.19.0.11/32", "cali1a2b3c4d5e6")]
        netns.ip("link", "del", "cali1a2b3c4d5e6")  # the kernel flushes silently
        assert mon.wait(5) == [RouteEvent("delete", "198.19.0.10/32", "cali1a2b3c4d5e6")]
        assert mon.current() == set()


def test_monitor_with_asyncio_add_reader(netns: Netns) -> None:
    netns.ip("link", "add", "calia", "type", "veth", "peer", "name", "poda")
    netns.ip("link", "set", "calia", "up")
    netns.ip("link", "set", "poda", "up")

    async def scenario() -> list[RouteEvent]:
        got: list[RouteEvent] = []
        done = asyncio.Event()
        with RouteMonitor(netns.name) as mon:
            assert mon.seed() == []

            def on_events(events: list[RouteEvent]) -> None:
                got.extend(events)
                if len(got) >= 2:
                    done.set()

            mon.attach(on_events)
            for cmd in (("add", "198.19.1.1/32"), ("add", "2001:db8:1::1/128")):
                proc = await asyncio.create_subprocess_exec(
                    "ip", "-n", netns.name, "route", cmd[0], cmd[1], "dev", "calia"
                )
                assert await proc.wait() == 0
            await asyncio.wait_for(done.wait(), 5)
            mon.detach()
        return got

    assert asyncio.run(scenario()) == [
        RouteEvent("add", "198.19.1.1/32", "calia"),
        RouteEvent("add", "2001:db8:1::1/128", "calia"),
    ]


def test_nothing_written_outside_the_namespace(netns: Netns) -> None:
    before = run("ip", "route", "show", "proto", str(PROTO))
    ks = KernelSync(netns=netns.name)
    ks.set_desired(host_routes(50) + [blackhole("198.19.100.0/26")])
    assert ks.resync().ok
    assert run("ip", "route", "show", "proto", str(PROTO)) == before
    assert isinstance(ks.actual["198.19.100.0/26"].nexthops, tuple)
    assert KRoute("198.19.100.0/26", "blackhole") == ks.actual["198.19.100.0/26"]
    dumped = ks.backend.dump_routes(PROTO)
    assert sum(NextHop("198.18.0.2", "n0") in r.nexthops for r in dumped) == 50


def test_lost_answers_are_reported_and_resync_repairs(netns: Netns) -> None:
    # The kernel answers a failed request (and the last of a chunk): 1000 adds
    # that all fail, answered into a receive buffer far too small for 1000
    # answers, make it drop some.
    writer = RouteWriter(netns.name, chunk=1000, rcvbuf=4096)
    ks = KernelSync(writer)
    assert ks.resync().ok  # the kernel holds none of ours
    routes = host_routes(1000)
    assert RouteWriter(netns.name).apply(Plan(add=routes)).ok  # behind its back
    ks.set_desired(routes)
    res = ks.apply()
    assert not res.done and len(res.errors) == 1000  # every route accounted for
    lost = [e for e in res.errors if e.errno == errno.ENOBUFS]
    assert lost and {e.errno for e in res.errors} == {errno.ENOBUFS, errno.EEXIST}
    assert ks.needs_resync
    assert ks.resync().ok  # adopts what is there: ours, and right
    assert not ks.needs_resync and len(netns.ours()) == 1000
    assert not ks.plan()


def test_recreated_interface_is_picked_up(netns: Netns) -> None:
    ks = KernelSync(netns=netns.name)
    ks.set_desired([via("198.19.110.0/24", dev="n1")])
    assert ks.apply().ok
    netns.ip("link", "del", "n1")  # takes p1 and the route with it
    netns.ip("link", "add", "n1", "type", "veth", "peer", "name", "p1")
    netns.ip("link", "set", "n1", "up")
    netns.ip("link", "set", "p1", "up")
    ks.update("198.19.111.0/24", via("198.19.111.0/24", dev="n1"))
    first = ks.apply()  # the cached ifindex is stale: ENODEV, and the cache is refreshed
    assert [e.errno for e in first.errors] == [errno.ENODEV]
    assert ks.apply().ok
    assert "198.19.111.0/24 dev n1 scope link" in netns.ours()
    ks.resync()  # the kernel dropped 198.19.110.0/24 with the link: resync restores it
    assert sorted(netns.ours()) == [
        "198.19.110.0/24 dev n1 scope link",
        "198.19.111.0/24 dev n1 scope link",
    ]
