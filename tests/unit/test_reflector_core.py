"""The reflector core: RFC 4456 reflection, loops, best path, update groups,
graceful-restart helper — with real encodings in and out (no sockets)."""

from __future__ import annotations

import pytest

from pybgp.reflector import codec, wire
from pybgp.reflector.core import Reflector, Settings
from pybgp.reflector.groups import Outbox
from pybgp.reflector.session import PeerInfo
from pybgp.reflector.wire import IPV4_UNICAST, GracefulRestart
from pybgp.speaker import rr
from pybgp.speaker.rib import LoopReason
from pybgp.speaker.rr import Role
from pybgp.testing.bgp_clients import attributes, update

RID, CID = "198.18.0.2", "198.18.0.100"
A, B, C, D = "198.18.0.11", "198.18.0.12", "198.18.0.13", "198.18.0.14"
N1, N2 = "198.18.0.21", "198.18.0.22"
GR = GracefulRestart(120, forwarding=frozenset({IPV4_UNICAST}), families=(IPV4_UNICAST,))


class Net:
    """A core and the peers around it, each keeping the table it was sent."""

    def __init__(self, **settings):
        settings.setdefault("startup_hold", 0)
        self.core = Reflector(Settings(router_id=RID, cluster_id=CID, asn=64512, **settings), 0)
        self.core.start()
        self.boxes: dict[str, Outbox] = {}
        self.tables: dict[str, dict[str, codec.RPath]] = {}
        self.eor: dict[str, int] = {}
        self.raw: dict[str, list[bytes]] = {}
        self.asn4: dict[str, bool] = {}

    def up(self, addr: str, role: Role = Role.CLIENT, *, asn4: bool = True,
           gr: GracefulRestart | None = None):
        self.asn4[addr] = asn4
        info = PeerInfo(router_id=addr, asn=64512, hold_time=90, families=(IPV4_UNICAST,),
                        asn4=asn4, route_refresh=True, graceful_restart=gr)
        box = self.boxes[addr] = Outbox(addr)
        self.tables[addr], self.eor[addr], self.raw[addr] = {}, 0, []
        return self.core.peer_up(addr, role, info, box, 0)

    def down(self, addr: str, graceful: bool = False):
        return self.core.peer_down(addr, graceful, 0)

    def send(self, addr: str, prefixes, **attrs):
        nh = attrs.pop("next_hop", addr)
        dec = codec.UpdateDecoder(addr, addr, asn4=True)
        for m in update(attributes(nh, **attrs), prefixes):
            self.core.routes(addr, dec.decode(m[19:]))
        return self.core.flush()

    def withdraw(self, addr: str, prefixes):
        dec = codec.UpdateDecoder(addr, addr, asn4=True)
        for m in codec.withdraw_messages(IPV4_UNICAST, prefixes):
            self.core.routes(addr, dec.decode(m[19:]))
        return self.core.flush()

    def received(self, addr: str) -> dict[str, codec.RPath]:
        """Drain ``addr``'s outbox as a socket would and apply what it holds."""
        box = self.boxes[addr]
        data = b""
        while True:
            bufs = box.buffers()
            if not bufs:
                break
            chunk = b"".join(bytes(b) for b in bufs)
            data += chunk
            box.advance(len(chunk))
        dec = codec.UpdateDecoder(RID, RID, asn4=self.asn4[addr])
        table = self.tables[addr]
        for kind, body in wire.Framer().feed(data):
            assert kind == wire.UPDATE
            self.raw[addr].append(body)
            upd = dec.decode(body)
            if upd.eor is not None:
                self.eor[addr] += 1
            for p in upd.withdrawn:
                table.pop(p, None)
            for path, prefixes in upd.groups:
                for p in prefixes:
                    table[p] = path
        return table


def test_reflection_matrix():
    net = Net()
    for a in (A, B):
        net.up(a, Role.CLIENT)
    for n in (N1, N2):
        net.up(n, Role.NON_CLIENT)
    net.send(A, ["198.19.1.0/26"])
    net.send(N1, ["198.19.2.0/26"])
    # from a client: to every client and non-client but itself
    # from a non-client: to clients only
    assert set(net.received(A)) == {"198.19.2.0/26"}
    assert set(net.received(B)) == {"198.19.1.0/26", "198.19.2.0/26"}
    assert set(net.received(N1)) == {"198.19.1.0/26"}
    assert set(net.received(N2)) == {"198.19.1.0/26"}


