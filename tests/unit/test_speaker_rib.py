"""RIB and decision process: each step deciding, ECMP, MED scope, loops,
diffs, graceful-restart mark-and-sweep."""

from __future__ import annotations

import dataclasses

import pytest

from pybgp.speaker.rib import (
    LoopReason,
    Path,
    Reason,
    Rib,
    by_as_path_length,
    by_ebgp,
    by_local_pref,
    by_med,
    by_origin,
    check_loop,
    compare,
    decide,
)

P = "198.19.1.0/26"


def path(peer: str = "198.18.0.12", **kw: object) -> Path:
    base: dict[str, object] = dict(prefix=P, peer=peer, next_hop=peer, peer_router_id=peer)
    base.update(kw)
    return Path(**base)  # type: ignore[arg-type]


def test_only_path() -> None:
    d = decide([path()])
    assert d is not None and d.reason is Reason.ONLY_PATH and d.multipath == (d.best,)
    assert decide([]) is None


@pytest.mark.parametrize("winner_kw, loser_kw, reason", [
    ({"local_pref": 200}, {"local_pref": 150}, Reason.LOCAL_PREF),
    ({}, {"local_pref": 99}, Reason.LOCAL_PREF),  # absent = 100
    ({"as_path": (1,), "ibgp": False}, {"as_path": (1, 2), "ibgp": False}, Reason.AS_PATH),
    ({"as_path": (1,), "as_sets": ((5, 6, 7),), "ibgp": False},  # a set counts as one
     {"as_path": (1, 2, 3), "ibgp": False}, Reason.AS_PATH),
    ({"origin": "igp"}, {"origin": "egp"}, Reason.ORIGIN),
    ({"origin": "egp"}, {"origin": "incomplete"}, Reason.ORIGIN),
    ({"med": 5}, {"med": 10}, Reason.MED),
    ({}, {"med": 1}, Reason.MED),  # missing MED is the lowest value
    ({"ibgp": False, "as_path": (7,)}, {"ibgp": True, "as_path": (8,)}, Reason.EBGP_OVER_IBGP),
    ({"peer_router_id": "198.18.0.1"}, {"peer_router_id": "198.18.0.2"}, Reason.ROUTER_ID),
    ({"cluster_list": ("1.1.1.1",), "originator_id": "9.9.9.9"},
     {"cluster_list": ("1.1.1.1", "2.2.2.2"), "originator_id": "9.9.9.9"}, Reason.CLUSTER_LIST),
])
def test_each_step_decides(winner_kw: dict[str, object], loser_kw: dict[str, object],
                           reason: Reason) -> None:
    # The loser has the lower peer address so only the step under test can win.
    winner = path("198.18.0.20", **{"peer_router_id": "198.18.0.20", **winner_kw})
    loser = path("198.18.0.10", **{"peer_router_id": "198.18.0.20", **loser_kw})
    for order in ([winner, loser], [loser, winner]):
        d = decide(order)
        assert d is not None
        assert d.best == winner
        assert d.reason is reason


def test_peer_address_is_last_resort() -> None:
    a = path("198.18.0.9", peer_router_id="1.1.1.1", originator_id="5.5.5.5")
    b = path("198.18.0.10", peer_router_id="1.1.1.2", originator_id="5.5.5.5")
    d = decide([b, a])
    assert d is not None and d.best == a and d.reason is Reason.PEER_ADDRESS
    assert decide([a, b]) == d


def test_peer_address_compared_numerically() -> None:
    a = path("198.18.0.9", peer_router_id="5.5.5.5")
    b = path("198.18.0.10", peer_router_id="5.5.5.5")
    d = decide([a, b])
    assert d is not None and d.best == a


