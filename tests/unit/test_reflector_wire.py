"""BGP framing, prefixes and OPEN (pybgp.reflector.wire), checked against ExaBGP."""

from __future__ import annotations

import random
import struct

import pytest

from pybgp.reflector import wire
from pybgp.reflector.wire import IPV4_UNICAST, IPV6_UNICAST, Caps, GracefulRestart, WireError


def test_framer_gives_the_same_messages_for_any_split():
    msgs = [wire.KEEPALIVE_MESSAGE, wire.frame(wire.UPDATE, b"\x00\x00\x00\x00"),
            wire.encode_open(64512, 90, "198.18.0.1", Caps(asn4=64512)),
            wire.encode_notification(6, 2)]
    stream = b"".join(msgs)
    want = [(m[18], m[19:]) for m in msgs]
    rng = random.Random(7)
    for _ in range(200):
        f = wire.Framer()
        got = []
        pos = 0
        while pos < len(stream):
            step = rng.randint(1, 40)
            got += f.feed(stream[pos:pos + step])
            pos += step
        assert got == want
        assert f.pending == 0


@pytest.mark.parametrize("data,code", [
    (b"\xfe" + b"\xff" * 15 + b"\x00\x13\x04", (1, 1)),  # marker
    (wire.MARKER + b"\x00\x12\x04", (1, 2)),  # shorter than a header
    (wire.MARKER + b"\x10\x01\x02", (1, 2)),  # longer than 4096
    (wire.MARKER + b"\x00\x14\x04\x00", (1, 2)),  # a KEEPALIVE with a body
    (wire.MARKER + b"\x00\x15\x01\x00\x00", (1, 2)),  # an OPEN below its minimum
    (wire.MARKER + b"\x00\x13\x09", (1, 3)),  # no such type
])
def test_framer_header_errors(data, code):
    with pytest.raises(WireError) as exc:
        wire.Framer().feed(data)
    assert (exc.value.code, exc.value.subcode) == code


def _exabgp_prefixes(data: bytes, afi: int) -> list[str]:
    from exabgp.bgp.message import Action
    from exabgp.bgp.message.update.nlri import NLRI
    from exabgp.protocol.family import AFI, SAFI

    wire._exabgp()
    out = []
    while data:
        nlri, data = NLRI.unpack_nlri(AFI.create(afi), SAFI.create(1), data, Action.ANNOUNCE,
                                      False)
        out.append(str(nlri.cidr))
    return out


def test_prefix_decoding_matches_exabgp_on_a_corpus():
    rng = random.Random(11)
    v4 = [f"198.19.{rng.randrange(256)}.{rng.randrange(256)}/32" for _ in range(300)]
    v4 += ["0.0.0.0/0", "198.19.0.0/16", "198.19.64.0/18", "10.0.0.0/8", "198.19.1.128/25"]
    raw = b"".join(wire.encode_prefix(p) for p in v4)
    assert wire.decode_ipv4(raw) == _exabgp_prefixes(raw, 1) == v4
    v6 = ["2001:db8::/32", "2001:db8:1:2::/64", "::/0", "2001:db8::1/128", "2001:db8:ff00::/40"]
    raw6 = b"".join(wire.encode_prefix(p) for p in v6)
    assert wire.decode_ipv6(raw6) == _exabgp_prefixes(raw6, 2) == v6


def test_host_bits_beyond_the_mask_are_cleared():
    assert wire.decode_ipv4(bytes([24, 198, 19, 5]) + bytes([31, 1, 2, 3, 255])) == [
        "198.19.5.0/24", "1.2.3.254/31"]
    assert wire.decode_ipv6(bytes([33]) + bytes.fromhex("20010db8ff")) == ["2001:db8:8000::/33"]


@pytest.mark.parametrize("data", [bytes([33, 1, 2, 3, 4, 5]), bytes([32, 1, 2, 3]),
                                  bytes([24, 1])])
def test_malformed_prefixes_are_a_session_reset(data):
    with pytest.raises(wire.NlriError) as exc:
        wire.decode_ipv4(data)
    assert (exc.value.code, exc.value.subcode) == (3, 10)


def test_open_round_trip_with_every_capability():
    caps = Caps(families=(IPV4_UNICAST, IPV6_UNICAST), asn4=4200000001, route_refresh=True,
                graceful_restart=GracefulRestart(120, restarting=True,
                                                 forwarding=frozenset({IPV4_UNICAST}),
                                                 families=(IPV4_UNICAST, IPV6_UNICAST)))
    msg = wire.encode_open(4200000001, 90, "198.18.0.1", caps)
    assert msg[:16] == wire.MARKER and struct.unpack("!H", msg[16:18])[0] == len(msg)
    assert struct.unpack("!H", msg[20:22])[0] == wire.AS_TRANS  # a 4-octet AS on the wire
    got = wire.decode_open(msg[19:])
    assert got.asn == 4200000001 and got.hold_time == 90 and got.router_id == "198.18.0.1"
    assert got.caps.families == (IPV4_UNICAST, IPV6_UNICAST)
    assert got.caps.route_refresh and got.caps.asn4 == 4200000001
    gr = got.caps.graceful_restart
    assert gr is not None and gr.time == 120 and gr.restarting
    assert gr.forwarding == {IPV4_UNICAST}


def test_open_without_multiprotocol_means_ipv4_unicast():
    # version 4, AS 64513, hold 90, id, no optional parameters
    body = bytes([4]) + struct.pack("!HH", 64513, 90) + bytes([198, 18, 0, 9]) + b"\x00"
    got = wire.decode_open(body)
    assert got.caps.families == (IPV4_UNICAST,) and not got.caps.multiprotocol
    assert got.caps.asn4 is None and got.asn == 64513


def test_bad_open_version_is_a_notification():
    body = bytes([3]) + struct.pack("!HH", 64513, 90) + bytes([198, 18, 0, 9]) + b"\x00"
    with pytest.raises(WireError) as exc:
        wire.decode_open(body)
    assert (exc.value.code, exc.value.subcode) == (2, 1)


def test_end_of_rib_markers():
    assert wire.end_of_rib(IPV4_UNICAST)[19:] == b"\x00\x00\x00\x00"
    v6 = wire.end_of_rib(IPV6_UNICAST)[19:]
    assert v6 == b"\x00\x00\x00\x06\x80\x0f\x03\x00\x02\x01"


def test_error_texts_read_like_birds():
    assert wire.error_text(4, 0) == "Hold timer expired"
    assert wire.error_text(6, 2) == "Administrative shutdown"
    assert wire.error_text(9, 9) == "Error 9/9"
