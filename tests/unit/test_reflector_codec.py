"""UPDATE decoding with RFC 7606's outcomes, and the reflected encoding."""

from __future__ import annotations

import socket
import struct

import pytest

from pybgp.reflector import codec, wire
from pybgp.reflector.wire import IPV4_UNICAST, IPV6_UNICAST, WireError
from pybgp.testing.bgp_clients import attributes, raw_update

NH = "198.18.0.11"
P1 = bytes([32, 198, 19, 0, 1])
P2 = bytes([26, 198, 19, 1, 0])


def body(msg: bytes) -> bytes:
    return msg[19:]


def decoder(**kw) -> codec.UpdateDecoder:
    return codec.UpdateDecoder("198.18.0.11", "198.18.0.11", asn4=True, **kw)


def attr(flags: int, code: int, value: bytes) -> bytes:
    return bytes((flags, code, len(value))) + value


ORIGIN = attr(0x40, 1, b"\x00")
AS_PATH = attr(0x40, 2, b"")
NEXT_HOP = attr(0x40, 3, socket.inet_aton(NH))
LOCAL_PREF = attr(0x40, 5, struct.pack("!I", 100))
GOOD = ORIGIN + AS_PATH + NEXT_HOP + LOCAL_PREF


def test_a_good_update_is_one_shared_path():
    d = decoder()
    upd = d.decode(body(raw_update(GOOD, P1 + P2)))
    assert not upd.error and not upd.withdrawn
    [(path, prefixes)] = upd.groups
    assert prefixes == ["198.19.0.1/32", "198.19.1.0/26"]
    assert (path.next_hop, path.local_pref, path.origin, path.as_path) == (NH, 100, "igp", ())
    assert path.peer == "198.18.0.11" and path.peer_router_id == "198.18.0.11"
    # the same attributes again: the very same path object (stored once in the RIB)
    [(again, _)] = d.decode(body(raw_update(GOOD, P1))).groups
    assert again is path


def test_decision_values_come_from_exabgp():
    a = attributes(NH, local_pref=200, med=7, as_path=(65001, 65002),
                   originator_id="198.18.0.99", cluster_list=("198.18.0.100", "198.18.0.101"))
    [(p, _)] = decoder().decode(body(raw_update(a, P1))).groups
    assert (p.local_pref, p.med, p.as_path) == (200, 7, (65001, 65002))
    assert p.originator_id == "198.18.0.99"
    assert p.cluster_list == ("198.18.0.100", "198.18.0.101")


@pytest.mark.parametrize("bad,why", [
    (attr(0x40, 1, b"\x05") + AS_PATH + NEXT_HOP, "ORIGIN"),  # bad ORIGIN value
    (attr(0x40, 1, b"\x00\x00") + AS_PATH + NEXT_HOP, "ORIGIN"),  # ORIGIN length
    (ORIGIN + AS_PATH + attr(0x40, 3, b"\xc6\x12\x00"), "NEXT_HOP"),  # NEXT_HOP length
    (GOOD + attr(0x80, 4, b"\x00\x00\x01"), "MULTI_EXIT_DISC"),  # MED length
    (ORIGIN + AS_PATH + NEXT_HOP + attr(0x40, 5, b"\x00"), "LOCAL_PREF"),
    (GOOD + attr(0x80, 9, b"\x01\x02"), "ORIGINATOR_ID"),
    (GOOD + attr(0x80, 10, b"\x01\x02\x03\x04\x05"), "CLUSTER_LIST"),
    (GOOD + attr(0xC0, 8, b"\x00\x01\x02"), "COMMUNITY"),
    (GOOD + attr(0xC0, 32, bytes(11)), "LARGE_COMMUNITY"),
    (ORIGIN + attr(0x40, 2, b"\x02\x02\x00\x00\xfd\xe8") + NEXT_HOP, "AS_PATH"),  # short seg
    (ORIGIN + attr(0x40, 2, b"\x07\x01\x00\x00\xfd\xe8") + NEXT_HOP, "AS_PATH"),  # seg type
    (attr(0xC0, 1, b"\x00") + AS_PATH + NEXT_HOP, "ORIGIN"),  # flags: optional well-known
    (GOOD + attr(0x40, 9, socket.inet_aton("1.2.3.4")), "ORIGINATOR_ID"),  # flags
    (GOOD + attr(0x40, 99, b"x"), "attribute 99"),  # unrecognized well-known
    (AS_PATH + NEXT_HOP, "missing ORIGIN"),
    (ORIGIN + NEXT_HOP, "missing AS_PATH"),
    (ORIGIN + AS_PATH, "missing NEXT_HOP"),
    (GOOD + bytes((0x80, 9, 40)) + b"\x01\x02", "runs past"),  # an attribute overruns
])
def test_rfc7606_treat_as_withdraw(bad, why):
    d = decoder()
    upd = d.decode(body(raw_update(bad, P1 + P2, withdrawn=bytes([24, 198, 19, 9]))))
    assert why in upd.error
    assert upd.groups == []
    assert upd.withdrawn == ["198.19.9.0/24", "198.19.0.1/32", "198.19.1.0/26"]


