"""The sans-IO session FSM and the peer's connections (collisions, retry)."""

from __future__ import annotations

import pytest

from pybgp.reflector import peer as pr
from pybgp.reflector import session as s
from pybgp.reflector import wire
from pybgp.reflector.wire import IPV4_UNICAST, IPV6_UNICAST, Caps, GracefulRestart
from pybgp.speaker.rr import Role
from pybgp.testing.bgp_clients import attributes, update

LOCAL = s.LocalSettings(asn=64512, router_id="198.18.0.2", peer_as=64512, hold_time=90)


def their_open(asn=64512, hold=90, rid="198.18.0.11", **caps) -> bytes:
    caps.setdefault("asn4", asn)
    return wire.encode_open(asn, hold, rid, Caps(**caps))


def sent(actions) -> list[tuple[int, bytes]]:
    out = []
    for a in actions:
        if isinstance(a, s.Send):
            out += wire.Framer().feed(a.data)
    return out


def kinds(actions) -> list[str]:
    return [type(a).__name__ for a in actions]


def established(now=0.0, **open_kw):
    sess = s.Session(LOCAL, "198.18.0.11", now)
    out = sess.start(now)
    (kind, body), = sent(out)
    assert kind == wire.OPEN
    acts = sess.feed(their_open(**open_kw), now)
    assert kinds(acts) == ["Opened", "Send"] and sess.state == "OpenConfirm"
    acts = sess.feed(wire.KEEPALIVE_MESSAGE, now)
    assert kinds(acts) == ["Up"] and sess.state == "Established"
    return sess, acts[0].info


def test_open_exchange_and_negotiation():
    sess, info = established(hold=30, families=(IPV4_UNICAST, IPV6_UNICAST),
                             route_refresh=True,
                             graceful_restart=GracefulRestart(60, forwarding=frozenset(
                                 {IPV4_UNICAST})))
    assert info.hold_time == 30 and info.keepalive == 10  # the smaller hold time
    assert info.families == (IPV4_UNICAST,)  # we offer IPv4 only
    assert info.asn4 and info.route_refresh and info.router_id == "198.18.0.11"
    assert info.graceful_restart.time == 60
    assert info.cap_names() == ("refresh", "restart-able", "AS4")
    ours = wire.decode_open(sent(s.Session(LOCAL, "x", 0).start(0))[0][1])
    assert ours.caps.asn4 == 64512 and ours.caps.route_refresh
    assert ours.caps.graceful_restart.time == 120


def test_a_peer_without_asn4_reads_two_octet_paths():
    sess, info = established(asn4=None)
    assert not info.asn4 and sess.decoder is not None and not sess.decoder.asn4


@pytest.mark.parametrize("open_kw,code", [
    ({"asn": 64513}, (2, 2)),
    ({"hold": 2}, (2, 6)),
    ({"rid": "198.18.0.2"}, (2, 3)),  # our own identifier on an iBGP session
    ({"rid": "0.0.0.0"}, (2, 3)),
    ({"families": (IPV6_UNICAST,)}, (2, 7)),
])
def test_bad_opens_get_a_notification(open_kw, code):
    sess = s.Session(LOCAL, "198.18.0.11", 0)
    sess.start(0)
    acts = sess.feed(their_open(**open_kw), 0)
    [(kind, body)] = sent(acts)
    assert kind == wire.NOTIFICATION and tuple(body[:2]) == code
    assert isinstance(acts[-1], s.Closed) and not acts[-1].graceful
    assert sess.state == "Idle"


@pytest.mark.parametrize("state_msgs,unexpected,code", [
    ([], wire.KEEPALIVE_MESSAGE, (5, 1)),  # OpenSent wants an OPEN
    ([their_open()], update(attributes("198.18.0.11"), ["198.19.0.1/32"])[0], (5, 2)),
])
def test_unexpected_messages_are_fsm_errors(state_msgs, unexpected, code):
    sess = s.Session(LOCAL, "198.18.0.11", 0)
    sess.start(0)
    for m in state_msgs:
        sess.feed(m, 0)
    [(kind, body)] = sent(sess.feed(unexpected, 0))
    assert kind == wire.NOTIFICATION and tuple(body[:2]) == code


def test_hold_timer_and_keepalives():
    sess, info = established(now=100.0, hold=9)
    assert sess.tick(101.0) == []
    [(kind, _)] = sent(sess.tick(103.1))  # keepalive every hold/3
    assert kind == wire.KEEPALIVE
    sess.feed(wire.KEEPALIVE_MESSAGE, 105.0)  # restarts the hold timer
    assert not any(isinstance(a, s.Closed) for a in sess.tick(113.0))
    acts = sess.tick(114.1)
    [(kind, body)] = sent(acts)
    assert kind == wire.NOTIFICATION and tuple(body[:2]) == (4, 0)
    assert acts[-1].text == "Error: Hold timer expired" and not acts[-1].graceful