@pytest.mark.parametrize("src,dst,expected", [
    (Role.CLIENT, Role.CLIENT, True), (Role.CLIENT, Role.NON_CLIENT, True),
    (Role.NON_CLIENT, Role.CLIENT, True), (Role.NON_CLIENT, Role.NON_CLIENT, False),
    (Role.LOCAL, Role.CLIENT, True), (Role.LOCAL, Role.NON_CLIENT, True),
])
def test_rfc4456_rules(src, dst, expected):
    assert rr.reflects(src, dst) is expected
    assert rr.send_to(src, "a", dst, "b") is expected
    assert rr.send_to(src, "a", dst, "a") is False  # never back to the sender


def test_reflected_attributes_next_hop_unchanged():
    net = Net()
    net.up(A)
    net.up(B)
    net.send(A, ["198.19.1.0/26"], next_hop="198.18.0.77", local_pref=150,
             cluster_list=("10.9.9.9",))
    p = net.received(B)["198.19.1.0/26"]
    assert p.next_hop == "198.18.0.77" and p.local_pref == 150
    assert p.originator_id == A  # set: it had none
    assert p.cluster_list == (CID, "10.9.9.9")  # ours prepended
    assert rr.reflected(None, (), A, CID) == (A, (CID,))
    assert rr.reflected("1.1.1.1", ("2.2.2.2",), A, CID) == ("1.1.1.1", (CID, "2.2.2.2"))


@pytest.mark.parametrize("attrs,reason", [
    ({"originator_id": RID}, LoopReason.ORIGINATOR_ID),
    ({"cluster_list": ("10.0.0.1", CID)}, LoopReason.CLUSTER_LIST),
])
def test_loops_are_dropped_and_withdraw_what_was_there(attrs, reason):
    net = Net()
    net.up(A)
    net.up(B)
    net.send(A, ["198.19.1.0/26", "198.19.1.64/26"])
    assert len(net.received(B)) == 2
    net.send(A, ["198.19.1.0/26", "198.19.3.0/26"], **attrs)
    assert set(net.received(B)) == {"198.19.1.64/26"}
    assert net.core.rib.rejected[reason] == 2
    assert net.core.peers[A].loops == 2


def test_best_path_rfc4456_tie_breakers():
    net = Net()
    for a in (A, C, B):
        net.up(a)
    # same ORIGINATOR_ID: the shorter CLUSTER_LIST wins
    net.send(A, ["198.19.5.0/26"], originator_id="198.18.0.50",
             cluster_list=("10.0.0.1", "10.0.0.2"))
    net.send(C, ["198.19.5.0/26"], originator_id="198.18.0.50", cluster_list=("10.0.0.3",))
    best = net.core.rib.best_path("198.19.5.0/26")
    assert best is not None and best.peer == C
    assert net.received(B)["198.19.5.0/26"].cluster_list == (CID, "10.0.0.3")
    # ORIGINATOR_ID stands in for the BGP identifier: .13 (C, none) beats .50 (A's
    # originator) although A's own identifier .11 is lower
    net.send(A, ["198.19.6.0/26"], originator_id="198.18.0.50")
    net.send(C, ["198.19.6.0/26"])
    assert net.core.rib.best_path("198.19.6.0/26").peer == C


def test_best_path_change_sends_the_new_source_a_withdrawal():
    net = Net()
    for a in (A, B, C):
        net.up(a)
    net.send(A, ["198.19.7.0/26"])
    net.received(C)
    net.received(A)
    net.send(C, ["198.19.7.0/26"], local_pref=200)
    assert "198.19.7.0/26" not in net.received(C)  # not its own path back: withdrawn
    assert net.received(A)["198.19.7.0/26"].originator_id == C  # A now gets C's
    assert net.received(B)["198.19.7.0/26"].local_pref == 200
    net.withdraw(C, ["198.19.7.0/26"])
    assert "198.19.7.0/26" not in net.received(A)  # back to A's own: withdrawn from A
    assert net.received(C)["198.19.7.0/26"].originator_id == A
    assert net.received(B)["198.19.7.0/26"].local_pref == 100
    net.withdraw(A, ["198.19.7.0/26"])
    assert "198.19.7.0/26" not in net.received(B) and "198.19.7.0/26" not in net.received(C)


