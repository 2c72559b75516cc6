"""BGP-4 on the wire, pure: message framing, prefixes, OPEN and NOTIFICATION.

Owns: the 19-byte header and its checks (RFC 4271 §4.1, §6.1), splitting a
byte stream into messages (``Framer``: any split of the bytes gives the same
messages), the NLRI prefix encoding of IPv4 and IPv6 unicast (RFC 4271 §4.3,
RFC 4760 §5) in both directions, OPEN with the capabilities pybgp speaks
(``Caps``; ExaBGP's classes encode and decode them), NOTIFICATION and
ROUTE-REFRESH bodies, and the texts BIRD shows for errors.

Prefixes are text (``"198.19.0.1/32"``, ``"2001:db8::/64"``) in canonical
form: host bits beyond the mask are cleared when reading, as BIRD does.

Must never: do I/O, keep state between messages other than the ``Framer``'s
buffer, or accept a malformed message silently: every check raises
``WireError`` carrying the NOTIFICATION (code, subcode, data) to send.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass, field

MARKER = b"\xff" * 16
HEADER_LEN = 19
MAX_MESSAGE = 4096
OPEN, UPDATE, NOTIFICATION, KEEPALIVE, ROUTE_REFRESH = 1, 2, 3, 4, 5
_MIN_LEN = {OPEN: 29, UPDATE: 23, NOTIFICATION: 21, KEEPALIVE: 19, ROUTE_REFRESH: 23}

Family = tuple[int, int]  # (AFI, SAFI)
IPV4_UNICAST: Family = (1, 1)
IPV6_UNICAST: Family = (2, 1)
FAMILY_NAMES = {IPV4_UNICAST: "ipv4", IPV6_UNICAST: "ipv6"}
AS_TRANS = 23456


class WireError(Exception):
    """A protocol error: the NOTIFICATION ``(code, subcode, data)`` to send."""

    def __init__(self, code: int, subcode: int, data: bytes = b"", text: str = ""):
        self.code, self.subcode, self.data = code, subcode, data
        self.text = text or error_text(code, subcode)
        super().__init__(self.text)


# -- framing -----------------------------------------------------------------
def frame(kind: int, body: bytes = b"") -> bytes:
    """One message: marker, length, type, body."""
    return MARKER + struct.pack("!HB", HEADER_LEN + len(body), kind) + body


KEEPALIVE_MESSAGE = frame(KEEPALIVE)


class Framer:
    """Splits a byte stream into ``(type, body)`` messages.

    Checks what RFC 4271 §6.1 asks of every header: the marker (1/1), a
    length within 19..4096 and at least the minimum of its type (1/2, the
    length as data) and a known type (1/3, the type as data).
    """

    def __init__(self) -> None:
        self._buf = bytearray()

    @property
    def pending(self) -> int:
        """Bytes received but not yet a whole message."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        buf = self._buf
        buf += data
        out: list[tuple[int, bytes]] = []
        pos, end = 0, len(buf)
        try:
            while end - pos >= HEADER_LEN:
                if buf[pos:pos + 16] != MARKER:
                    raise WireError(1, 1)
                length = (buf[pos + 16] << 8) | buf[pos + 17]
                kind = buf[pos + 18]
                if not HEADER_LEN <= length <= MAX_MESSAGE:
                    raise WireError(1, 2, bytes(buf[pos + 16:pos + 18]))
                minimum = _MIN_LEN.get(kind)
                if minimum is None:
                    raise WireError(1, 3, bytes([kind]))
                if length < minimum or (kind == KEEPALIVE and length != HEADER_LEN):
                    raise WireError(1, 2, bytes(buf[pos + 16:pos + 18]))
                if end - pos < length:
                    break
                out.append((kind, bytes(buf[pos + HEADER_LEN:pos + length])))
                pos += length
        finally:
            del buf[:pos]
        return out


# -- prefixes ----------------------------------------------------------------
class NlriError(WireError):
    """A prefix field that cannot be read (RFC 7606 §5.3: session reset, 3/10)."""

    def __init__(self, text: str):
        super().__init__(3, 10, b"", text)


_inet_ntoa, _inet_aton = socket.inet_ntoa, socket.inet_aton
_PAD = (b"\x00\x00\x00\x00", b"\x00\x00\x00", b"\x00\x00", b"\x00", b"")


def decode_ipv4(data: bytes) -> list[str]:
    """The IPv4 prefixes of an NLRI (or withdrawn routes) field."""
    out: list[str] = []
    append = out.append
    pos, end = 0, len(data)
    while pos < end:
        mask = data[pos]
        if mask == 32 and pos + 5 <= end:  # the common case: a /32
            append(_inet_ntoa(data[pos + 1:pos + 5]) + "/32")
            pos += 5
            continue
        size = (mask + 7) >> 3
        if mask > 32:
            raise NlriError(f"IPv4 prefix length {mask} > 32")
        if pos + 1 + size > end:
            raise NlriError("IPv4 prefix runs past the end of its field")
        raw = data[pos + 1:pos + 1 + size] + _PAD[size]
        if mask % 8:
            value = int.from_bytes(raw, "big") & (0xFFFFFFFF << (32 - mask)) & 0xFFFFFFFF
            raw = value.to_bytes(4, "big")
        append(f"{_inet_ntoa(raw)}/{mask}")
        pos += 1 + size
    return out


