"""Unit tests for kernel_sync's rtnetlink codec: our encoder checked by
pyroute2's parser, pyroute2's encoder checked by our parser, and round trips."""

from __future__ import annotations

import socket
import struct

import pytest
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from pybgp.kernel_sync import codec
from pybgp.kernel_sync.desired import KRoute, NextHop, blackhole, via

IFINDEX = {"eth0": 2, "eth1": 3, "cali1": 7}
IFNAME = {v: k for k, v in IFINDEX.items()}


def ifindex_of(dev: str | int) -> int:
    return dev if isinstance(dev, int) else IFINDEX[dev]


def decode(data: bytes) -> rtmsg:
    msg = rtmsg(data)
    msg.decode()
    return msg


def test_add_v4_via_gateway_and_dev() -> None:
    route = via("198.19.1.0/26", "198.18.0.2", dev="eth0", metric=7)
    data = codec.encode_route("add", route, 42, ifindex_of)
    msg = decode(data)
    hdr = msg["header"]
    assert hdr["length"] == len(data)
    assert hdr["type"] == codec.RTM_NEWROUTE
    assert hdr["sequence_number"] == 42
    # add never overwrites (EXCL); replace does
    assert hdr["flags"] == (
        codec.NLM_F_REQUEST | codec.NLM_F_ACK | codec.NLM_F_CREATE | codec.NLM_F_EXCL
    )
    replace_data = codec.encode_route("replace", route, 43, ifindex_of)
    assert decode(replace_data)["header"]["flags"] == (
        codec.NLM_F_REQUEST | codec.NLM_F_ACK | codec.NLM_F_CREATE | codec.NLM_F_REPLACE
    )
    assert replace_data[16:] == data[16:]  # same route, only the flags differ
    quiet = codec.encode_route("add", route, 42, ifindex_of, ack=False)  # answered on failure
    assert decode(quiet)["header"]["flags"] == hdr["flags"] & ~codec.NLM_F_ACK
    assert quiet[:6] == data[:6] and quiet[8:] == data[8:]
    assert msg["family"] == socket.AF_INET
    assert msg["dst_len"] == 26
    assert msg["table"] == 254
    assert msg["proto"] == 12
    assert msg["type"] == codec.RTN_UNICAST
    assert msg["scope"] == codec.RT_SCOPE_UNIVERSE
    assert msg["flags"] == 0
    assert msg.get_attr("RTA_DST") == "198.19.1.0"
    assert msg.get_attr("RTA_GATEWAY") == "198.18.0.2"
    assert msg.get_attr("RTA_OIF") == 2
    assert msg.get_attr("RTA_PRIORITY") == 7
    assert msg.get_attr("RTA_TABLE") == 254


def test_add_v6_ecmp_multipath_with_weights() -> None:
    hops = (NextHop("2001:db8::2", "eth0", weight=1), NextHop("2001:db8::3", "eth1", weight=5))
    route = KRoute("2001:db8:1::/64", "unicast", hops, protocol=99)
    msg = decode(codec.encode_route("replace", route, 1, ifindex_of))
    assert msg["family"] == socket.AF_INET6
    assert msg["proto"] == 99
    assert msg.get_attr("RTA_PRIORITY") == 1024
    assert msg.get_attr("RTA_GATEWAY") is None
    mp = msg.get_attr("RTA_MULTIPATH")
    assert [(nh["oif"], nh["hops"], nh.get_attr("RTA_GATEWAY")) for nh in mp] == [
        (2, 0, "2001:db8::2"),
        (3, 4, "2001:db8::3"),
    ]


def test_blackhole_onlink_device_route_and_big_table() -> None:
    bh = decode(codec.encode_route("add", blackhole("198.19.2.0/26", table=1000), 1, ifindex_of))
    assert bh["type"] == codec.RTN_BLACKHOLE
    assert bh["table"] == codec.RT_TABLE_COMPAT
    assert bh.get_attr("RTA_TABLE") == 1000
    assert bh.get_attr("RTA_GATEWAY") is None and bh.get_attr("RTA_OIF") is None

    onl = decode(
        codec.encode_route(
            "add", via("198.19.3.0/26", "198.18.9.9", dev="eth1", onlink=True), 1, ifindex_of
        )
    )
    assert onl["flags"] & codec.RTNH_F_ONLINK
    assert onl.get_attr("RTA_OIF") == 3

    dev = decode(codec.encode_route("add", via("198.19.0.7/32", dev="cali1"), 1, ifindex_of))
    assert dev["scope"] == codec.RT_SCOPE_LINK
    assert dev.get_attr("RTA_OIF") == 7


def test_delete_names_our_protocol_and_no_next_hops() -> None:
    route = via("198.19.1.0/26", "198.18.0.2", dev="eth0", metric=5)
    data = codec.encode_route("delete", route, 9, ifindex_of)
    msg = decode(data)
    assert msg["header"]["type"] == codec.RTM_DELROUTE
    assert msg["header"]["flags"] == codec.NLM_F_REQUEST | codec.NLM_F_ACK
    assert msg["proto"] == 12
    assert msg["scope"] == codec.RT_SCOPE_NOWHERE
    assert msg.get_attr("RTA_PRIORITY") == 5
    assert msg.get_attr("RTA_GATEWAY") is None and msg.get_attr("RTA_OIF") is None