def test_originator_id_replaces_router_id() -> None:
    reflected = path("198.18.0.5", peer_router_id="198.18.0.5", originator_id="198.18.0.30")
    direct = path("198.18.0.30", peer_router_id="198.18.0.30")
    d = decide([reflected, direct])
    assert d is not None
    # Same effective id (198.18.0.30): cluster list length ties (both empty), so
    # the lower peer address wins.
    assert d.reason is Reason.PEER_ADDRESS and d.best == reflected
    shorter = dataclasses.replace(direct, peer="198.18.0.40")
    longer = dataclasses.replace(reflected, cluster_list=("198.18.0.5",))
    d2 = decide([longer, shorter])
    assert d2 is not None and d2.best == shorter and d2.reason is Reason.CLUSTER_LIST


def test_router_id_compared_numerically() -> None:
    a = path("198.18.0.1", peer_router_id="10.0.0.9")
    b = path("198.18.0.2", peer_router_id="10.0.0.10")
    assert compare(a, b) == (a, Reason.ROUTER_ID)


def test_med_only_between_same_neighbour_as() -> None:
    a = path("198.18.0.1", ibgp=False, as_path=(65001, 1), med=50)
    b = path("198.18.0.2", ibgp=False, as_path=(65002, 1), med=10)
    assert by_med(a, b) is None
    d = decide([a, b])
    assert d is not None
    assert d.reason is Reason.ROUTER_ID and d.best == a  # not MED
    assert len(d.multipath) == 2  # equal through the multipath steps
    c = path("198.18.0.3", ibgp=False, as_path=(65001, 2), med=10)
    assert by_med(a, c) is c


def test_med_between_internal_paths() -> None:
    a = path("198.18.0.1", med=50)
    b = path("198.18.0.2", med=10)
    assert by_med(a, b) is b


def test_ecmp_set_is_ties_before_router_id() -> None:
    a = path("198.18.0.12")
    b = path("198.18.0.13")
    c = path("198.18.0.14", origin="incomplete")
    d = decide([c, b, a])
    assert d is not None
    assert d.best == a and d.reason is Reason.ROUTER_ID
    assert d.multipath == (a, b)
    assert d.next_hops == ("198.18.0.12", "198.18.0.13")


def test_ecmp_excludes_ebgp_when_ibgp_best_impossible() -> None:
    e = path("198.18.0.20", ibgp=False, as_path=(65001,))
    i1 = path("198.18.0.12", as_path=(65001,))
    d = decide([e, i1])
    assert d is not None and d.multipath == (e,) and d.reason is Reason.EBGP_OVER_IBGP


def test_next_hops_deduplicated() -> None:
    a = path("198.18.0.12", next_hop="198.18.0.50")
    b = path("198.18.0.13", next_hop="198.18.0.50")
    d = decide([a, b])
    assert d is not None and d.next_hops == ("198.18.0.50",)


def test_small_comparators_tie() -> None:
    a, b = path("198.18.0.1"), path("198.18.0.2")
    for step in (by_local_pref, by_as_path_length, by_origin, by_med, by_ebgp):
        assert step(a, b) is None


# -- loops -------------------------------------------------------------------
def test_loop_checks() -> None:
    kw = dict(local_as=64512, router_id="198.18.0.11", cluster_id="198.18.0.1")
    assert check_loop(path(ibgp=False, as_path=(65000, 64512)), **kw) is LoopReason.AS_PATH
    assert check_loop(path(ibgp=False, as_path=(65000,), as_sets=((64512,),)),
                      **kw) is LoopReason.AS_PATH
    assert check_loop(path(originator_id="198.18.0.11"), **kw) is LoopReason.ORIGINATOR_ID
    assert check_loop(path(cluster_list=("198.18.0.9", "198.18.0.1")),
                      **kw) is LoopReason.CLUSTER_LIST
    assert check_loop(path(ibgp=False, as_path=(65000,)), **kw) is None
    # iBGP paths carry no own-AS loop check (our AS is only prepended on eBGP).
    assert check_loop(path(as_path=(64512,)), **kw) is None
    assert check_loop(path(cluster_list=("198.18.0.1",)), local_as=1, router_id="x") is None