def test_hold_time_zero_means_no_timers():
    sess, info = established(hold=0)
    assert sess.tick(1e9) == [] and sess.next_deadline() is None


def test_updates_eor_and_route_refresh_are_delivered():
    sess, _ = established(route_refresh=True)
    [a] = sess.feed(update(attributes("198.18.0.11"), ["198.19.0.1/32"])[0], 1)
    assert isinstance(a, s.Routes) and a.update.groups[0][1] == ["198.19.0.1/32"]
    assert kinds(sess.feed(wire.end_of_rib(IPV4_UNICAST), 1)) == ["EndOfRib"]
    [r] = sess.feed(wire.encode_route_refresh(IPV4_UNICAST), 1)
    assert isinstance(r, s.Refresh) and r.family == IPV4_UNICAST
    assert sess.feed(wire.encode_route_refresh(IPV6_UNICAST), 1) == []  # not negotiated


def test_a_malformed_update_resets_with_a_notification():
    sess, _ = established()
    bad = wire.frame(wire.UPDATE, b"\x00\x00\x00\x04\x40\x01\x01\x00" + bytes([40]))
    acts = sess.feed(bad, 1)
    [(kind, body)] = sent(acts)
    assert kind == wire.NOTIFICATION and body[0] == 3
    assert isinstance(acts[-1], s.Closed)


def test_notification_and_connection_loss():
    sess, _ = established()
    [c] = sess.feed(wire.encode_notification(6, 2), 1)
    assert isinstance(c, s.Closed) and c.text == "Received: Administrative shutdown"
    assert not c.graceful
    sess2, _ = established()
    [c2] = sess2.connection_lost("Connection reset by peer")
    assert c2.graceful and c2.kind == "Socket"  # no NOTIFICATION: graceful restart applies


# -- the peer's connections -------------------------------------------------------------
def handshake(p: pr.Peer, conn: int, rid: str, *, outgoing: bool) -> list:
    if outgoing:
        p.connecting(conn, 0)
        p.connected(conn, 0)
    else:
        p.accepted(conn, 0)
    return p.data(conn, their_open(rid=rid), 0)


def spec(**kw) -> pr.PeerSpec:
    return pr.PeerSpec("198.18.0.11", "Node_198_18_0_11", Role.CLIENT, **kw)


@pytest.mark.parametrize("their_rid,winner", [
    ("198.18.0.11", 2),  # their identifier is higher: the connection they opened stays
    ("198.18.0.1", 1),  # ours (198.18.0.2) is higher: the one we opened stays
])
def test_collision_keeps_the_connection_of_the_higher_identifier(their_rid, winner):
    # RFC 4271 6.8: ours is conn 1 (outgoing), theirs conn 2 (incoming)
    p = pr.Peer(spec(), LOCAL, 0)
    handshake(p, 1, their_rid, outgoing=True)
    acts = handshake(p, 2, their_rid, outgoing=False)
    closed = [c for c, a in acts if isinstance(a, s.Closed)]
    assert closed == [3 - winner]
    cease = [a for c, a in acts if isinstance(a, s.Send) and c == 3 - winner]
    assert wire.Framer().feed(cease[-1].data)[0][1][:2] == bytes((6, 7))
    assert p.last_error == ""  # a collision is not an error
    # the survivor goes on to Established
    ups = p.data(winner, wire.KEEPALIVE_MESSAGE, 0)
    assert [type(a).__name__ for _, a in ups] == ["Up"] and p.established == winner


def test_a_connection_arriving_while_established_is_refused():
    p = pr.Peer(spec(passive=True), LOCAL, 0)
    handshake(p, 1, "198.18.0.11", outgoing=False)
    p.data(1, wire.KEEPALIVE_MESSAGE, 0)
    acts = handshake(p, 2, "198.18.0.11", outgoing=False)
    assert [c for c, a in acts if isinstance(a, s.Closed)] == [2]
    assert p.established == 1 and p.state == "Established"


def test_down_and_connect_retry():
    p = pr.Peer(spec(), LOCAL, 0, connect_retry=5)
    assert p.wants_connection(0)
    handshake(p, 1, "198.18.0.11", outgoing=True)
    p.data(1, wire.KEEPALIVE_MESSAGE, 0)
    acts = p.lost(1, "Connection reset by peer", 10)
    downs = [a for _, a in acts if isinstance(a, pr.Down)]
    assert downs and downs[0].graceful
    assert p.state == "Active" and p.last_error == "Socket: Connection reset by peer"
    assert not p.wants_connection(14) and p.wants_connection(15)
    passive = pr.Peer(spec(passive=True), LOCAL, 0)
    assert not passive.wants_connection(100) and passive.state == "Passive"


def test_protocol_names():
    assert pr.protocol_name("198.18.0.11", Role.CLIENT) == "Node_198_18_0_11"
    assert pr.protocol_name("198.18.0.1", Role.NON_CLIENT) == "Global_198_18_0_1"