def test_default_route_has_no_dst() -> None:
    msg = decode(codec.encode_route("add", via("0.0.0.0/0", "198.18.0.1"), 1, ifindex_of))
    assert msg["dst_len"] == 0 and msg.get_attr("RTA_DST") is None


def test_unknown_device_raises_lookup_error() -> None:
    with pytest.raises(KeyError):
        codec.encode_route("add", via("198.19.1.0/26", "198.18.0.2", dev="nope"), 1, ifindex_of)


ROUTES = [
    via("198.19.1.0/26", "198.18.0.2", dev="eth0"),
    via("198.19.1.0/26", "198.18.0.2", "198.18.0.3", dev="eth0"),
    via("198.19.3.0/24", "198.18.9.9", dev="eth1", onlink=True, metric=30),
    via("198.19.0.7/32", dev="cali1"),
    blackhole("198.19.2.0/26"),
    blackhole("198.19.2.0/26", table=5000),
    KRoute("198.19.4.0/24", "unreachable"),
    via("2001:db8:1::/64", "2001:db8::2", dev="eth0"),
    via("2001:db8:1::/64", "2001:db8::2", "2001:db8::3", dev="eth1", metric=200),
    blackhole("2001:db8:2::/64"),
]


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.kind}-{r.prefix}-{len(r.nexthops)}")
def test_round_trip_encode_parse(route: KRoute) -> None:
    cache: codec.NexthopCache = {}
    data = codec.encode_route("add", route, 3, ifindex_of, cache)
    assert data == codec.encode_route("add", route, 3, ifindex_of, cache)  # cached path
    assert data == codec.encode_route("add", route, 3, ifindex_of)
    (msg,) = list(codec.iter_messages(data))
    raw = codec.parse_route(msg)
    assert raw is not None
    back = codec.to_kroute(raw, lambda i: IFNAME.get(i, i))
    assert back == route


def test_our_parser_reads_pyroute2_encoding() -> None:
    m = rtmsg()
    m["family"] = socket.AF_INET
    m["dst_len"] = 24
    m["table"] = 254
    m["proto"] = 12
    m["type"] = codec.RTN_UNICAST
    m["attrs"] = [
        ("RTA_DST", "198.19.1.0"),
        ("RTA_GATEWAY", "198.18.0.9"),
        ("RTA_OIF", 2),
        ("RTA_PRIORITY", 9),
    ]
    m["header"]["type"] = codec.RTM_NEWROUTE
    m["header"]["flags"] = codec.NLM_F_REQUEST
    m["header"]["sequence_number"] = 77
    m.encode()
    data = bytes(m.data[: m["header"]["length"]])
    (msg,) = list(codec.iter_messages(data))
    assert msg.seq == 77
    raw = codec.parse_route(msg)
    assert raw is not None
    route = codec.to_kroute(raw, lambda i: IFNAME[i])
    assert route == via("198.19.1.0/24", "198.18.0.9", dev="eth0", metric=9)


def test_to_kroute_skips_routes_we_never_own() -> None:
    def raw_of(**kw: object) -> codec.RawRoute:
        base: dict[str, object] = dict(
            family=socket.AF_INET,
            prefix="198.19.1.0/24",
            dst_len=24,
            table=254,
            protocol=12,
            scope=0,
            rtype=codec.RTN_UNICAST,
            flags=0,
            metric=0,
            gateway="198.18.0.1",
            oif=2,
            multipath=(),
            src_len=0,
            tos=0,
        )
        base.update(kw)
        return codec.RawRoute(**base)  # type: ignore[arg-type]

    assert codec.to_kroute(raw_of(), IFNAME.__getitem__) is not None
    assert codec.to_kroute(raw_of(rtype=2), IFNAME.__getitem__) is None  # local
    assert codec.to_kroute(raw_of(flags=codec.RTM_F_CLONED), IFNAME.__getitem__) is None
    assert codec.to_kroute(raw_of(src_len=8), IFNAME.__getitem__) is None
    assert codec.to_kroute(raw_of(tos=4), IFNAME.__getitem__) is None
    assert codec.to_kroute(raw_of(gateway=None, oif=0), IFNAME.__getitem__) is None


def _ack(seq: int, error: int, text: str = "") -> bytes:
    orig = struct.pack("=IHHII", 16, codec.RTM_NEWROUTE, 5, seq, 0)
    flags = codec.NLM_F_CAPPED
    tlv = b""
    if text:
        flags |= codec.NLM_F_ACK_TLVS
        payload = text.encode() + b"\0"
        tlv = struct.pack("=HH", 4 + len(payload), codec.NLMSGERR_ATTR_MSG) + payload
        tlv += b"\0" * (-len(tlv) % 4)
    body = struct.pack("=i", -error) + orig + tlv
    return struct.pack("=IHHII", 16 + len(body), codec.NLMSG_ERROR, flags, seq, 0) + body


def test_parse_acks_with_extended_error_text() -> None:
    data = _ack(5, 0) + _ack(6, 101, "Nexthop has invalid gateway") + _ack(7, 3)
    acks = [codec.parse_ack(m) for m in codec.iter_messages(data)]
    assert acks == [
        codec.Ack(5, 0),
        codec.Ack(6, 101, "Nexthop has invalid gateway"),
        codec.Ack(7, 3),
    ]


def test_iter_messages_rejects_truncation() -> None:
    with pytest.raises(ValueError):
        list(codec.iter_messages(_ack(5, 0) + struct.pack("=IHHII", 99, 2, 0, 1, 0)))