def test_rfc7606_attribute_discard_keeps_the_route():
    upd = decoder().decode(body(raw_update(GOOD + attr(0xC0, 7, b"\x00\x01"), P1)))
    assert not upd.error and upd.discarded == ("AGGREGATOR",)
    [(path, prefixes)] = upd.groups
    assert prefixes == ["198.19.0.1/32"]


def test_rfc7606_duplicates_after_the_first_are_ignored():
    twice = GOOD + attr(0x40, 5, struct.pack("!I", 300))
    [(path, _)] = decoder().decode(body(raw_update(twice, P1))).groups
    assert path.local_pref == 100


@pytest.mark.parametrize("msg", [
    raw_update(GOOD, bytes([33, 1, 2, 3, 4, 5])),  # NLRI mask > 32
    raw_update(GOOD, bytes([32, 1, 2])),  # NLRI cut short
    raw_update(GOOD, P1, withdrawn=bytes([40])),  # withdrawn routes broken
    raw_update(GOOD + bytes((0x90, 14, 0, 2, 0, 2)), b""),  # MP_REACH too short
    raw_update(GOOD + attr(0x80, 15, b"\x00\x01\x01") + attr(0x80, 15, b"\x00\x01\x01"), b""),
    raw_update(GOOD + bytes((0x90, 14, 0, 40)) + b"\x00\x02\x01", b""),  # MP_REACH overruns
])
def test_rfc7606_session_reset_where_the_prefixes_are_unknown(msg):
    with pytest.raises(WireError):
        decoder().decode(body(msg))


def test_body_lengths_that_do_not_add_up_are_a_reset():
    with pytest.raises(WireError):
        decoder().decode(b"\x00\x00\x00\x30" + GOOD)


def test_unknown_optional_transitive_is_passed_on_with_partial_set():
    unknown = attr(0xC0, 99, b"hello")
    [(path, _)] = decoder().decode(body(raw_update(GOOD + unknown, P1))).groups
    out = codec.reflected_attributes(path, "198.18.0.100", True)
    assert bytes((0xE0, 99, 5)) + b"hello" in out  # optional, transitive, partial
    # an unknown non-transitive one is dropped
    [(p2, _)] = decoder().decode(body(raw_update(GOOD + attr(0x80, 98, b"x"), P1))).groups
    assert bytes((0x80, 98)) not in codec.reflected_attributes(p2, "198.18.0.100", True)


