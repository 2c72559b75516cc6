"""UPDATE messages in and out, pure: RFC 7606 checks, ExaBGP as the codec.

Reading (``UpdateDecoder``, one per session): the withdrawn routes and NLRI
fields and MP_REACH/MP_UNREACH (RFC 4760) are read here (``wire``); the
other path attributes are first checked attribute by attribute as RFC 7606
§7 says (flags, lengths, values, duplicates, missing mandatory ones), then
decoded by ExaBGP's ``Attributes``. The outcome of a bad attribute is what
RFC 7606 prescribes: *treat-as-withdraw* (the UPDATE's announced prefixes
are withdrawn, the session stays up), *attribute discard* (the attribute is
dropped, the route kept), or *session reset* (``WireError``: a NOTIFICATION)
where the prefixes cannot be known — a broken NLRI, withdrawn-routes or MP
attribute. Each distinct attribute set a peer sends becomes one shared
``RPath`` (the RIB stores it once for all its prefixes).

Writing: ``reflected_attributes`` packs a path's attributes as a reflector
sends them (ORIGINATOR_ID and CLUSTER_LIST per ``rr.reflected``, next hop
and everything else unchanged, unknown transitive attributes marked
Partial, AS_PATH in the receiver's AS number size) with ExaBGP, once per
attribute set and AS size; ``announce_messages``/``withdraw_messages`` pack
prefixes into as few UPDATEs as fit 4096 bytes.

Must never: do I/O, or let a peer's bytes raise anything but ``WireError``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pybgp.reflector import wire
from pybgp.reflector.wire import IPV4_UNICAST, IPV6_UNICAST, Family, WireError
from pybgp.speaker import rr
from pybgp.speaker.rib import Path

ORIGIN, AS_PATH, NEXT_HOP, MED, LOCAL_PREF, ATOMIC_AGGREGATE, AGGREGATOR = 1, 2, 3, 4, 5, 6, 7
COMMUNITY, ORIGINATOR_ID, CLUSTER_LIST, MP_REACH, MP_UNREACH = 8, 9, 10, 14, 15
EXTENDED_COMMUNITY, AS4_PATH, AS4_AGGREGATOR, LARGE_COMMUNITY = 16, 17, 18, 32
OPTIONAL, TRANSITIVE, PARTIAL, EXTENDED = 0x80, 0x40, 0x20, 0x10
_ORIGINS = ("igp", "egp", "incomplete")

#: (optional, transitive) flags each known attribute must carry (RFC 4271
#: §5, RFC 4456, RFC 4760, RFC 1997, RFC 4360, RFC 6793, RFC 8092).
_FLAGS = {ORIGIN: TRANSITIVE, AS_PATH: TRANSITIVE, NEXT_HOP: TRANSITIVE, MED: OPTIONAL,
          LOCAL_PREF: TRANSITIVE, ATOMIC_AGGREGATE: TRANSITIVE,
          AGGREGATOR: OPTIONAL | TRANSITIVE, COMMUNITY: OPTIONAL | TRANSITIVE,
          ORIGINATOR_ID: OPTIONAL, CLUSTER_LIST: OPTIONAL, MP_REACH: OPTIONAL,
          MP_UNREACH: OPTIONAL, EXTENDED_COMMUNITY: OPTIONAL | TRANSITIVE,
          AS4_PATH: OPTIONAL | TRANSITIVE, AS4_AGGREGATOR: OPTIONAL | TRANSITIVE,
          LARGE_COMMUNITY: OPTIONAL | TRANSITIVE}
#: RFC 7606 §7: a malformed one of these costs the attribute, not the route.
_DISCARD = frozenset({ATOMIC_AGGREGATE, AGGREGATOR, AS4_PATH, AS4_AGGREGATOR})
_NAMES = {ORIGIN: "ORIGIN", AS_PATH: "AS_PATH", NEXT_HOP: "NEXT_HOP", MED: "MULTI_EXIT_DISC",
          LOCAL_PREF: "LOCAL_PREF", ATOMIC_AGGREGATE: "ATOMIC_AGGREGATE",
          AGGREGATOR: "AGGREGATOR", COMMUNITY: "COMMUNITY", ORIGINATOR_ID: "ORIGINATOR_ID",
          CLUSTER_LIST: "CLUSTER_LIST", MP_REACH: "MP_REACH_NLRI",
          MP_UNREACH: "MP_UNREACH_NLRI", EXTENDED_COMMUNITY: "EXTENDED_COMMUNITIES",
          AS4_PATH: "AS4_PATH", AS4_AGGREGATOR: "AS4_AGGREGATOR",
          LARGE_COMMUNITY: "LARGE_COMMUNITY"}


def attr_name(code: int) -> str:
    return _NAMES.get(code, f"attribute {code}")


class Attrs:
    """One attribute set as a peer sent it: ExaBGP's decode, the family and
    next hop, and the reflected encodings made from it (by AS size)."""

    __slots__ = ("key", "exa", "family", "next_hop", "nh_raw", "out")

    def __init__(self, key: bytes, exa: Any, family: Family, next_hop: str, nh_raw: bytes):
        self.key, self.exa, self.family = key, exa, family
        self.next_hop, self.nh_raw = next_hop, nh_raw
        self.out: dict[bool, bytes] = {}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Attrs) and self.key == other.key and self.family == other.family

    def __hash__(self) -> int:
        return hash(self.key)

    def __repr__(self) -> str:
        return f"Attrs({self.family}, next hop {self.next_hop}, {len(self.key)} bytes)"


@dataclass(frozen=True, slots=True)
class RPath(Path):
    """A ``rib.Path`` that also carries the attribute set it came in."""

    attrs: Attrs | None = None


@dataclass
class Update:
    """One received UPDATE. ``groups``: a shared path and its prefixes.
    ``error``: why the announced prefixes were treated as withdrawn (they
    are then in ``withdrawn``); ``discarded``: attributes RFC 7606 dropped."""

    withdrawn: list[str] = field(default_factory=list)
    groups: list[tuple[RPath, list[str]]] = field(default_factory=list)
    eor: Family | None = None
    error: str = ""
    discarded: tuple[str, ...] = ()


class _Malformed(Exception):
    """Treat-as-withdraw, with the reason."""


def _negotiated(asn4: bool) -> Any:
    """An ExaBGP ``Negotiated`` that reads and packs like our session does."""
    wire._exabgp()
    from exabgp.bgp.message.open.asn import ASN
    from exabgp.bgp.message.open.capability.negotiated import Negotiated

    neg = Negotiated({"capability": {"aigp": False}})
    neg.asn4 = asn4
    neg.local_as = neg.peer_as = ASN(0)  # iBGP: LOCAL_PREF is kept
    return neg


class UpdateDecoder:
    """Reads the UPDATEs of one session from ``peer`` (its address and BGP
    identifier, as paths name them)."""

    CACHE = 1024  # distinct attribute sets kept for sharing

    def __init__(self, peer: str, router_id: str, *, asn4: bool,
                 families: Iterable[Family] = (IPV4_UNICAST,), ibgp: bool = True):
        self.peer, self.router_id, self.asn4, self.ibgp = peer, router_id, asn4, ibgp
        self.families = frozenset(families)
        self._neg = _negotiated(asn4)
        self._paths: dict[tuple[Family, bytes], RPath] = {}
        from exabgp.bgp.message.direction import Direction

        self._direction = Direction.IN

    def decode(self, body: bytes) -> Update:
        if body == b"\x00\x00\x00\x00":
            return Update(eor=IPV4_UNICAST)
        withdrawn_raw, attributes, nlri = _split(body)
        out = Update(withdrawn=wire.decode_ipv4(withdrawn_raw) if withdrawn_raw else [])
        try:
            scan = _scan(attributes, self.asn4)
        except _Malformed as exc:  # the attribute section cannot be walked
            out.error = str(exc)
            out.withdrawn += wire.decode_ipv4(nlri)
            return out
        announced = wire.decode_ipv4(nlri) if nlri else []
        reach = _mp_reach(scan.mp_reach) if scan.mp_reach is not None else None
        if scan.mp_unreach is not None:
            family, prefixes = _mp_unreach(scan.mp_unreach)
            if not prefixes and not announced and reach is None and not out.withdrawn \
                    and not scan.others:
                return Update(eor=family)
            if family in self.families:
                out.withdrawn += prefixes
        out.discarded = tuple(attr_name(c) for c in scan.discarded)
        if not announced and (reach is None or not reach[2]):
            return out
        try:
            if scan.error:
                raise _Malformed(scan.error)
            _mandatory(scan, bool(announced), reach is not None)
            if announced and IPV4_UNICAST in self.families:
                out.groups.append((self._path(scan, IPV4_UNICAST, None), announced))
            if reach is not None and reach[2] and reach[0] in self.families:
                out.groups.append((self._path(scan, reach[0], reach[1]), reach[2]))
        except _Malformed as exc:
            out.error = str(exc)
            out.groups = []
            out.withdrawn += announced
            if reach is not None and reach[0] in self.families:
                out.withdrawn += reach[2]
        return out

    def _path(self, scan: _Scan, family: Family, nh_raw: bytes | None) -> RPath:
        key = scan.rest if nh_raw is None else scan.rest + b"\x00" + nh_raw
        path = self._paths.get((family, key))
        if path is None:
            path = self._make(scan.rest, family, nh_raw)
            if len(self._paths) >= self.CACHE:
                self._paths.clear()
            self._paths[(family, key)] = path
        return path

    def _make(self, rest: bytes, family: Family, nh_raw: bytes | None) -> RPath:
        from exabgp.bgp.message.notification import Notify
        from exabgp.bgp.message.update.attribute import Attribute, Attributes

        code = Attribute.CODE
        self._neg.cached_attributes = None
        try:
            exa = Attributes.unpack(rest, self._direction, self._neg)
        except (Notify, IndexError, ValueError, struct.error) as exc:
            raise _Malformed(f"attributes: {exc}") from None
        if code.INTERNAL_TREAT_AS_WITHDRAW in exa:
            raise _Malformed(str(exa[code.INTERNAL_TREAT_AS_WITHDRAW]))
        exa.pop(code.INTERNAL_DISCARD, None)
        if nh_raw is None:
            next_hop = str(exa[code.NEXT_HOP].top())
            nh_key = b""
        else:
            exa.pop(code.NEXT_HOP, None)  # an IPv6 path's next hop is in MP_REACH
            next_hop = _v6_next_hop(nh_raw)
            nh_key = nh_raw
        as_path: list[int] = []
        as_sets: list[tuple[int, ...]] = []
        if code.AS_PATH in exa:
            for segment in exa[code.AS_PATH].aspath:
                kind = type(segment).__name__
                if kind == "SEQUENCE":
                    as_path.extend(int(a) for a in segment)
                elif kind == "SET":
                    as_sets.append(tuple(int(a) for a in segment))
        origin = exa.get(code.ORIGIN)
        med = exa.get(code.MED)
        lp = exa.get(code.LOCAL_PREF)
        orig = exa.get(code.ORIGINATOR_ID)
        clusters = exa.get(code.CLUSTER_LIST)
        comms = exa.get(code.COMMUNITY)
        large = exa.get(code.LARGE_COMMUNITY)
        attrs = Attrs(rest + nh_key, exa, family, next_hop, nh_key)
        return RPath(
            prefix="", peer=self.peer, next_hop=next_hop,
            local_pref=int(lp.localpref) if lp is not None else None,
            as_path=tuple(as_path), as_sets=tuple(as_sets),
            origin=_ORIGINS[int(origin.origin)] if origin is not None else "igp",  # type: ignore[arg-type]
            med=int(med.med) if med is not None else None, ibgp=self.ibgp,
            peer_router_id=self.router_id,
            originator_id=str(orig) if orig is not None else None,
            cluster_list=tuple(str(c) for c in clusters.clusters) if clusters is not None else (),
            communities=tuple(struct.unpack("!HH", c.community) for c in comms.communities)
            if comms is not None else (),
            large_communities=tuple(struct.unpack("!LLL", c.large_community)
                                    for c in large.communities) if large is not None else (),
            attrs=attrs)


def _v6_next_hop(raw: bytes) -> str:
    import socket

    return socket.inet_ntop(socket.AF_INET6, raw[:16])


def _split(body: bytes) -> tuple[bytes, bytes, bytes]:
    """(withdrawn routes, path attributes, NLRI); their lengths must add up
    (RFC 7606 §4: else the prefixes cannot be known — session reset)."""
    if len(body) < 4:
        raise WireError(1, 2, struct.pack("!H", wire.HEADER_LEN + len(body)))
    wlen = int.from_bytes(body[0:2], "big")
    if 2 + wlen + 2 > len(body):
        raise WireError(3, 1, b"", "withdrawn routes length runs past the UPDATE")
    alen = int.from_bytes(body[2 + wlen:4 + wlen], "big")
    if 4 + wlen + alen > len(body):
        raise WireError(3, 1, b"", "total path attribute length runs past the UPDATE")
    return body[2:2 + wlen], body[4 + wlen:4 + wlen + alen], body[4 + wlen + alen:]


@dataclass
class _Scan:
    rest: bytes = b""  # attributes to hand ExaBGP: not MP, not discarded, first of each
    present: set[int] = field(default_factory=set)
    mp_reach: bytes | None = None
    mp_unreach: bytes | None = None
    error: str = ""  # the first treat-as-withdraw reason
    discarded: list[int] = field(default_factory=list)
    others: bool = False  # any attribute but MP_UNREACH


def _scan(data: bytes, asn4: bool) -> _Scan:
    """Walk the attributes and check each as RFC 7606 §3 and §7 say."""
    out = _Scan()
    keep: list[bytes] = []
    pos, end = 0, len(data)
    while pos < end:
        if end - pos < 3:
            raise _Malformed("attribute header runs past the attributes")
        flags, code = data[pos], data[pos + 1]
        if flags & EXTENDED:
            if end - pos < 4:
                raise _Malformed("attribute header runs past the attributes")
            length, head = int.from_bytes(data[pos + 2:pos + 4], "big"), 4
        else:
            length, head = data[pos + 2], 3
        start, stop = pos + head, pos + head + length
        if stop > end:
            if out.mp_reach is not None or out.mp_unreach is not None or code in (
                    MP_REACH, MP_UNREACH):
                raise WireError(3, 1, b"", f"{attr_name(code)} runs past the attributes")
            raise _Malformed(f"{attr_name(code)} runs past the attributes")
        value = data[start:stop]
        raw = data[pos:stop]
        pos = stop
        if code in out.present:
            if code in (MP_REACH, MP_UNREACH):
                raise WireError(3, 1, b"", f"{attr_name(code)} appears twice")
            continue  # RFC 7606 §3 (g): all but the first are discarded
        out.present.add(code)
        if code != MP_UNREACH:
            out.others = True
        problem = _check(code, flags, value, asn4)
        if code in (MP_REACH, MP_UNREACH):
            if problem:
                raise WireError(3, 9, b"", f"{attr_name(code)}: {problem}")
            if code == MP_REACH:
                out.mp_reach = value
            else:
                out.mp_unreach = value
            continue
        if problem:
            if code in _DISCARD:
                out.discarded.append(code)
                continue
            if not out.error:
                out.error = f"{attr_name(code)}: {problem}"
            continue
        keep.append(raw)
    out.rest = b"".join(keep)
    return out


def _check(code: int, flags: int, value: bytes, asn4: bool) -> str:
    """What is wrong with one attribute ('' if nothing)."""
    want = _FLAGS.get(code)
    if want is None:
        if not flags & OPTIONAL:
            return "unrecognized well-known attribute"
        return ""
    if flags & (OPTIONAL | TRANSITIVE) != want:
        return f"flags {flags:#04x} conflict with the attribute's type"
    n = len(value)
    if code == ORIGIN:
        return "" if n == 1 and value[0] <= 2 else "invalid ORIGIN"
    if code in (NEXT_HOP, MED, LOCAL_PREF, ORIGINATOR_ID):
        return "" if n == 4 else f"length {n}, not 4"
    if code == ATOMIC_AGGREGATE:
        return "" if n == 0 else f"length {n}, not 0"
    if code == AGGREGATOR:
        return "" if n == (8 if asn4 else 6) else f"length {n}"
    if code == AS4_AGGREGATOR:
        return "" if n == 8 else f"length {n}"
    if code in (CLUSTER_LIST, COMMUNITY):
        return "" if n and n % 4 == 0 else f"length {n}, not a non-zero multiple of 4"
    if code == EXTENDED_COMMUNITY:
        return "" if n and n % 8 == 0 else f"length {n}, not a non-zero multiple of 8"
    if code == LARGE_COMMUNITY:
        return "" if n and n % 12 == 0 else f"length {n}, not a non-zero multiple of 12"
    if code == AS_PATH:
        return _check_as_path(value, 4 if asn4 else 2)
    if code == AS4_PATH:
        return _check_as_path(value, 4)
    if code == MP_REACH:
        return "" if n >= 5 and n >= 5 + value[3] else "too short"
    if code == MP_UNREACH:
        return "" if n >= 3 else "too short"
    return ""


def _check_as_path(value: bytes, size: int) -> str:
    pos, end = 0, len(value)
    while pos < end:
        if end - pos < 2:
            return "segment header runs past the AS_PATH"
        kind, count = value[pos], value[pos + 1]
        if kind not in (1, 2, 3, 4):
            return f"segment type {kind}"
        if count == 0:
            return "empty segment"
        pos += 2 + count * size
        if pos > end:
            return "segment runs past the AS_PATH"
    return ""


def _mandatory(scan: _Scan, ipv4_nlri: bool, mp: bool) -> None:
    """RFC 7606 §3 (d): a well-known mandatory attribute missing."""
    need = [ORIGIN, AS_PATH] + ([NEXT_HOP] if ipv4_nlri else [])
    missing = [attr_name(c) for c in need if c not in scan.present]
    if missing:
        raise _Malformed("missing " + ", ".join(missing))


def _family(raw: bytes) -> Family:
    return int.from_bytes(raw[0:2], "big"), raw[2]


def _prefixes(family: Family, data: bytes) -> list[str]:
    if family == IPV4_UNICAST:
        return wire.decode_ipv4(data)
    if family == IPV6_UNICAST:
        return wire.decode_ipv6(data)
    return []  # a family we do not speak: nothing to read


def _mp_reach(value: bytes) -> tuple[Family, bytes, list[str]]:
    family = _family(value)
    nh_len = value[3]
    nh = value[4:4 + nh_len]
    if family == IPV6_UNICAST and nh_len not in (16, 32):
        raise WireError(3, 9, b"", f"MP_REACH_NLRI: IPv6 next hop of {nh_len} bytes")
    try:
        prefixes = _prefixes(family, value[5 + nh_len:])
    except WireError as exc:
        raise WireError(3, 9, b"", f"MP_REACH_NLRI: {exc.text}") from None
    return family, nh, prefixes


def _mp_unreach(value: bytes) -> tuple[Family, list[str]]:
    family = _family(value)
    try:
        return family, _prefixes(family, value[3:])
    except WireError as exc:
        raise WireError(3, 9, b"", f"MP_UNREACH_NLRI: {exc.text}") from None


# -- writing -------------------------------------------------------------------------
_NEGOTIATED: dict[bool, Any] = {}


def reflected_attributes(path: RPath, cluster_id: str, asn4: bool) -> bytes:
    """``path``'s attribute section as we reflect it to a peer whose AS size is
    ``asn4``; computed once per attribute set and size."""
    attrs = path.attrs
    assert attrs is not None
    cached = attrs.out.get(asn4)
    if cached is not None:
        return cached
    from exabgp.bgp.message.update.attribute import Attribute, Attributes
    from exabgp.bgp.message.update.attribute.clusterlist import ClusterID, ClusterList
    from exabgp.bgp.message.update.attribute.originatorid import OriginatorID

    neg = _NEGOTIATED.get(asn4)
    if neg is None:
        neg = _NEGOTIATED[asn4] = _negotiated(asn4)
    originator, clusters = rr.reflected(path.originator_id, path.cluster_list,
                                        path.peer_router_id or path.peer, cluster_id)
    out = Attributes()
    for code, value in attrs.exa.items():
        out[code] = value
    out[Attribute.CODE.ORIGINATOR_ID] = OriginatorID(originator)
    out[Attribute.CODE.CLUSTER_LIST] = ClusterList([ClusterID(c) for c in clusters])
    packed = attrs.out[asn4] = bytes(out.pack(neg))
    return packed


def _budget(attr_len: int) -> int:
    return wire.MAX_MESSAGE - wire.HEADER_LEN - 4 - attr_len


def _packed(nlris: Iterable[bytes], budget: int) -> list[bytes]:
    """NLRI encodings joined into blobs of at most ``budget`` bytes each."""
    blobs: list[bytes] = []
    part: list[bytes] = []
    size = 0
    for n in nlris:
        if size + len(n) > budget:
            blobs.append(b"".join(part))
            part, size = [], 0
        part.append(n)
        size += len(n)
    if part:
        blobs.append(b"".join(part))
    return blobs


def announce_messages(family: Family, attributes: bytes, nh_raw: bytes,
                      prefixes: Sequence[str]) -> list[bytes]:
    """UPDATEs announcing ``prefixes`` with ``attributes`` (from
    ``reflected_attributes``), as many to a message as fit."""
    nlris = [wire.encode_prefix(p) for p in prefixes]
    if family == IPV4_UNICAST:
        head = b"\x00\x00" + struct.pack("!H", len(attributes)) + attributes
        return [wire.frame(wire.UPDATE, head + blob)
                for blob in _packed(nlris, _budget(len(attributes)))]
    mp_head = struct.pack("!HBB", family[0], family[1], len(nh_raw)) + nh_raw + b"\x00"
    out = []
    for blob in _packed(nlris, _budget(len(attributes) + 4 + len(mp_head))):
        value = mp_head + blob
        mp = struct.pack("!BBH", OPTIONAL | EXTENDED, MP_REACH, len(value)) + value
        section = attributes + mp
        out.append(wire.frame(wire.UPDATE, b"\x00\x00" + struct.pack("!H", len(section))
                              + section))
    return out


def withdraw_messages(family: Family, prefixes: Sequence[str]) -> list[bytes]:
    nlris = [wire.encode_prefix(p) for p in prefixes]
    if family == IPV4_UNICAST:
        return [wire.frame(wire.UPDATE, struct.pack("!H", len(blob)) + blob + b"\x00\x00")
                for blob in _packed(nlris, _budget(0))]
    out = []
    for blob in _packed(nlris, _budget(4 + 3)):
        value = struct.pack("!HB", family[0], family[1]) + blob
        mp = struct.pack("!BBH", OPTIONAL | EXTENDED, MP_UNREACH, len(value)) + value
        out.append(wire.frame(wire.UPDATE, b"\x00\x00" + struct.pack("!H", len(mp)) + mp))
    return out


def family_of(prefix: str) -> Family:
    return IPV6_UNICAST if ":" in prefix else IPV4_UNICAST
