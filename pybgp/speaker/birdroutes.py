"""BIRD 1.6 ``show route`` replies, pure (companion of ``birdfmt``).

Owns: the row format ``%-18s %s [%s %s%s]%s%s`` of nest/rt-table.c
(rt_show_rte), the BGP route info `` (pref[/igp]) [AS<n><origin>]`` of
proto/bgp/attrs.c, the ``all`` detail lines (``Type:`` and ``BGP.*``
attributes as rta_show/ea_show print them), the filters (exact prefix,
``for`` longest match, ``protocol``) and the ``count``/``stats`` summary
``0014 N of M routes for K networks``.

Must never: read the RIB or the kernel itself; routes arrive as plain
``RouteLine`` values, grouped by network, primary route first.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from pybgp.speaker.birdfmt import ShowRoute, error, reply


@dataclass(frozen=True)
class BgpAttrs:
    origin: str = "igp"  # igp | egp | incomplete
    as_path: tuple[int, ...] = ()
    as_sets: tuple[tuple[int, ...], ...] = ()
    next_hop: str = ""
    local_pref: int | None = 100
    med: int | None = None
    communities: tuple[tuple[int, int], ...] = ()
    originator_id: str | None = None
    cluster_list: tuple[str, ...] = ()
    igp_metric: int | None = 0  # None: next hop not resolved recursively
    stale: bool = False


@dataclass(frozen=True)
class RouteLine:
    """One route of one network as BIRD would list it.

    ``dest``: ``via`` (with gateway and iface), ``dev`` (iface), ``blackhole``,
    ``unreachable``, ``prohibited`` or ``multipath`` (with ``nexthops``).
    ``source``: the ``Type:`` word (BGP, static, inherit, device...).
    """

    prefix: str
    protocol: str
    since: str
    dest: str
    gateway: str | None = None
    iface: str | None = None
    primary: bool = True
    preference: int = 100
    source: str = "BGP"
    bgp: BgpAttrs | None = None
    nexthops: tuple[tuple[str, str, int], ...] = ()  # (gateway, iface, weight)
    from_address: str | None = None
    extra_attrs: tuple[str, ...] = ()  # e.g. ("Kernel.source: 3", "Kernel.metric: 0")


def format_via(r: RouteLine) -> str:
    if r.dest == "via":
        return f"via {r.gateway} on {r.iface}"
    if r.dest == "dev":
        return f"dev {r.iface}"
    return {"blackhole": "blackhole", "unreachable": "unreachable",
            "prohibited": "prohibited", "multipath": "multipath"}.get(r.dest, "???")


def route_info(r: RouteLine) -> str:
    if r.bgp is None:
        return f" ({r.preference})"
    b = r.bgp
    text = f" ({r.preference}{'s' if b.stale else ''}"
    if b.igp_metric is not None:
        text += f"/{b.igp_metric}"
    text += ") ["
    if b.as_path:
        text += f"AS{b.as_path[-1]}"
    return text + "ie?"[("igp", "egp", "incomplete").index(b.origin)] + "]"


def format_as_path(as_path: Sequence[int], as_sets: Sequence[Sequence[int]] = ()) -> str:
    parts = [str(a) for a in as_path]
    parts += ["{ " + " ".join(str(a) for a in s) + " }" for s in as_sets]
    return " ".join(parts)


def route_rows(r: RouteLine, show_prefix: bool, verbose: bool) -> list[tuple[int, str]]:
    ia = r.prefix if show_prefix else ""
    frm = f" from {r.from_address}" if r.from_address and r.from_address != r.gateway else ""
    mark = " *" if r.primary else ""
    rows = [(1007, f"{ia:<18} {format_via(r)} [{r.protocol} {r.since}{frm}]{mark}"
                   f"{route_info(r)}")]
    rows += [(1007, f"\tvia {gw} on {ifc} weight {w}") for gw, ifc, w in r.nexthops]
    if verbose:
        rows.append((1008, f"\tType: {r.source} unicast univ"))
        rows += [(1012, f"\t{a}") for a in _attr_lines(r)]
    return rows


def _attr_lines(r: RouteLine) -> list[str]:
    out: list[str] = []
    b = r.bgp
    if b is not None:
        out.append(f"BGP.origin: {dict(igp='IGP', egp='EGP', incomplete='Incomplete')[b.origin]}")
        out.append(f"BGP.as_path: {format_as_path(b.as_path, b.as_sets)}")
        out.append(f"BGP.next_hop: {b.next_hop}")
        if b.med is not None:
            out.append(f"BGP.med: {b.med}")
        if b.local_pref is not None:
            out.append(f"BGP.local_pref: {b.local_pref}")
        if b.communities:
            out.append("BGP.community: " + " ".join(f"({a},{c})" for a, c in b.communities))
        if b.originator_id:
            out.append(f"BGP.originator_id: {b.originator_id}")
        if b.cluster_list:
            out.append(f"BGP.cluster_list: {' '.join(b.cluster_list)}")
    return out + list(r.extra_attrs)


def _net(prefix: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(prefix, strict=False)


def _longest_match(networks: Sequence[str], target: str) -> str | None:
    t = _net(target)
    best: str | None = None
    best_len = -1
    for n in networks:
        net = _net(n)
        if net.version == t.version and t.subnet_of(net) and net.prefixlen > best_len:  # type: ignore[arg-type]
            best, best_len = n, net.prefixlen
    return best


def render_routes(routes: Sequence[RouteLine], cmd: ShowRoute,
                  protocols: Sequence[str] | None = None) -> str:
    """The reply to a ``show route`` command over ``routes`` (grouped by
    network, primary first). ``protocols`` (known names) makes an unknown
    ``protocol P`` an error as in BIRD."""
    if cmd.protocol is not None and protocols is not None and cmd.protocol not in protocols:
        return error(9001, f"{cmd.protocol} is not a protocol")
    by_net: dict[str, list[RouteLine]] = {}
    for r in routes:
        by_net.setdefault(str(_net(r.prefix)), []).append(r)
    single = cmd.prefix is not None or cmd.for_addr is not None
    if cmd.prefix is not None:
        nets = [cmd.prefix] if cmd.prefix in by_net else []
    elif cmd.for_addr is not None:
        match = _longest_match(list(by_net), cmd.for_addr)
        nets = [match] if match else []
    else:
        nets = list(by_net)
    lines: list[tuple[int, str]] = []
    shown = total = networks = 0
    for n in nets:
        first_shown = True
        candidates = by_net[n][:1] if cmd.primary else by_net[n]
        networks += 1
        for r in candidates:
            total += 1
            if cmd.protocol is not None and r.protocol != cmd.protocol:
                continue
            shown += 1
            if not cmd.count:
                lines += route_rows(r, first_shown, cmd.all)
            first_shown = False
    if single:
        return reply(lines) if total else error(8001, "Network not in table")
    if cmd.count or cmd.stats:
        return reply(lines, (14, f"{shown} of {total} routes for {networks} networks"))
    return reply(lines)
