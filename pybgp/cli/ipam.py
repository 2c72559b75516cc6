"""``pybgp ipam show|check|release``: IPAM usage, consistency and manual release.

- ``show [--show-blocks] [-o table|json]``: calicoctl's table, one ``IP Pool``
  row per pool and, with ``--show-blocks``, one ``Block`` row per block under
  it (blocks outside every pool come last). Columns ``GROUPING | CIDR |
  IPS TOTAL | IPS IN USE | IPS FREE``; in-use and free carry a percentage.
- ``check [-o text|json]``: every inconsistency between IPAM's records and the
  WorkloadEndpoints (``pybgp.ipam.check``), one line each, then a summary;
  exit status 1 when it finds a problem, 0 when clean.
- ``release --ip X [--ip Y] [--force]``: frees addresses; refuses (exit 1,
  nothing released) an address a WorkloadEndpoint still uses unless ``--force``.

The rendering functions are pure (``render_usage``, ``usage_json``,
``render_problems``) and unit tested; the ``run_*`` functions only read the
store, call them and print. Nothing here writes except ``release``, through
``IPAM.release_ips`` (one compare-and-swap transaction).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys
from collections.abc import Sequence
from typing import Any

from pybgp.cli.main import datastore_flags, open_kv

HEADER = ("GROUPING", "CIDR", "IPS TOTAL", "IPS IN USE", "IPS FREE")
CLI_NODE = "pybgp-cli"  # IPAM wants a node name; release_ips never uses it


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ipam", help="IP address management: usage, consistency, release")
    isub = p.add_subparsers(dest="ipam_command", metavar="SUBCOMMAND", required=True)

    show = isub.add_parser("show", help="IP usage per pool (and per block)")
    show.add_argument("--show-blocks", action="store_true", help="one row per block too")
    show.add_argument("-o", "--output", default="table", choices=["table", "json"])
    datastore_flags(show)
    show.set_defaults(func=run_show)

    check = isub.add_parser("check", help="cross-check blocks, affinities, handles, endpoints")
    check.add_argument("-o", "--output", default="text", choices=["text", "json"])
    check.add_argument("--pending-grace", type=float, default=60.0, metavar="SECONDS",
                       help="report a pending block affinity only after this age")
    datastore_flags(check)
    check.set_defaults(func=run_check)

    rel = isub.add_parser("release", help="release addresses (never one still in use)")
    rel.add_argument("--ip", action="append", required=True, metavar="IP",
                     help="address to release (repeatable)")
    rel.add_argument("--force", action="store_true",
                     help="release even an address a WorkloadEndpoint uses")
    datastore_flags(rel)
    rel.set_defaults(func=run_release)


# ------------------------------------------------------------------ rendering (pure)
def _pct(n: int, total: int) -> str:
    pct = 100.0 * n / total if total else 0.0
    return f"{n:.5g} ({pct:.0f}%)"


def usage_rows(usage: Any, show_blocks: bool) -> list[tuple[str, str, str, str, str]]:
    """The table's rows (strings) for a ``pybgp.ipam.Usage``."""
    rows: list[tuple[str, str, str, str, str]] = []

    def row(kind: str, cidr: str, size: int, in_use: int, free: int) -> None:
        rows.append((kind, cidr, f"{size:.5g}", _pct(in_use, size), _pct(free, size)))

    for pool in usage.pools:
        row("IP Pool", pool.cidr, pool.size, pool.in_use, pool.free)
        if show_blocks:
            for b in usage.blocks:
                if b.pool == pool.name:
                    row("Block", b.cidr, b.size, b.in_use, b.free)
    if show_blocks:
        known = {p.name for p in usage.pools}
        for b in usage.blocks:
            if b.pool is None or b.pool not in known:
                row("Block", b.cidr, b.size, b.in_use, b.free)
    return rows


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def render_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """An ASCII table as calicoctl prints it: centred headings, numbers right-aligned."""
    widths = [len(h) for h in header]
    for r in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, r, strict=True)]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def centre(text: str, width: int) -> str:
        gap = width - len(text)
        left = gap // 2
        return " " * left + text + " " * (gap - left)

    lines = [rule, "| " + " | ".join(centre(h, w) for h, w in zip(header, widths,
                                                                   strict=True)) + " |", rule]
    for r in rows:
        cells = [c.rjust(w) if _is_number(c) else c.ljust(w)
                 for c, w in zip(r, widths, strict=True)]
        lines.append("| " + " | ".join(cells) + " |")
    if rows:
        lines.append(rule)
    return "\n".join(lines) + "\n"


def render_usage(usage: Any, show_blocks: bool = False) -> str:
    return render_table(HEADER, usage_rows(usage, show_blocks))


