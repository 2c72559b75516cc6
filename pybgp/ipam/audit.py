"""Read-only views of IPAM state for ``pybgp ipam show`` and ``pybgp ipam check``.

``read_snapshot`` lists blocks, affinities and handles; everything else here
is a pure function of that snapshot (plus the pools and endpoints the caller
passes), so it can be unit tested without a store and never writes.

Invariants:
- nothing in this module writes to the store.
- the snapshot's three lists are retried until they were read at one store
  revision (``Snapshot.consistent``); otherwise a concurrent allocation could
  show up as a false "handle count mismatch".
- every ``Problem`` names its kind (one of ``PROBLEM_KINDS``), a one-line
  message, and the keys / addresses / handles involved, so a caller can act
  on it (``pybgp ipam release --ip``...) without re-deriving anything.
"""

from __future__ import annotations

import ipaddress
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pybgp.datastore.kv import KVStore
from pybgp.errors import ValidationError
from pybgp.ipam import block as blk
from pybgp.ipam.keys import (
    ASSIGNMENT_PREFIX,
    HANDLE_PREFIX,
    HOST_PREFIX,
    Network,
    affinity_key,
    block_key,
    handle_key,
    parse_affinity_key,
    parse_block_key,
    parse_handle_key,
)
from pybgp.ipam.pools import Pool, pool_of_block
from pybgp.ipam.records import STATE_CONFIRMED, Affinity, Block, Handle

LEAKED_ADDRESS = "leaked-address"
MISSING_ALLOCATION = "missing-allocation"
ENDPOINT_HANDLE_MISMATCH = "endpoint-handle-mismatch"
DUPLICATE_ENDPOINT_ADDRESS = "duplicate-endpoint-address"
HANDLE_COUNT_MISMATCH = "handle-count-mismatch"
HANDLE_MISSING = "handle-missing"
AFFINITY_MISSING = "affinity-missing"
AFFINITY_PENDING = "affinity-pending"
AFFINITY_WITHOUT_BLOCK = "affinity-without-block"
AFFINITY_MISMATCH = "affinity-mismatch"
BLOCK_INCONSISTENT = "block-inconsistent"
PROBLEM_KINDS = (
    LEAKED_ADDRESS,
    MISSING_ALLOCATION,
    ENDPOINT_HANDLE_MISMATCH,
    DUPLICATE_ENDPOINT_ADDRESS,
    HANDLE_COUNT_MISMATCH,
    HANDLE_MISSING,
    AFFINITY_MISSING,
    AFFINITY_PENDING,
    AFFINITY_WITHOUT_BLOCK,
    AFFINITY_MISMATCH,
    BLOCK_INCONSISTENT,
)


@dataclass(frozen=True)
class Problem:
    kind: str
    message: str
    objects: tuple[str, ...] = ()


@dataclass(frozen=True)
class Endpoint:
    """A workload as the caller sees it: ``id`` is its IPAM handle or container ID."""

    id: str
    ips: tuple[str, ...]
    node: str = ""

    def owns_handle(self, handle: str | None) -> bool:
        return bool(handle) and (handle == self.id or str(handle).endswith("." + self.id))


@dataclass
class Snapshot:
    blocks: dict[Network, Block] = field(default_factory=dict)
    affinities: dict[tuple[str, Network], Affinity] = field(default_factory=dict)
    handles: dict[str, Handle] = field(default_factory=dict)
    revision: int = 0
    consistent: bool = True
    unreadable: list[Problem] = field(default_factory=list)


def read_snapshot(store: KVStore, attempts: int = 5) -> Snapshot:
    """Blocks, affinities and handles, read at one revision when possible."""
    snap = Snapshot()
    for _ in range(max(1, attempts)):
        blocks, r1 = store.list(ASSIGNMENT_PREFIX)
        affs, r2 = store.list(HOST_PREFIX)
        handles, r3 = store.list(HANDLE_PREFIX)
        if r1 == r2 == r3:
            break
    snap = Snapshot(revision=r3, consistent=r1 == r2 == r3)
    tables: list[tuple[Any, Any, Any, Any, str]] = [
        (blocks, parse_block_key, Block.decode, snap.blocks, BLOCK_INCONSISTENT),
        (affs, parse_affinity_key, Affinity.decode, snap.affinities, AFFINITY_MISMATCH),
        (handles, parse_handle_key, Handle.decode, snap.handles, HANDLE_COUNT_MISMATCH),
    ]
    for kvs, parse, decode, into, problem in tables:
        for kv in kvs:
            ident = parse(kv.key)
            if ident is None:
                continue
            try:
                into[ident] = decode(kv.value, kv.key)
            except ValidationError as exc:
                snap.unreadable.append(Problem(problem, str(exc), (kv.key,)))
    return snap


