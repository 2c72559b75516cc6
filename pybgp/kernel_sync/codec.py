"""rtnetlink wire format for routes and links (pure: bytes in, values out).

Owns: building RTM_NEWROUTE / RTM_DELROUTE / RTM_GETROUTE / RTM_GETLINK
requests with ``struct`` (pyroute2's generic message classes cost ~30 µs per
route; these cost ~2 µs, which is what makes tens of thousands of routes per
second possible), and parsing the kernel's replies: acks, route and link
messages.

Must never: open a socket or do any other I/O; know about the desired state
or diffs; guess an interface index (the caller supplies the resolver).
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from .desired import KINDS, Kind, KRoute, NextHop

# --- netlink constants (linux/netlink.h, linux/rtnetlink.h) -------------------
NETLINK_ROUTE = 0
NLMSG_NOOP = 1
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLMSG_OVERRUN = 4

NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4
NLM_F_DUMP_INTR = 0x10
NLM_F_DUMP = 0x300
NLM_F_REPLACE = 0x100
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLM_F_CAPPED = 0x100  # in acks: the original payload was left out
NLM_F_ACK_TLVS = 0x200  # in acks: extended-ack attributes follow
NLMSGERR_ATTR_MSG = 1

SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11
NETLINK_GET_STRICT_CHK = 12

RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_GETLINK = 18
RTM_NEWROUTE = 24
RTM_DELROUTE = 25
RTM_GETROUTE = 26

RTNLGRP_LINK = 1
RTNLGRP_IPV4_ROUTE = 7
RTNLGRP_IPV6_ROUTE = 11

RTA_DST = 1
RTA_OIF = 4
RTA_GATEWAY = 5
RTA_PRIORITY = 6
RTA_MULTIPATH = 9
RTA_TABLE = 15
RTA_VIA = 18

IFLA_IFNAME = 3
IFF_UP = 0x1

RTN_UNICAST = 1
RTN_BLACKHOLE = 6
RTN_UNREACHABLE = 7
RTN_PROHIBIT = 8
RT_SCOPE_UNIVERSE = 0
RT_SCOPE_LINK = 253
RT_SCOPE_NOWHERE = 255
RT_TABLE_COMPAT = 252
RTNH_F_ONLINK = 0x4
RTM_F_CLONED = 0x200

KIND_TO_TYPE: dict[Kind, int] = {
    "unicast": RTN_UNICAST,
    "blackhole": RTN_BLACKHOLE,
    "unreachable": RTN_UNREACHABLE,
    "prohibit": RTN_PROHIBIT,
}
TYPE_TO_KIND: dict[int, Kind] = {v: k for k, v in KIND_TO_TYPE.items()}
assert set(KIND_TO_TYPE) == set(KINDS)

_HDR = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
HDR_ERR = struct.Struct("=IHHIIi")  # nlmsghdr + nlmsgerr.error
_RTMSG = struct.Struct("=BBBBBBBBI")  # family dst_len src_len tos table proto scope type flags
_HDR_RTMSG = struct.Struct("=IHHIIBBBBBBBBI")  # nlmsghdr + rtmsg in one pack
_RTA_U32 = struct.Struct("=HHI")
_RTA_HDR = struct.Struct("=HH")
_RTNH = struct.Struct("=HBBi")  # rtnexthop: len, flags, hops, ifindex
_IFINFO = struct.Struct("=BxHiII")  # family, type, index, flags, change
_ERR = struct.Struct("=i")

HDR_LEN = _HDR.size
OP_FLAGS = {
    # EXCL, not REPLACE: an add must never overwrite another owner's route that
    # happens to have the same kernel key (prefix, table, TOS, metric) -- the
    # kernel's REPLACE ignores the protocol. A clash comes back as EEXIST.
    "add": NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL,
    "replace": NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE,
    "delete": NLM_F_REQUEST,
}


def _align(n: int) -> int:
    return (n + 3) & ~3


def _rta(kind: int, payload: bytes) -> bytes:
    n = 4 + len(payload)
    return _RTA_HDR.pack(n, kind) + payload + b"\0" * (_align(n) - n)


def split_prefix(prefix: str) -> tuple[int, bytes, int]:
    """``"198.19.0.0/26"`` → (family, packed address, prefix length)."""
    addr, _, plen = prefix.partition("/")
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    return family, socket.inet_pton(family, addr), int(plen)


IfindexOf = Callable[[str | int], int]


def _ifindex(dev: str | int | None, ifindex_of: IfindexOf) -> int:
    if dev is None:
        return 0
    return dev if isinstance(dev, int) else ifindex_of(dev)


_TABLE_DST4 = struct.Struct("=HHIHH4s")  # RTA_TABLE u32, RTA_DST in_addr
_TABLE_DST6 = struct.Struct("=HHIHH16s")  # RTA_TABLE u32, RTA_DST in6_addr
NexthopCache = dict[tuple[int, int, tuple[NextHop, ...]], tuple[int, int, bytes]]


def encode_nexthops(
    family: int, rtype: int, hops: tuple[NextHop, ...], ifindex_of: IfindexOf
) -> tuple[int, int, bytes]:
    """(rtm_scope, rtm_flags, attributes) for the next hops of a new route."""
    if not hops:
        return RT_SCOPE_UNIVERSE, 0, b""
    if len(hops) > 1:
        return RT_SCOPE_UNIVERSE, 0, _rta(RTA_MULTIPATH, encode_multipath(family, hops, ifindex_of))
    nh = hops[0]
    scope = RT_SCOPE_UNIVERSE
    attrs = b""
    if nh.gateway is not None:
        attrs = _rta(RTA_GATEWAY, socket.inet_pton(family, nh.gateway))
    elif rtype == RTN_UNICAST:
        scope = RT_SCOPE_LINK  # a device route
    if nh.dev is not None:
        attrs += _RTA_U32.pack(8, RTA_OIF, _ifindex(nh.dev, ifindex_of))
    return scope, RTNH_F_ONLINK if nh.onlink else 0, attrs


def encode_route(
    op: str,
    route: KRoute,
    seq: int,
    ifindex_of: IfindexOf,
    nh_cache: NexthopCache | None = None,
    *,
    ack: bool = True,
) -> bytes:
    """One RTM_NEWROUTE (op 'add'/'replace') or RTM_DELROUTE (op 'delete') request.

    ``ack``: the kernel answers it even when it succeeds (NLM_F_ACK); without
    it, only a failure is answered.

    Replaces (used only where our last dump or write says the route with
    that key is ours) carry NLM_F_CREATE|NLM_F_REPLACE; adds carry
    NLM_F_CREATE|NLM_F_EXCL so they fail with EEXIST rather than overwrite a
    route of another protocol with the same key. Deletes name the prefix,
    table, metric, type and *our* protocol: the kernel matches a delete only
    against a route of that protocol, so it can never remove someone else's.

    ``nh_cache`` (owned by the caller, cleared when interface indexes may
    have changed) memoises the next-hop attributes, which most routes share.
    """
    addr, _, plen = route.prefix.partition("/")
    dst_len = int(plen)
    table = route.table
    if ":" in addr:
        family = socket.AF_INET6
        if dst_len:
            head = _TABLE_DST6.pack(
                8, RTA_TABLE, table, 20, RTA_DST, socket.inet_pton(family, addr)
            )
        else:
            head = _RTA_U32.pack(8, RTA_TABLE, table)
    else:
        family = socket.AF_INET
        if dst_len:
            head = _TABLE_DST4.pack(8, RTA_TABLE, table, 8, RTA_DST, socket.inet_pton(family, addr))
        else:
            head = _RTA_U32.pack(8, RTA_TABLE, table)
    if route.metric:
        head += _RTA_U32.pack(8, RTA_PRIORITY, route.metric)
    rtype = KIND_TO_TYPE[route.kind]
    if op == "delete":
        msg_type = RTM_DELROUTE
        scope, rtm_flags, tail = RT_SCOPE_NOWHERE, 0, b""  # NOWHERE: match any scope
    else:
        msg_type = RTM_NEWROUTE
        if nh_cache is None:
            scope, rtm_flags, tail = encode_nexthops(family, rtype, route.nexthops, ifindex_of)
        else:
            key = (family, rtype, route.nexthops)
            hit = nh_cache.get(key)
            if hit is None:
                hit = nh_cache[key] = encode_nexthops(family, rtype, route.nexthops, ifindex_of)
            scope, rtm_flags, tail = hit
    length = HDR_LEN + _RTMSG.size + len(head) + len(tail)
    return (
        _HDR_RTMSG.pack(
            length,
            msg_type,
            OP_FLAGS[op] | (NLM_F_ACK if ack else 0),
            seq,
            0,
            family,
            dst_len,
            0,
            0,
            table if table < 256 else RT_TABLE_COMPAT,
            route.protocol,
            scope,
            rtype,
            rtm_flags,
        )
        + head
        + tail
    )


def encode_multipath(family: int, hops: tuple[NextHop, ...], ifindex_of: IfindexOf) -> bytes:
    out = []
    for nh in hops:
        sub = _rta(RTA_GATEWAY, socket.inet_pton(family, nh.gateway)) if nh.gateway else b""
        out.append(
            _RTNH.pack(
                8 + len(sub),
                RTNH_F_ONLINK if nh.onlink else 0,
                nh.weight - 1,
                _ifindex(nh.dev, ifindex_of),
            )
            + sub
        )
    return b"".join(out)


def encode_route_dump(seq: int, family: int, protocol: int = 0, table: int = 0) -> bytes:
    """RTM_GETROUTE dump request. With NETLINK_GET_STRICT_CHK on the socket the
    kernel filters by ``protocol`` and ``table`` itself; callers filter again."""
    attrs = _RTA_U32.pack(8, RTA_TABLE, table) if table else b""
    rtm = _RTMSG.pack(family, 0, 0, 0, table if table < 256 else RT_TABLE_COMPAT, protocol, 0, 0, 0)
    length = HDR_LEN + _RTMSG.size + len(attrs)
    return _HDR.pack(length, RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + rtm + attrs


def encode_link_dump(seq: int) -> bytes:
    body = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
    return _HDR.pack(HDR_LEN + len(body), RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + body


# --- parsing ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Message:
    type: int
    flags: int
    seq: int
    data: bytes  # the whole message, header included


def iter_messages(buf: bytes) -> Iterator[Message]:
    off = 0
    end = len(buf)
    while off + HDR_LEN <= end:
        length, mtype, flags, seq, _pid = _HDR.unpack_from(buf, off)
        if length < HDR_LEN or off + length > end:
            raise ValueError(f"truncated netlink message at offset {off}")
        yield Message(mtype, flags, seq, buf[off : off + length])
        off += _align(length)


def parse_attrs(data: bytes, start: int, end: int | None = None) -> dict[int, bytes]:
    """Attributes of one level, last occurrence wins (enough for routes and links)."""
    end = len(data) if end is None else end
    out: dict[int, bytes] = {}
    off = start
    while off + 4 <= end:
        alen, atype = _RTA_HDR.unpack_from(data, off)
        if alen < 4:
            break
        out[atype & 0x3FFF] = data[off + 4 : off + alen]
        off += _align(alen)
    return out


@dataclass(frozen=True, slots=True)
class Ack:
    seq: int
    error: int  # 0 or a positive errno
    text: str = ""


def parse_ack(msg: Message) -> Ack:
    """An NLMSG_ERROR message (error 0 = success) with its extended-ack text."""
    (err,) = _ERR.unpack_from(msg.data, HDR_LEN)
    text = ""
    if msg.flags & NLM_F_ACK_TLVS:
        orig = HDR_LEN + 4
        if err == 0 or msg.flags & NLM_F_CAPPED:
            orig_len = HDR_LEN
        else:
            orig_len = _HDR.unpack_from(msg.data, orig)[0]
        raw = parse_attrs(msg.data, orig + _align(orig_len)).get(NLMSGERR_ATTR_MSG)
        if raw:
            text = raw.rstrip(b"\0").decode(errors="replace")
    return Ack(msg.seq, -err, text)


@dataclass(frozen=True, slots=True)
class RawRoute:
    """A route message reduced to what pybgp looks at (device as ifindex)."""

    family: int
    prefix: str
    dst_len: int
    table: int
    protocol: int
    scope: int
    rtype: int
    flags: int
    metric: int
    gateway: str | None
    oif: int
    multipath: tuple[tuple[str | None, int, int, int], ...]  # (gateway, ifindex, flags, hops)
    src_len: int
    tos: int


def parse_route(msg: Message) -> RawRoute | None:
    data = msg.data
    family, dst_len, src_len, tos, table, proto, scope, rtype, flags = _RTMSG.unpack_from(
        data, HDR_LEN
    )
    if family not in (socket.AF_INET, socket.AF_INET6):
        return None
    attrs = parse_attrs(data, HDR_LEN + _RTMSG.size)
    if RTA_TABLE in attrs:
        table = struct.unpack("=I", attrs[RTA_TABLE])[0]
    dst = attrs.get(RTA_DST)
    addr = (
        socket.inet_ntop(family, dst) if dst else ("0.0.0.0" if family == socket.AF_INET else "::")
    )
    gw = attrs.get(RTA_GATEWAY)
    oif = attrs.get(RTA_OIF)
    prio = attrs.get(RTA_PRIORITY)
    multipath: list[tuple[str | None, int, int, int]] = []
    mp = attrs.get(RTA_MULTIPATH)
    if mp:
        off = 0
        while off + 8 <= len(mp):
            nlen, nflags, nhops, nifindex = _RTNH.unpack_from(mp, off)
            if nlen < 8:
                break
            sub = parse_attrs(mp, off + 8, off + nlen)
            sgw = sub.get(RTA_GATEWAY)
            multipath.append(
                (socket.inet_ntop(family, sgw) if sgw else None, nifindex, nflags, nhops)
            )
            off += _align(nlen)
    return RawRoute(
        family=family,
        prefix=f"{addr}/{dst_len}",
        dst_len=dst_len,
        table=table,
        protocol=proto,
        scope=scope,
        rtype=rtype,
        flags=flags,
        metric=struct.unpack("=I", prio)[0] if prio else 0,
        gateway=socket.inet_ntop(family, gw) if gw else None,
        oif=struct.unpack("=i", oif)[0] if oif else 0,
        multipath=tuple(multipath),
        src_len=src_len,
        tos=tos,
    )


def to_kroute(raw: RawRoute, dev_of: Callable[[int], str | int]) -> KRoute | None:
    """A kernel route as a :class:`KRoute`, or None when pybgp cannot own it
    (cache clones, source routing, TOS, RTA_VIA, types pybgp never writes)."""
    kind = TYPE_TO_KIND.get(raw.rtype)
    if kind is None or raw.flags & RTM_F_CLONED or raw.src_len or raw.tos:
        return None
    hops: tuple[NextHop, ...] = ()
    if kind == "unicast":
        if raw.multipath:
            hops = tuple(
                NextHop.trusted(gw, dev_of(ix) if ix else None, bool(f & RTNH_F_ONLINK), h + 1)
                for gw, ix, f, h in raw.multipath
            )
        elif raw.gateway is not None or raw.oif:
            dev = dev_of(raw.oif) if raw.oif else None
            hops = (NextHop.trusted(raw.gateway, dev, bool(raw.flags & RTNH_F_ONLINK), 1),)
        else:
            return None
    args = (raw.prefix, kind, hops, raw.protocol, raw.table, raw.metric)
    if raw.family == socket.AF_INET6 and (
        "." in raw.prefix or any(nh.gateway and "." in nh.gateway for nh in hops)
    ):
        # inet_ntop writes IPv4-mapped addresses differently from ipaddress:
        # take the validating, normalising path.
        try:
            hops = tuple(NextHop(nh.gateway, nh.dev, nh.onlink, nh.weight) for nh in hops)
            return KRoute(raw.prefix, kind, hops, raw.protocol, raw.table, raw.metric)
        except ValueError:
            return None
    return KRoute.trusted(*args)


@dataclass(frozen=True, slots=True)
class RawLink:
    index: int
    name: str
    flags: int


def parse_link(msg: Message) -> RawLink:
    _fam, _type, index, flags, _change = _IFINFO.unpack_from(msg.data, HDR_LEN)
    attrs = parse_attrs(msg.data, HDR_LEN + _IFINFO.size)
    name = attrs.get(IFLA_IFNAME, b"").rstrip(b"\0").decode(errors="replace")
    return RawLink(index, name, flags)