def usage_json(usage: Any) -> dict[str, Any]:
    return {
        "pools": [{"name": p.name, "cidr": p.cidr, "total": p.size, "inUse": p.in_use,
                   "free": p.free, "blocks": p.blocks, "disabled": p.disabled}
                  for p in usage.pools],
        "blocks": [{"cidr": b.cidr, "pool": b.pool, "node": b.node, "affinityState": b.state,
                    "total": b.size, "inUse": b.in_use, "free": b.free,
                    "borrowed": b.borrowed} for b in usage.blocks],
    }


def render_problems(problems: Sequence[Any], counts: dict[str, int]) -> str:
    lines = [f"{p.kind}: {p.message}" for p in problems]
    what = ", ".join(f"{n} {k}" for k, n in counts.items())
    verdict = (f"{len(problems)} problem(s) found" if problems else "no problems found")
    lines.append(f"Checked {what}: {verdict}")
    return "\n".join(lines) + "\n"


def problems_json(problems: Sequence[Any], counts: dict[str, int]) -> dict[str, Any]:
    return {"problems": [{"kind": p.kind, "message": p.message, "objects": list(p.objects)}
                         for p in problems],
            "summary": {**counts, "problems": len(problems)}}


# ------------------------------------------------------------------ datastore reads
def read_pools(kv: Any) -> list[Any]:
    from pybgp.datastore.resources import ResourceStore
    from pybgp.ipam import Pool

    return [Pool.from_resource(r.to_dict()) for r in ResourceStore(kv).list("IPPool")]


def read_endpoints(kv: Any) -> list[tuple[Any, Any]]:
    """(Endpoint, WorkloadEndpoint resource) for every WEP in every namespace.

    The IPAM handle (``<network>.<containerID>``) is not in the WEP, so an
    endpoint is identified by its containerID, which ``Endpoint.owns_handle``
    matches against the handle's tail (the WEP's name when it has none).
    """
    from pybgp.datastore.resources import ResourceStore
    from pybgp.ipam import Endpoint

    out = []
    for wep in ResourceStore(kv).list("WorkloadEndpoint"):
        ident = wep.spec.container_id or wep.metadata.name
        out.append((Endpoint(ident, tuple(wep.spec.addresses), wep.spec.node), wep))
    return out


# ------------------------------------------------------------------ commands
def run_show(args: argparse.Namespace) -> int:
    from pybgp.ipam import usage

    kv = open_kv(args)
    result = usage(kv, read_pools(kv))
    if args.output == "json":
        print(json.dumps(usage_json(result), indent=2))
    else:
        sys.stdout.write(render_usage(result, args.show_blocks))
    return 0


def run_check(args: argparse.Namespace) -> int:
    from pybgp.ipam import check_snapshot, read_snapshot

    kv = open_kv(args)
    endpoints = [ep for ep, _ in read_endpoints(kv)]
    snap = read_snapshot(kv)
    problems = check_snapshot(snap, endpoints, pending_grace=args.pending_grace)
    counts = {"blocks": len(snap.blocks), "affinities": len(snap.affinities),
              "handles": len(snap.handles), "endpoints": len(endpoints)}
    if args.output == "json":
        print(json.dumps(problems_json(problems, counts), indent=2))
    else:
        sys.stdout.write(render_problems(problems, counts))
    return 1 if problems else 0


def run_release(args: argparse.Namespace) -> int:
    from pybgp.errors import ValidationError
    from pybgp.ipam import IPAM

    wanted: list[str] = []
    for text in args.ip:
        try:
            wanted.append(str(ipaddress.ip_address(text.strip())))
        except ValueError:
            raise ValidationError(f"--ip {text!r} is not an IP address") from None
    wanted = list(dict.fromkeys(wanted))
    kv = open_kv(args)
    users: dict[str, list[str]] = {}
    for _, wep in read_endpoints(kv):
        for ip in wep.spec.addresses:
            addr = str(ipaddress.ip_address(ip))
            if addr in wanted:
                ns = wep.metadata.namespace
                users.setdefault(addr, []).append(f"{ns}/{wep.metadata.name}" if ns
                                                  else wep.metadata.name)
    if users and not args.force:
        for addr, names in users.items():
            print(f"error: {addr} is in use by WorkloadEndpoint {', '.join(names)}; "
                  "releasing it could give it to a second workload (use --force if "
                  "the endpoint is stale)", file=sys.stderr)
        print("error: nothing was released", file=sys.stderr)
        return 1
    released = set(IPAM(kv, CLI_NODE).release_ips(wanted))
    status = 0
    for addr in wanted:
        if addr in released:
            print(f"Successfully released {addr}")
        else:
            print(f"error: {addr} is not allocated", file=sys.stderr)
            status = 1
    return status