# ------------------------------------------------------------------- usage


@dataclass(frozen=True)
class BlockUsage:
    cidr: str
    pool: str | None
    node: str | None  # affinity of the block
    state: str | None  # that node's affinity record state; None = no record
    size: int
    in_use: int
    free: int
    borrowed: int  # allocations made by other nodes than the block's


@dataclass(frozen=True)
class PoolUsage:
    name: str
    cidr: str
    size: int
    in_use: int
    free: int
    blocks: int
    disabled: bool


@dataclass(frozen=True)
class Usage:
    pools: list[PoolUsage]
    blocks: list[BlockUsage]


def usage(store: KVStore, pools: Sequence[Pool]) -> Usage:
    return usage_of(read_snapshot(store), pools)


def usage_of(snap: Snapshot, pools: Sequence[Pool]) -> Usage:
    rows: list[BlockUsage] = []
    for net in sorted(snap.blocks, key=_net_key):
        b = snap.blocks[net]
        node = blk.host_of(b)
        aff = snap.affinities.get((node, net)) if node else None
        pool = pool_of_block(pools, net)
        borrowed = sum(
            1 for _, a in blk.allocated(b) if a is not None and a.secondary.get("node") != node
        )
        rows.append(
            BlockUsage(
                cidr=str(net),
                pool=pool.name if pool else None,
                node=node,
                state=aff.state if aff else None,
                size=net.num_addresses,
                in_use=blk.in_use_count(b),
                free=blk.free_count(b),
                borrowed=borrowed,
            )
        )
    pool_rows = []
    for pool in pools:
        mine = [r for r in rows if r.pool == pool.name]
        in_use = sum(r.in_use for r in mine)
        pool_rows.append(
            PoolUsage(
                name=pool.name,
                cidr=str(pool.cidr),
                size=pool.cidr.num_addresses,
                in_use=in_use,
                free=pool.cidr.num_addresses - in_use,
                blocks=len(mine),
                disabled=pool.disabled,
            )
        )
    return Usage(pool_rows, rows)


# ------------------------------------------------------------------- check


def check(
    store: KVStore,
    endpoints: Iterable[Endpoint | tuple[str, Iterable[str], str]] | None = None,
    *,
    pending_grace: float = 60.0,
    now: float | None = None,
) -> list[Problem]:
    """Every inconsistency between blocks, affinities, handles and endpoints.

    With ``endpoints`` None only IPAM's own records are cross-checked;
    with a list (possibly empty), allocations and endpoints are matched too.
    """
    return check_snapshot(read_snapshot(store), endpoints, pending_grace=pending_grace, now=now)


def check_snapshot(
    snap: Snapshot,
    endpoints: Iterable[Endpoint | tuple[str, Iterable[str], str]] | None = None,
    *,
    pending_grace: float = 60.0,
    now: float | None = None,
) -> list[Problem]:
    now = time.time() if now is None else now
    out = list(snap.unreadable)
    if not snap.consistent:
        out.append(
            Problem(
                BLOCK_INCONSISTENT,
                "IPAM records changed while being read; re-run the check",
                (),
            )
        )
    out += _check_blocks(snap)
    out += _check_affinities(snap, pending_grace, now)
    out += _check_handles(snap)
    if endpoints is not None:
        eps = [
            e if isinstance(e, Endpoint) else Endpoint(e[0], tuple(e[1]), e[2]) for e in endpoints
        ]
        out += _check_endpoints(snap, eps)
    return out


def _check_blocks(snap: Snapshot) -> list[Problem]:
    out = []
    for net in sorted(snap.blocks, key=_net_key):
        for text in blk.problems(snap.blocks[net]):
            out.append(Problem(BLOCK_INCONSISTENT, text, (block_key(net),)))
    return out


def _check_affinities(snap: Snapshot, grace: float, now: float) -> list[Problem]:
    out = []
    for net in sorted(snap.blocks, key=_net_key):
        node = blk.host_of(snap.blocks[net])
        if node and (node, net) not in snap.affinities:
            out.append(
                Problem(
                    AFFINITY_MISSING,
                    f"block {net} is affine to {node} but {node} has no affinity record for it",
                    (block_key(net), affinity_key(node, net)),
                )
            )
    for (node, net), aff in sorted(
        snap.affinities.items(), key=lambda i: (i[0][0], _net_key(i[0][1]))
    ):
        akey = affinity_key(node, net)
        b = snap.blocks.get(net)
        if b is None:
            out.append(
                Problem(
                    AFFINITY_WITHOUT_BLOCK,
                    f"{node} has a {aff.state} affinity for block {net}, which does not exist",
                    (akey,),
                )
            )
            continue
        owner = blk.host_of(b)
        if owner != node:
            out.append(
                Problem(
                    AFFINITY_MISMATCH,
                    f"{node} has a {aff.state} affinity for block {net}, "
                    f"but the block is affine to {owner or 'no node'}",
                    (akey, block_key(net)),
                )
            )
            continue
        if aff.state != STATE_CONFIRMED:
            age = _age(b.affinity_claim_time, now)
            if age is None or age > grace:
                when = "for an unknown time" if age is None else f"for {age:.0f}s"
                out.append(
                    Problem(
                        AFFINITY_PENDING,
                        f"{node}'s affinity for block {net} has been {aff.state} {when} "
                        "(an interrupted claim; the node's next claim finishes it)",
                        (akey, block_key(net)),
                    )
                )
    return out