def test_rib_rejects_looped_path_and_withdraws_previous() -> None:
    rib = Rib(local_as=64512, router_id="198.18.0.11")
    assert rib.update(path(ibgp=False, as_path=(65000,))) == {P}
    assert rib.update(path(ibgp=False, as_path=(65000, 64512))) == {P}
    assert rib.best(P) is None and len(rib) == 0
    assert rib.rejected[LoopReason.AS_PATH] == 1
    assert rib.update(path(originator_id="198.18.0.11")) == set()
    assert rib.rejected[LoopReason.ORIGINATOR_ID] == 1


# -- diffs -------------------------------------------------------------------
def test_update_and_withdraw_report_changes_only() -> None:
    rib = Rib(local_as=64512, router_id="198.18.0.11")
    a = path("198.18.0.12")
    assert rib.update(a) == {P}
    assert rib.update(dataclasses.replace(a, received_at=99.0)) == set()  # same attributes
    b = path("198.18.0.13")
    assert rib.update(b) == {P}  # multipath grew
    worse = path("198.18.0.14", local_pref=50)
    assert rib.update(worse) == set()  # neither best nor multipath changed
    assert rib.withdraw(P, "198.18.0.14") == set()
    assert rib.withdraw(P, "198.18.0.99") == set()
    assert rib.withdraw(P, "198.18.0.12") == {P}
    d = rib.best(P)
    assert d is not None and d.best == b and d.reason is Reason.ONLY_PATH
    assert rib.withdraw(P, "198.18.0.13") == {P}
    assert rib.best(P) is None and rib.decisions() == {}


def test_second_path_changes_only_what_it_changes() -> None:
    """One path, then a worse one from another peer and back (the RIB keeps a
    lone path differently from several)."""
    rib = Rib(local_as=64512, router_id="198.18.0.11")
    a, worse = path("198.18.0.12"), path("198.18.0.14", local_pref=50)
    assert rib.update(a) == {P}
    assert rib.update(worse) == set()  # best and multipath unchanged
    assert rib.paths(P) == (a, worse) and len(rib) == 2
    assert rib.update(dataclasses.replace(worse, local_pref=200)) == {P}  # now the best
    d = rib.best(P)
    assert d is not None and d.best.peer == "198.18.0.14" and d.reason is Reason.LOCAL_PREF
    assert rib.withdraw(P, "198.18.0.14") == {P}
    assert rib.paths(P) == (a,) and rib.decisions()[P].reason is Reason.ONLY_PATH
    assert rib.update(worse) == set() and rib.withdraw(P, "198.18.0.14") == set()
    assert rib.update(dataclasses.replace(a, next_hop="198.18.0.99")) == {P}  # same peer


def test_update_group_stores_one_shared_path() -> None:
    rib = Rib(local_as=64512, router_id="198.18.0.11")
    q, r = "198.19.2.0/26", "198.19.3.0/26"
    shared = path("198.18.0.12", prefix="")
    assert rib.update_group(shared, [P, q]) == {P, q}
    assert rib.paths(P)[0] is rib.paths(q)[0] is shared
    assert rib.next_hops(q) == ("198.18.0.12",) and rib.next_hops(r) == ()
    rib.update(path("198.18.0.13"))  # ties with the shared path at P: ECMP
    assert dict(rib.all_next_hops()) == {P: ("198.18.0.12", "198.18.0.13"),
                                         q: ("198.18.0.12",)}
    assert {p: d.next_hops for p, d in rib.decisions().items()} == dict(rib.all_next_hops())
    rib.withdraw(P, "198.18.0.13")
    assert rib.peer_prefixes("198.18.0.12") == {P, q} and len(rib) == 2
    assert rib.update_group(dataclasses.replace(shared, received_at=5.0), [P, q]) == set()
    # a looped UPDATE withdraws what the peer had sent for each of its prefixes
    looped = path("198.18.0.12", prefix="", ibgp=False, as_path=(65000, 64512))
    assert rib.update_group(looped, [q, r]) == {q}
    assert rib.rejected[LoopReason.AS_PATH] == 2
    assert rib.best(q) is None and rib.best(P) is not None