def decode_ipv6(data: bytes) -> list[str]:
    out: list[str] = []
    pos, end = 0, len(data)
    while pos < end:
        mask = data[pos]
        size = (mask + 7) >> 3
        if mask > 128:
            raise NlriError(f"IPv6 prefix length {mask} > 128")
        if pos + 1 + size > end:
            raise NlriError("IPv6 prefix runs past the end of its field")
        value = int.from_bytes(data[pos + 1:pos + 1 + size] + bytes(16 - size), "big")
        if mask < 128:
            value &= ((1 << 128) - 1) ^ ((1 << (128 - mask)) - 1)
        out.append(f"{socket.inet_ntop(socket.AF_INET6, value.to_bytes(16, 'big'))}/{mask}")
        pos += 1 + size
    return out


def encode_prefix(prefix: str) -> bytes:
    """``"a.b.c.d/n"`` or an IPv6 prefix → length octet + significant octets."""
    addr, _, length = prefix.partition("/")
    mask = int(length)
    raw = socket.inet_pton(socket.AF_INET6, addr) if ":" in addr else _inet_aton(addr)
    return bytes((mask,)) + raw[:(mask + 7) >> 3]


def is_ipv6(prefix: str) -> bool:
    return ":" in prefix


# -- OPEN ----------------------------------------------------------------------
@dataclass(frozen=True)
class GracefulRestart:
    """The graceful-restart capability (RFC 4724 §3): restart time, the
    Restart State bit, and the families whose forwarding state is kept."""

    time: int
    restarting: bool = False
    forwarding: frozenset[Family] = frozenset()
    families: tuple[Family, ...] = ()  # every family listed, F bit or not


@dataclass(frozen=True)
class Caps:
    """The capabilities of one OPEN that pybgp acts on."""

    families: tuple[Family, ...] = (IPV4_UNICAST,)
    asn4: int | None = None  # the 4-octet AS, when advertised
    route_refresh: bool = False
    enhanced_refresh: bool = False
    graceful_restart: GracefulRestart | None = None
    add_path: bool = False
    extended_message: bool = False
    multiprotocol: bool = True  # False: the peer sent no MP capability (IPv4 implied)


@dataclass(frozen=True)
class OpenMessage:
    asn: int  # the peer's AS (the 4-octet one when advertised)
    hold_time: int
    router_id: str
    caps: Caps = field(default_factory=Caps)


def _exabgp() -> None:
    """ExaBGP's classes log through a logger its own main sets up: keep them quiet."""
    from exabgp.logger import log

    if not getattr(_exabgp, "done", False):
        log.disable()
        _exabgp.done = True  # type: ignore[attr-defined]


def encode_open(asn: int, hold_time: int, router_id: str, caps: Caps) -> bytes:
    """An OPEN message (ExaBGP's ``Open`` and capability classes encode it)."""
    _exabgp()
    from exabgp.bgp.message.open import Open
    from exabgp.bgp.message.open.asn import ASN
    from exabgp.bgp.message.open.capability import Capabilities, Capability
    from exabgp.bgp.message.open.capability.asn4 import ASN4
    from exabgp.bgp.message.open.capability.graceful import Graceful
    from exabgp.bgp.message.open.capability.mp import MultiProtocol
    from exabgp.bgp.message.open.capability.refresh import RouteRefresh
    from exabgp.bgp.message.open.holdtime import HoldTime
    from exabgp.bgp.message.open.routerid import RouterID
    from exabgp.bgp.message.open.version import Version
    from exabgp.protocol.family import AFI, SAFI

    c = Capabilities()
    c[Capability.CODE.MULTIPROTOCOL] = MultiProtocol(
        (AFI.create(a), SAFI.create(s)) for a, s in caps.families)
    if caps.asn4 is not None:
        c[Capability.CODE.FOUR_BYTES_ASN] = ASN4(caps.asn4)
    if caps.route_refresh:
        c[Capability.CODE.ROUTE_REFRESH] = RouteRefresh()
    gr = caps.graceful_restart
    if gr is not None:
        c[Capability.CODE.GRACEFUL_RESTART] = Graceful().set(
            Graceful.RESTART_STATE if gr.restarting else 0, gr.time,
            [(AFI.create(a), SAFI.create(s),
              Graceful.FORWARDING_STATE if (a, s) in gr.forwarding else 0)
             for a, s in (gr.families or caps.families)])
    wire_as = asn if asn <= 0xFFFF else AS_TRANS
    msg = Open(Version(4), ASN(wire_as), HoldTime(hold_time), RouterID(router_id), c)
    return bytes(msg.message())