def test_update_group_encodes_once_for_all_members():
    net = Net()
    members = [f"198.18.1.{i}" for i in range(1, 11)]
    for a in [A, *members]:
        net.up(a)
    group = net.boxes[A].group
    assert group is not None and all(net.boxes[m].group is group for m in members)
    for m in [A, *members]:
        net.received(m)  # their End-of-RIB
    before = group.encoded
    prefixes = [f"198.19.{i // 256}.{i % 256}/32" for i in range(2000)]
    net.send(A, prefixes)
    assert group.encoded - before == 3  # 2000 /32s in 3 UPDATEs, for 10 members
    firsts = [net.boxes[m].buffers()[0] for m in members]
    assert all(b is firsts[0] for b in firsts)  # the same bytes object for every member
    assert net.boxes[A].buffers() == []  # and nothing for the sender
    for m in members:
        assert len(net.received(m)) == 2000
    # memory: nothing per member per route, only the shared log (now read by all)
    group.trim()
    assert not group.log and group.log_bytes == 0


def test_groups_follow_the_outbound_view():
    net = Net()
    net.up(A)
    net.up(B, asn4=False)
    net.up(N1, Role.NON_CLIENT)
    net.up(C)
    keys = {a: net.boxes[a].group.key for a in (A, B, N1, C)}
    assert keys[A] == keys[C] != keys[B] and keys[N1].role is Role.NON_CLIENT
    assert len(net.core.groups) == 3
    net.send(A, ["198.19.1.0/26"], as_path=(4200000001,))
    assert net.received(B)["198.19.1.0/26"].as_path == (4200000001,)  # AS4_PATH for B
    assert net.received(C)["198.19.1.0/26"].as_path == (4200000001,)


def test_a_peer_coming_up_gets_the_table_then_end_of_rib():
    net = Net()
    net.up(A)
    net.up(N1, Role.NON_CLIENT)
    net.send(A, [f"198.19.0.{i}/32" for i in range(100)])
    net.send(N1, ["198.19.9.0/24"])
    net.up(D)
    table = net.received(D)
    assert len(table) == 101 and net.eor[D] == 1
    assert net.raw[D][-1] == b"\x00\x00\x00\x00"  # End-of-RIB last
    net.up(N2, Role.NON_CLIENT)
    assert len(net.received(N2)) == 100  # not the non-client's route
    # later changes follow the table
    net.send(A, ["198.19.8.0/24"])
    assert "198.19.8.0/24" in net.received(D)


def test_startup_hold_delays_end_of_rib():
    net = Net(startup_hold=10)
    fx = net.core.set_expected([A, B])
    net.up(A)
    net.received(A)
    assert net.eor[A] == 0
    net.up(B)
    net.core.end_of_rib(A, IPV4_UNICAST)
    net.received(B)
    assert net.eor[B] == 0
    fx = net.core.end_of_rib(B, IPV4_UNICAST)  # every expected peer has sent its EoR
    assert not net.core.holding and fx.timers == []
    net.received(A)
    net.received(B)
    assert net.eor[A] == 1 and net.eor[B] == 1
    # or the timer ends it
    net2 = Net(startup_hold=10)
    net2.up(A)
    net2.core.timer("startup-hold", 10)
    net2.received(A)
    assert net2.eor[A] == 1


def test_route_refresh_sends_the_table_again():
    net = Net()
    net.up(A)
    net.up(B)
    net.send(A, ["198.19.1.0/26", "198.19.2.0/26"])
    net.received(B)
    net.tables[B].clear()
    net.core.refresh(B, IPV4_UNICAST)
    assert set(net.received(B)) == {"198.19.1.0/26", "198.19.2.0/26"}