def test_reflected_attributes_add_originator_and_cluster_list_and_keep_the_rest():
    a = attributes(NH, local_pref=150, med=5, as_path=(65001,), cluster_list=("10.0.0.7",))
    [(path, _)] = decoder().decode(body(raw_update(a, P1))).groups
    out = codec.reflected_attributes(path, "198.18.0.100", True)
    [(back, _)] = codec.UpdateDecoder("198.18.0.2", "198.18.0.2", asn4=True).decode(
        body(raw_update(out, P1))).groups
    assert back.originator_id == "198.18.0.11"  # the peer's router id, absent before
    assert back.cluster_list == ("198.18.0.100", "10.0.0.7")  # ours prepended
    assert (back.next_hop, back.local_pref, back.med, back.as_path) == (NH, 150, 5, (65001,))
    # an ORIGINATOR_ID already there is kept
    a2 = attributes(NH, originator_id="198.18.0.55")
    [(p2, _)] = decoder().decode(body(raw_update(a2, P1))).groups
    [(b2, _)] = codec.UpdateDecoder("x", "198.18.0.2", asn4=True).decode(
        body(raw_update(codec.reflected_attributes(p2, "198.18.0.100", True), P1))).groups
    assert b2.originator_id == "198.18.0.55"
    # computed once per attribute set and AS size
    assert codec.reflected_attributes(path, "198.18.0.100", True) is out


def test_reflected_to_a_two_octet_peer_carries_as4_path():
    a = attributes(NH, as_path=(4200000001, 65001))
    [(path, _)] = decoder().decode(body(raw_update(a, P1))).groups
    out = codec.reflected_attributes(path, "198.18.0.100", False)
    assert struct.pack("!H", wire.AS_TRANS) in out and bytes((0xC0, 17)) in out
    old = codec.UpdateDecoder("x", "198.18.0.2", asn4=False)
    [(back, _)] = old.decode(body(raw_update(out, P1))).groups
    assert back.as_path == (4200000001, 65001)


def test_announce_packs_many_prefixes_per_message_within_4096():
    [(path, _)] = decoder().decode(body(raw_update(GOOD, P1))).groups
    attrs = codec.reflected_attributes(path, "198.18.0.100", True)
    prefixes = [f"198.19.{i // 256}.{i % 256}/32" for i in range(2000)]
    msgs = codec.announce_messages(IPV4_UNICAST, attrs, b"", prefixes)
    assert len(msgs) == 3 and all(len(m) <= 4096 for m in msgs)
    got = [p for m in msgs for _, ps in decoder().decode(body(m)).groups for p in ps]
    assert got == prefixes
    w = codec.withdraw_messages(IPV4_UNICAST, prefixes)
    assert len(w) == 3 and sum(len(decoder().decode(body(m)).withdrawn) for m in w) == 2000


def test_ipv6_through_mp_reach_and_unreach():
    nh = socket.inet_pton(socket.AF_INET6, "2001:db8::11")
    a = ORIGIN + AS_PATH + LOCAL_PREF
    prefixes = ["2001:db8:1::/64", "2001:db8:2::/48"]
    d = decoder(families=(IPV4_UNICAST, IPV6_UNICAST))
    [msg] = codec.announce_messages(IPV6_UNICAST, a, nh, prefixes)
    [(path, got)] = d.decode(body(msg)).groups
    assert got == prefixes and path.next_hop == "2001:db8::11"
    assert path.attrs is not None and path.attrs.family == IPV6_UNICAST
    out = codec.reflected_attributes(path, "198.18.0.100", True)
    [again] = codec.announce_messages(IPV6_UNICAST, out, path.attrs.nh_raw, got)
    [(back, _)] = d.decode(body(again)).groups
    assert back.cluster_list == ("198.18.0.100",) and back.next_hop == "2001:db8::11"
    [w] = codec.withdraw_messages(IPV6_UNICAST, prefixes[:1])
    assert d.decode(body(w)).withdrawn == prefixes[:1]
    assert d.decode(body(wire.end_of_rib(IPV6_UNICAST))).eor == IPV6_UNICAST
    # a family the session did not negotiate is not taken
    assert decoder().decode(body(msg)).groups == []


def test_end_of_rib():
    assert decoder().decode(b"\x00\x00\x00\x00").eor == IPV4_UNICAST