def decode_open(body: bytes) -> OpenMessage:
    """Read an OPEN body; ``WireError`` with ExaBGP's NOTIFICATION when bad."""
    _exabgp()
    from exabgp.bgp.message.notification import Notify
    from exabgp.bgp.message.open import Open
    from exabgp.bgp.message.open.capability import Capability

    try:
        msg = Open.unpack_message(body)
    except Notify as exc:
        raise WireError(exc.code, exc.subcode, b"", str(exc)) from None
    except (IndexError, struct.error, ValueError) as exc:
        raise WireError(2, 0, b"", f"malformed OPEN: {exc}") from None
    cap = msg.capabilities
    code = Capability.CODE
    mp = cap.get(code.MULTIPROTOCOL)
    families = tuple(dict.fromkeys((int(a), int(s)) for a, s in mp)) if mp else (IPV4_UNICAST,)
    asn4 = int(cap[code.FOUR_BYTES_ASN]) if code.FOUR_BYTES_ASN in cap else None
    gr = None
    if code.GRACEFUL_RESTART in cap:
        g = cap[code.GRACEFUL_RESTART]
        fams = tuple((int(a), int(s)) for a, s in g)
        gr = GracefulRestart(
            time=int(g.restart_time), restarting=bool(g.restart_flag & 0x8),
            forwarding=frozenset((int(a), int(s)) for (a, s), f in g.items() if f & 0x80),
            families=fams)
    caps = Caps(families=families, asn4=asn4,
                route_refresh=code.ROUTE_REFRESH in cap,
                enhanced_refresh=code.ENHANCED_ROUTE_REFRESH in cap,
                graceful_restart=gr, add_path=code.ADD_PATH in cap,
                extended_message=code.EXTENDED_MESSAGE in cap,
                multiprotocol=mp is not None)
    asn = asn4 if asn4 is not None else int(msg.asn)
    return OpenMessage(asn=asn, hold_time=int(msg.hold_time), router_id=str(msg.router_id),
                       caps=caps)


# -- NOTIFICATION, ROUTE-REFRESH, End-of-RIB ---------------------------------------
def encode_notification(code: int, subcode: int, data: bytes = b"") -> bytes:
    return frame(NOTIFICATION, bytes((code, subcode)) + data)


def decode_notification(body: bytes) -> tuple[int, int, bytes]:
    return body[0], body[1], body[2:]


def encode_route_refresh(family: Family) -> bytes:
    return frame(ROUTE_REFRESH, struct.pack("!HBB", family[0], 0, family[1]))


def decode_route_refresh(body: bytes) -> Family:
    afi, _reserved, safi = struct.unpack("!HBB", body[:4])
    return afi, safi


def end_of_rib(family: Family) -> bytes:
    """RFC 4724 §2: an empty UPDATE for IPv4 unicast, else an empty MP_UNREACH."""
    if family == IPV4_UNICAST:
        return frame(UPDATE, b"\x00\x00\x00\x00")
    attr = struct.pack("!BBBHB", 0x80, 15, 3, family[0], family[1])
    return frame(UPDATE, b"\x00\x00" + struct.pack("!H", len(attr)) + attr)


# -- error texts (as BIRD words them in "Last error") --------------------------------
_CODES = {1: "Message header error", 2: "OPEN message error", 3: "UPDATE message error",
          4: "Hold timer expired", 5: "Finite state machine error", 6: "Cease"}
_SUBCODES = {
    (1, 1): "Connection not synchronized", (1, 2): "Bad message length",
    (1, 3): "Bad message type", (2, 1): "Unsupported version number",
    (2, 2): "Bad peer AS", (2, 3): "Bad BGP identifier",
    (2, 4): "Unsupported optional parameter", (2, 6): "Unacceptable hold time",
    (2, 7): "Required capability missing", (3, 1): "Malformed attribute list",
    (3, 2): "Unrecognized well-known attribute", (3, 3): "Missing mandatory attribute",
    (3, 4): "Attribute flags error", (3, 5): "Attribute length error",
    (3, 6): "Invalid ORIGIN attribute", (3, 8): "Invalid NEXT_HOP attribute",
    (3, 9): "Optional attribute error", (3, 10): "Invalid network field",
    (3, 11): "Malformed AS_PATH", (6, 1): "Maximum number of prefixes reached",
    (6, 2): "Administrative shutdown", (6, 3): "Peer de-configured",
    (6, 4): "Administrative reset", (6, 5): "Connection rejected",
    (6, 6): "Configuration change", (6, 7): "Connection collision resolution",
    (6, 8): "Out of Resources",
}


def error_text(code: int, subcode: int) -> str:
    return _SUBCODES.get((code, subcode)) or _CODES.get(code, f"Error {code}/{subcode}")