def test_graceful_restart_keeps_routes_stale_then_sweeps_at_end_of_rib():
    net = Net()
    net.up(A, gr=GR)
    net.up(B)
    net.send(A, ["198.19.1.0/26", "198.19.2.0/26"])
    assert len(net.received(B)) == 2
    fx = net.down(A, graceful=True)
    [(name, delay)] = fx.timers
    assert name.startswith(f"restart:{A}:") and delay == 120
    net.core.flush()
    assert len(net.received(B)) == 2  # still reflected, marked stale
    assert net.core.rib.is_stale("198.19.1.0/26", A)
    net.up(A, gr=GR)
    assert net.received(A) == {}  # its own paths are not sent back to it
    net.send(A, ["198.19.1.0/26"])  # refreshed
    net.core.end_of_rib(A, IPV4_UNICAST)
    net.core.flush()
    assert set(net.received(B)) == {"198.19.1.0/26"}  # the rest swept at End-of-RIB
    assert not net.core.rib.is_stale("198.19.1.0/26", A)
    net.core.timer(name, 120)  # the old timer is stale: nothing happens
    net.core.flush()
    assert set(net.received(B)) == {"198.19.1.0/26"}


def test_graceful_restart_timer_and_forwarding_bit():
    net = Net(restart_limit=30)
    net.up(A, gr=GR)
    net.up(B)
    net.send(A, ["198.19.1.0/26"])
    net.received(B)
    [(name, delay)] = net.down(A, graceful=True).timers
    assert delay == 30  # our limit on the peer's restart time
    net.core.timer(name, 30)
    net.core.flush()
    assert net.received(B) == {}  # not back in time: swept
    # back without forwarding state: stale routes go at once
    net.send(B, ["198.19.2.0/26"])
    net.up(C)
    net.received(C)
    net.down(B, graceful=False)  # B had no GR capability anyway
    net.core.flush()
    assert "198.19.2.0/26" not in net.received(C)
    net.up(D, gr=GR)
    net.send(D, ["198.19.3.0/26"])
    net.down(D, graceful=True)
    net.core.flush()
    assert "198.19.3.0/26" in net.received(C)
    net.up(D, gr=GracefulRestart(120))  # no F bit this time
    net.core.flush()
    assert "198.19.3.0/26" not in net.received(C)


def test_a_session_ended_by_notification_loses_its_routes_at_once():
    net = Net()
    net.up(A, gr=GR)
    net.up(B)
    net.send(A, ["198.19.1.0/26"])
    net.received(B)
    assert net.down(A, graceful=False).timers == []
    net.core.flush()
    assert net.received(B) == {}


def test_a_member_that_holds_the_log_back_too_long_is_reset():
    net = Net(log_limit=10_000)
    net.up(A)
    net.up(B)
    net.up(C)
    for a in (A, C):
        net.received(a)
    resets = []
    for i in range(20):
        fx = net.send(A, [f"198.19.{i}.{j}/32" for j in range(200)])
        net.received(C)  # C keeps up, B never reads
        resets += fx.reset
    assert resets and resets[0][:3] == (B, 6, 8)


def test_ipv6_unicast_is_reflected_to_peers_that_negotiated_it():
    import socket

    from pybgp.reflector.wire import IPV6_UNICAST

    net = Net(families=(IPV4_UNICAST, IPV6_UNICAST))
    both = (IPV4_UNICAST, IPV6_UNICAST)
    for addr, fams in ((A, both), (B, both), (C, (IPV4_UNICAST,))):
        info = PeerInfo(router_id=addr, asn=64512, hold_time=90, families=fams, asn4=True,
                        route_refresh=True, graceful_restart=None)
        box = net.boxes[addr] = Outbox(addr)
        net.tables[addr], net.eor[addr], net.raw[addr], net.asn4[addr] = {}, 0, [], True
        net.core.peer_up(addr, Role.CLIENT, info, box, 0)
    assert net.boxes[A].group is net.boxes[B].group is not net.boxes[C].group
    nh = socket.inet_pton(socket.AF_INET6, "2001:db8::11")
    attrs = bytes((0x40, 1, 1, 0, 0x40, 2, 0, 0x40, 5, 4, 0, 0, 0, 100))
    dec = codec.UpdateDecoder(A, A, asn4=True, families=both)
    for m in codec.announce_messages(IPV6_UNICAST, attrs, nh, ["2001:db8:1::/64"]):
        net.core.routes(A, dec.decode(m[19:]))
    net.core.flush()

    def v6_table(addr: str) -> tuple[dict[str, codec.RPath], list]:
        box, data = net.boxes[addr], b""
        while bufs := box.buffers():
            chunk = b"".join(bytes(b) for b in bufs)
            data += chunk
            box.advance(len(chunk))
        d6 = codec.UpdateDecoder(RID, RID, asn4=True, families=both)
        out: dict[str, codec.RPath] = {}
        eors = []
        for _kind, body in wire.Framer().feed(data):
            upd = d6.decode(body)
            if upd.eor is not None:
                eors.append(upd.eor)
            for path, prefixes in upd.groups:
                out.update(dict.fromkeys(prefixes, path))
        return out, eors

    got, eors = v6_table(B)
    assert list(got) == ["2001:db8:1::/64"]
    assert got["2001:db8:1::/64"].next_hop == "2001:db8::11"
    assert got["2001:db8:1::/64"].cluster_list == (CID,)
    assert eors == [IPV4_UNICAST, IPV6_UNICAST]  # an End-of-RIB for each family
    assert v6_table(C) == ({}, [IPV4_UNICAST])  # it did not negotiate IPv6


