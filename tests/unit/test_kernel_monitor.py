"""Unit tests for the monitor's pure state (HostRoutes) fed with netlink bytes."""

from __future__ import annotations

import socket
import struct

from pybgp.kernel_sync import codec
from pybgp.kernel_sync.desired import KRoute, blackhole, via
from pybgp.kernel_sync.monitor import HostRoutes, RouteEvent

LINKS = {"eth0": 2, "cali1": 7, "cali2": 8}


def link_msg(name: str, index: int, up: bool = True, delete: bool = False) -> bytes:
    payload = name.encode() + b"\0"
    attr = struct.pack("=HH", 4 + len(payload), codec.IFLA_IFNAME) + payload
    attr += b"\0" * (-len(attr) % 4)
    body = struct.pack("=BxHiII", socket.AF_UNSPEC, 1, index, 1 if up else 0, 0) + attr
    mtype = codec.RTM_DELLINK if delete else codec.RTM_NEWLINK
    return struct.pack("=IHHII", 16 + len(body), mtype, 0, 0, 0) + body


def route_msg(route: KRoute, delete: bool = False) -> bytes:
    data = bytearray(codec.encode_route("add", route, 0, LINKS.__getitem__))
    if delete:
        struct.pack_into("=H", data, 4, codec.RTM_DELROUTE)
    return bytes(data)


def fresh() -> HostRoutes:
    state = HostRoutes()
    for name, index in LINKS.items():
        assert state.feed(link_msg(name, index)) == []
    return state


def test_add_and_delete_on_cali() -> None:
    state = fresh()
    r = via("198.19.0.7/32", dev="cali1", protocol=80)
    assert state.feed(route_msg(r)) == [RouteEvent("add", "198.19.0.7/32", "cali1")]
    assert state.feed(route_msg(r)) == []  # repeated notification: no event
    v6 = via("2001:db8::7/128", dev="cali1")
    assert state.feed(route_msg(v6)) == [RouteEvent("add", "2001:db8::7/128", "cali1")]
    assert state.current() == {("198.19.0.7/32", "cali1"), ("2001:db8::7/128", "cali1")}
    assert state.feed(route_msg(r, delete=True)) == [RouteEvent("delete", "198.19.0.7/32", "cali1")]
    assert state.feed(route_msg(r, delete=True)) == []


def test_ignores_other_routes() -> None:
    state = fresh()
    ignored = [
        via("198.19.0.7/32", dev="eth0"),  # not a cali interface
        via("198.19.0.0/26", dev="cali1"),  # not a host route
        via("198.19.0.8/32", "198.18.0.2", dev="cali1"),  # via a gateway
        blackhole("198.19.0.9/32"),
        via("198.19.0.10/32", dev="cali1", table=100),  # other table
    ]
    data = b"".join(route_msg(r) for r in ignored)
    assert state.feed(data) == []


def test_link_down_and_delete_drop_ipv4_routes_silently_flushed() -> None:
    state = fresh()
    state.feed(route_msg(via("198.19.0.7/32", dev="cali1")))
    state.feed(route_msg(via("198.19.0.8/32", dev="cali2")))
    assert state.feed(link_msg("cali1", 7, up=False)) == [
        RouteEvent("delete", "198.19.0.7/32", "cali1")
    ]
    assert state.feed(link_msg("cali2", 8, delete=True)) == [
        RouteEvent("delete", "198.19.0.8/32", "cali2")
    ]
    assert state.current() == set()


def test_rename_moves_routes_in_and_out() -> None:
    state = fresh()
    state.feed(route_msg(via("198.19.0.7/32", dev="eth0")))
    assert state.feed(link_msg("cali9", 2)) == [RouteEvent("add", "198.19.0.7/32", "cali9")]
    assert state.feed(link_msg("calia", 2)) == [
        RouteEvent("delete", "198.19.0.7/32", "cali9"),
        RouteEvent("add", "198.19.0.7/32", "calia"),
    ]
    assert state.feed(link_msg("eth0", 2)) == [RouteEvent("delete", "198.19.0.7/32", "calia")]


def test_reset_reports_differences_only() -> None:
    state = fresh()
    state.feed(route_msg(via("198.19.0.7/32", dev="cali1")))
    links = {i: codec.RawLink(i, n, 1) for n, i in LINKS.items()}
    raw = [
        codec.parse_route(m)
        for m in codec.iter_messages(
            route_msg(via("198.19.0.7/32", dev="cali1"))
            + route_msg(via("198.19.0.9/32", dev="cali2"))
        )
    ]
    events = state.reset(links, [r for r in raw if r is not None])
    assert events == [RouteEvent("add", "198.19.0.9/32", "cali2")]
    assert set(state.reset(links, [])) == {
        RouteEvent("delete", "198.19.0.7/32", "cali1"),
        RouteEvent("delete", "198.19.0.9/32", "cali2"),
    }
    assert state.current() == set()


def test_link_changes_are_tracked_only_when_asked() -> None:
    quiet = HostRoutes()
    quiet.feed(link_msg("cali1", 7))
    assert quiet.link_changes == {}
    state = HostRoutes(track_links=True)
    state.feed(link_msg("cali1", 7, up=False))
    state.feed(link_msg("eth0", 2))
    assert state.take_link_changes() == {"cali1": False}
    state.feed(link_msg("cali1", 7, up=False))  # no change: nothing to report
    assert state.take_link_changes() == {}
    state.feed(link_msg("cali1", 7))
    state.feed(link_msg("cali1", 7, delete=True))
    assert state.take_link_changes() == {"cali1": None}
    state.feed(link_msg("cali3", 9))
    state.feed(link_msg("other", 9))  # renamed away from the prefix
    assert state.take_link_changes() == {"cali3": None}
    assert state.links() == {}
    state.reset({4: codec.RawLink(4, "cali4", 1)}, [])
    assert state.take_link_changes() == {"cali4": True} and state.links() == {"cali4": True}