def test_drop_peer_and_counts() -> None:
    rib = Rib(local_as=64512, router_id="198.18.0.11")
    q = "198.19.2.0/26"
    rib.update_many([path("198.18.0.12"), path("198.18.0.13", local_pref=50),
                     path("198.18.0.12", prefix=q)])
    assert rib.imported_count("198.18.0.12") == 2
    assert rib.preferred_count("198.18.0.12") == 2
    assert rib.preferred_count("198.18.0.13") == 0
    assert rib.prefixes() == [P, q]
    assert rib.drop_peer("198.18.0.12") == {P, q}
    d = rib.best(P)
    assert d is not None and d.best.peer == "198.18.0.13"
    assert rib.best(q) is None
    assert rib.peer_prefixes("198.18.0.12") == set()


def test_imported_counts_follow_every_kind_of_change() -> None:
    """The per-peer counts (the RIB keeps no per-peer index) always equal
    the prefixes each peer has a path for, through updates, replacements,
    second paths, group updates, loops, withdrawals, GR sweeps and drops."""
    import random

    rnd = random.Random(7)
    rib = Rib(local_as=64512, router_id="198.18.0.11")
    peers = ["198.18.0.12", "198.18.0.13", "198.18.0.14"]
    prefixes = [f"198.19.{i}.0/26" for i in range(12)]
    for step in range(600):
        peer = rnd.choice(peers)
        op = rnd.randrange(7)
        if op <= 1:
            rib.update(path(peer, prefix=rnd.choice(prefixes), med=rnd.randrange(3)))
        elif op == 2:
            rib.update_group(path(peer, prefix="", ibgp=rnd.random() < 0.8,
                                  as_path=rnd.choice([(), (65000, 64512)])),
                             rnd.sample(prefixes, 4))
        elif op == 3:
            rib.withdraw(rnd.choice(prefixes), peer)
        elif op == 4 and rnd.random() < 0.1:
            rib.drop_peer(peer)
        elif op == 5 and rnd.random() < 0.1:
            rib.mark_stale(peer)
        elif op == 6 and rnd.random() < 0.2:
            rib.sweep_stale(peer)
        for p in peers:
            assert rib.imported_count(p) == len(rib.peer_prefixes(p)), (step, p)
            assert all(any(x.peer == p for x in rib.paths(q)) for q in rib.peer_prefixes(p))
    assert sum(rib.imported_count(p) for p in peers) == len(rib)


def test_graceful_restart_mark_and_sweep() -> None:
    rib = Rib(local_as=64512, router_id="198.18.0.11")
    q = "198.19.2.0/26"
    rib.update_many([path("198.18.0.12"), path("198.18.0.12", prefix=q)])
    rib.mark_stale("198.18.0.12")
    assert rib.is_stale(P, "198.18.0.12") and rib.best(P) is not None  # still forwarding
    assert rib.update(path("198.18.0.12")) == set()  # refreshed, unchanged
    assert not rib.is_stale(P, "198.18.0.12")
    assert rib.sweep_stale("198.18.0.12") == {q}
    assert rib.best(q) is None and rib.best(P) is not None
    assert rib.sweep_stale("198.18.0.12") == set()


def test_decision_is_order_independent() -> None:
    paths = [path(f"198.18.0.{i}", med=i % 3, origin=("igp", "egp")[i % 2])
             for i in range(2, 12)]
    first = decide(paths)
    assert first == decide(list(reversed(paths)))
    assert first is not None and first.best.peer == "198.18.0.6"  # igp, med 0, lowest id