def test_peers_coming_up_while_routes_change_share_one_table():
    net = Net()
    net.up(A)
    net.up(N1, Role.NON_CLIENT)
    many = [f"198.19.{i // 256}.{i % 256}/32" for i in range(1000)]
    net.send(A, many)
    net.up(B)  # the group's table is made here
    group = net.boxes[B].group
    encoded = group.encoded
    net.send(A, ["198.19.200.0/26"])  # one message, logged behind the table
    net.send(N1, ["198.19.201.0/26"])
    net.up(C)  # the same table, then the log since it: no new table
    net.up(D)
    assert group.encoded == encoded + 2
    for peer in (B, C, D):
        assert len(net.received(peer)) == 1002
    for peer in (C, D):
        assert net.raw[peer][-1] == b"\x00\x00\x00\x00"  # End-of-RIB after the replay
    # a joiner's own paths are cut out of the shared table
    net.send(B, ["198.19.202.0/26"])
    net.up(B)  # B reconnects (its paths are still there: say it restarted)
    assert "198.19.202.0/26" not in net.received(B)
    assert len(net.received(B)) == 1002
    # churn bigger than the table: a new table next time, not a long replay
    net.withdraw(A, many)
    net.send(A, many)
    net.core.flush()
    group.trim()
    assert group.table is None
    net.up(C)
    assert len(net.received(C)) == 1003


def test_graceful_restart_forwarding_state_per_family():
    import socket

    from pybgp.reflector.wire import IPV6_UNICAST

    both = (IPV4_UNICAST, IPV6_UNICAST)
    net = Net(families=both)

    def up(addr: str, forwarding: frozenset) -> None:
        gr = GracefulRestart(120, forwarding=forwarding, families=both)
        info = PeerInfo(router_id=addr, asn=64512, hold_time=90, families=both, asn4=True,
                        route_refresh=True, graceful_restart=gr)
        box = net.boxes[addr] = Outbox(addr)
        net.tables[addr], net.eor[addr], net.raw[addr], net.asn4[addr] = {}, 0, [], True
        net.core.peer_up(addr, Role.CLIENT, info, box, 0)

    up(A, frozenset(both))
    net.send(A, ["198.19.1.0/26"])
    dec = codec.UpdateDecoder(A, A, asn4=True, families=both)
    nh = socket.inet_pton(socket.AF_INET6, "2001:db8::11")
    attrs = bytes((0x40, 1, 1, 0, 0x40, 2, 0, 0x40, 5, 4, 0, 0, 0, 100))
    for m in codec.announce_messages(IPV6_UNICAST, attrs, nh, ["2001:db8:1::/64"]):
        net.core.routes(A, dec.decode(m[19:]))
    net.core.flush()
    net.down(A, graceful=True)
    up(A, frozenset({IPV4_UNICAST}))  # kept IPv4 forwarding state, not IPv6
    net.core.flush()
    rib = net.core.rib
    assert rib.best_path("2001:db8:1::/64") is None  # swept at once
    assert rib.is_stale("198.19.1.0/26", A)  # kept until its End-of-RIB
    assert net.core.peers[A].stale