def _check_handles(snap: Snapshot) -> list[Problem]:
    actual: dict[str, Counter[str]] = {}
    for net, b in snap.blocks.items():
        for h, n in blk.counts_by_handle(b).items():
            actual.setdefault(h, Counter())[str(net)] += n
    out = []
    for h in sorted(set(actual) | set(snap.handles)):
        have = actual.get(h, Counter())
        record = snap.handles.get(h)
        hkey = _handle_key(h)
        if record is None:
            out.append(
                Problem(
                    HANDLE_MISSING,
                    f"handle {h} holds {sum(have.values())} address(es) in "
                    f"{', '.join(sorted(have))} but has no handle record",
                    (hkey, *sorted(block_key(ipaddress.ip_network(c)) for c in have)),
                )
            )
            continue
        recorded = Counter({c: n for c, n in record.block.items() if n})
        if recorded != have:
            diffs = ", ".join(
                f"{c}: record {recorded.get(c, 0)}, blocks {have.get(c, 0)}"
                for c in sorted(set(recorded) | set(have))
                if recorded.get(c, 0) != have.get(c, 0)
            )
            out.append(
                Problem(
                    HANDLE_COUNT_MISMATCH,
                    f"handle {h} counts disagree with the blocks ({diffs})",
                    (hkey,),
                )
            )
    return out


def _check_endpoints(snap: Snapshot, eps: list[Endpoint]) -> list[Problem]:
    out = []
    by_ip: dict[str, list[Endpoint]] = {}
    for ep in eps:
        for raw in ep.ips:
            ip = str(ipaddress.ip_interface(raw).ip)
            by_ip.setdefault(ip, []).append(ep)
    allocations: dict[str, tuple[str | None, Network, dict[str, str]]] = {}
    for net, b in snap.blocks.items():
        for o, attr in blk.allocated(b):
            handle = attr.handle_id if attr else None
            secondary = attr.secondary if attr else {}
            allocations[str(blk.ip_at(b, o))] = (handle, net, secondary)
    for ip in sorted(allocations, key=_ip_key):
        handle, net, secondary = allocations[ip]
        if ip in by_ip or "type" in secondary:  # tunnel addresses have no endpoint
            continue
        out.append(
            Problem(
                LEAKED_ADDRESS,
                f"{ip} is allocated to handle {handle} (node {secondary.get('node', '?')}) "
                "but no endpoint uses it",
                (ip, handle or "", block_key(net)),
            )
        )
    for ip in sorted(by_ip, key=_ip_key):
        holders = by_ip[ip]
        ids = ", ".join(e.id for e in holders)
        if len({e.id for e in holders}) > 1:
            out.append(
                Problem(DUPLICATE_ENDPOINT_ADDRESS, f"{ip} is used by endpoints {ids}", (ip,))
            )
        if ip not in allocations:
            out.append(
                Problem(
                    MISSING_ALLOCATION,
                    f"endpoint {ids} uses {ip}, which IPAM has not allocated",
                    (ip, *(e.id for e in holders)),
                )
            )
            continue
        handle = allocations[ip][0]
        for ep in holders:
            if not ep.owns_handle(handle):
                out.append(
                    Problem(
                        ENDPOINT_HANDLE_MISMATCH,
                        f"endpoint {ep.id} uses {ip}, which is allocated to handle {handle}",
                        (ip, ep.id, handle or ""),
                    )
                )
    return out


def _age(claim_time: str | None, now: float) -> float | None:
    if not claim_time:
        return None
    try:
        return now - datetime.fromisoformat(claim_time.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _handle_key(handle: str) -> str:
    try:
        return handle_key(handle)
    except ValidationError:
        return HANDLE_PREFIX + handle


def _net_key(net: Network) -> tuple[int, int]:
    return (net.version, int(net.network_address))


def _ip_key(ip: str) -> tuple[int, int]:
    addr = ipaddress.ip_address(ip)
    return (addr.version, int(addr))
