"""Export/origination and import policy (REFERENCE §1 "Export to peers")."""

from __future__ import annotations

from pybgp.speaker.policy import ExportPlan, Origination, Pool, export_plan, import_decision

POOL = Pool("198.19.0.0/16")


def test_blocks_are_advertised_and_blackholed() -> None:
    plan = export_plan([POOL], ["198.19.0.0/26", "198.19.0.64/26"], {})
    assert plan == ExportPlan(frozenset({"198.19.0.0/26", "198.19.0.64/26"}),
                              frozenset({"198.19.0.0/26", "198.19.0.64/26"}))


def test_routes_inside_own_block_are_suppressed() -> None:
    plan = export_plan([POOL], ["198.19.0.0/26"],
                       {"198.19.0.7/32": "cali4712b101c8e", "198.19.0.8/32": "cali1"})
    assert plan.advertise == {"198.19.0.0/26"}


def test_borrowed_address_escapes() -> None:
    plan = export_plan([POOL], ["198.19.0.0/26"], {"198.19.5.9/32": "caliabc"})
    assert plan.advertise == {"198.19.0.0/26", "198.19.5.9/32"}
    assert plan.blackholes == {"198.19.0.0/26"}


def test_non_cali_and_out_of_pool_routes_rejected() -> None:
    plan = export_plan([POOL], [], {"198.19.5.9/32": "vxlan.calico", "198.19.5.10/32": "tunl0",
                                    "10.1.2.3/32": "cali123", "198.20.0.1/32": "cali9"})
    assert plan.advertise == set() and plan.blackholes == set()


def test_disable_bgp_export_pool() -> None:
    pools = [Pool("198.19.0.0/16"), Pool("198.19.128.0/17", disable_bgp_export=True)]
    plan = export_plan(pools, ["198.19.128.0/26", "198.19.0.0/26"],
                       {"198.19.200.1/32": "cali1", "198.19.9.1/32": "cali2"})
    assert plan.advertise == {"198.19.0.0/26", "198.19.9.1/32"}
    assert plan.blackholes == {"198.19.128.0/26", "198.19.0.0/26"}  # still blackholed


def test_disabled_pool_does_not_export_borrowed() -> None:
    plan = export_plan([Pool("198.19.0.0/16", disabled=True)], [], {"198.19.1.1/32": "cali1"})
    assert plan.advertise == set()


def test_normalises_prefixes() -> None:
    plan = export_plan([POOL], ["198.19.0.5/26"], {"198.19.9.9": "cali1"})
    assert plan.blackholes == {"198.19.0.0/26"}
    assert plan.advertise == {"198.19.0.0/26", "198.19.9.9/32"}


def test_ipv6_does_not_mix_with_ipv4() -> None:
    pools = [POOL, Pool("2001:db8::/48")]
    plan = export_plan(pools, ["2001:db8::/122"], {"2001:db8::1:1/128": "cali1",
                                                   "198.19.3.3/32": "cali2"})
    assert plan.advertise == {"2001:db8::/122", "2001:db8::1:1/128", "198.19.3.3/32"}


def test_import_policy() -> None:
    pools = [Pool("198.19.0.0/17"), Pool("198.19.128.0/18", vxlan_mode="Always"),
             Pool("198.19.192.0/18", ipip_mode="Always")]
    assert import_decision("198.19.1.0/26", pools).accept
    vx = import_decision("198.19.130.0/26", pools)
    assert not vx.accept and "VXLAN" in vx.reason
    ipip = import_decision("198.19.200.0/26", pools)
    assert ipip.accept and ipip.ipip
    assert import_decision("10.0.0.0/8", pools).accept  # not in any pool: accepted


def test_origination_follows_every_change_as_export_plan_computes_it() -> None:
    """The incremental plan equals the whole recomputation after every step of
    random changes: blocks confirmed and released (some given unnormalised,
    some twice), workload routes on cali and other interfaces coming, moving
    and going, inside and outside the blocks and pools, and pool changes."""
    import random

    rng = random.Random(4)
    pool_sets = [
        [POOL],
        [Pool("198.19.0.0/16"), Pool("198.19.128.0/17", disable_bgp_export=True)],
        [Pool("198.19.0.0/17", disabled=True), Pool("198.19.128.0/17"), Pool("2001:db8::/48")],
        [],
    ]
    blocks_pool = ["198.19.0.0/26", "198.19.0.64/26", "198.19.0.5/26", "198.19.128.0/26",
                   "198.19.130.0/28", "198.19.0.0/25", "2001:db8::/122", "10.0.0.0/26"]
    route_pool = ["198.19.0.7/32", "198.19.0.70/32", "198.19.0.127/32", "198.19.128.3/32",
                  "198.19.130.9/32", "198.19.5.9/32", "198.19.5.9", "2001:db8::1/128",
                  "2001:db8::1:1/128", "10.0.0.1/32", "198.20.0.1/32"]
    ifaces = ["cali1", "cali2", "tunl0", "vxlan.calico"]
    o = Origination()
    pools: list[Pool] = []
    blocks: set[str] = set()
    routes: dict[str, str] = {}
    for step in range(3000):
        r = rng.random()
        if r < 0.05:
            pools = rng.choice(pool_sets)
            o.set_pools(pools)
        elif r < 0.35:
            blocks ^= {rng.choice(blocks_pool)}
            o.set_blocks(set(blocks))
        else:
            prefix = rng.choice(route_pool)
            if prefix in routes and rng.random() < 0.5:
                del routes[prefix]
                o.set_route(prefix, None)
            else:
                routes[prefix] = rng.choice(ifaces)
                o.set_route(prefix, routes[prefix])
        assert o.plan() == export_plan(pools, blocks, routes), step
        assert o.routes == routes
