"""Pure operations on one AllocationBlock: no I/O, no clock, no store.

Every function returns a *new* Block and leaves its argument untouched, so a
caller can stage changes to several blocks and throw them away when its
compare-and-swap loses.

Invariants kept by every operation (``problems()`` reports any violation):
- ordinal ``o`` is allocated  <=>  ``allocations[o]`` is an attribute index
  <=>  ``o`` is not in ``unallocated``; ``unallocated`` holds no duplicates.
- allocation takes ordinals from the *head* of ``unallocated``; release
  appends them to the *tail* (so a just-freed address is reused last).
- every attribute is referenced by at least one allocation; releases drop
  unreferenced attributes and renumber the indices (as libcalico-go does).
- ``sequence_number`` increases on every change; each allocation records the
  sequence number of the write that made it.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections import Counter

from pybgp.errors import IPAMError
from pybgp.ipam.keys import Network
from pybgp.ipam.records import Attribute, Block

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
HOST_PREFIX = "host:"


def new_block(cidr: Network, node: str, *, claim_time: str | None, sequence: int) -> Block:
    """An empty block affine to ``node``; free list 0..n-1 in order."""
    n = cidr.num_addresses
    return Block(
        cidr=cidr,
        affinity=f"{HOST_PREFIX}{node}",
        allocations=[None] * n,
        unallocated=list(range(n)),
        sequence_number=sequence,
        affinity_claim_time=claim_time,
    )


def host_of(block: Block) -> str | None:
    """The node a block is affine to, or None."""
    if block.affinity and block.affinity.startswith(HOST_PREFIX):
        return block.affinity[len(HOST_PREFIX) :]
    return None


def ordinal_of(block: Block, ip: IPAddress) -> int:
    if ip.version != block.cidr.version or ip not in block.cidr:
        raise IPAMError(f"{ip} is not in block {block.cidr}")
    return int(ip) - int(block.cidr.network_address)


def ip_at(block: Block, ordinal: int) -> IPAddress:
    return block.cidr.network_address + ordinal


def free_count(block: Block) -> int:
    return len(block.unallocated)


def in_use_count(block: Block) -> int:
    return sum(1 for a in block.allocations if a is not None)


def handle_at(block: Block, ordinal: int) -> str | None:
    idx = block.allocations[ordinal]
    if idx is None or idx >= len(block.attributes):
        return None
    return block.attributes[idx].handle_id


def allocated(block: Block) -> list[tuple[int, Attribute | None]]:
    """(ordinal, attribute) of every allocated ordinal, in ordinal order."""
    out: list[tuple[int, Attribute | None]] = []
    for o, idx in enumerate(block.allocations):
        if idx is not None:
            out.append((o, block.attributes[idx] if idx < len(block.attributes) else None))
    return out


def ordinals_of_handle(block: Block, handle: str) -> list[int]:
    return [o for o, a in allocated(block) if a is not None and a.handle_id == handle]


def counts_by_handle(block: Block) -> Counter[str]:
    return Counter(a.handle_id for _, a in allocated(block) if a is not None and a.handle_id)


def _attr_index(block: Block, handle: str | None, secondary: dict[str, str]) -> int:
    for i, attr in enumerate(block.attributes):
        if attr.handle_id == handle and attr.secondary == secondary and not attr.extra:
            return i
    block.attributes.append(Attribute(handle, dict(secondary)))
    return len(block.attributes) - 1


def take(
    block: Block, count: int, handle: str | None, secondary: dict[str, str]
) -> tuple[Block, list[int]]:
    """Allocate up to ``count`` ordinals from the head of the free list."""
    if count <= 0 or not block.unallocated:
        return block, []
    b = _copy(block)
    ordinals = b.unallocated[:count]
    del b.unallocated[:count]
    b.sequence_number += 1
    idx = _attr_index(b, handle, secondary)
    for o in ordinals:
        b.allocations[o] = idx
        b.seq_for_allocation[str(o)] = b.sequence_number
    return b, ordinals


def take_ordinal(
    block: Block, ordinal: int, handle: str | None, secondary: dict[str, str]
) -> Block:
    """Allocate exactly ``ordinal``; IPAMError if it is in use."""
    if block.allocations[ordinal] is not None:
        owner = handle_at(block, ordinal)
        raise IPAMError(f"{ip_at(block, ordinal)} is already assigned (handle {owner})")
    b = _copy(block)
    if ordinal in b.unallocated:
        b.unallocated.remove(ordinal)
    b.sequence_number += 1
    b.allocations[ordinal] = _attr_index(b, handle, secondary)
    b.seq_for_allocation[str(ordinal)] = b.sequence_number
    return b


def release(block: Block, ordinals: list[int]) -> tuple[Block, list[int], Counter[str]]:
    """Free the allocated ones of ``ordinals`` (others are skipped).

    Returns the new block, the ordinals actually freed (in the order given,
    appended in that order to the tail of the free list) and how many were
    freed per handle.
    """
    freed: list[int] = []
    per_handle: Counter[str] = Counter()
    for o in dict.fromkeys(ordinals):
        if block.allocations[o] is not None:
            freed.append(o)
            h = handle_at(block, o)
            if h:
                per_handle[h] += 1
    if not freed:
        return block, [], per_handle
    b = _copy(block)
    for o in freed:
        b.allocations[o] = None
        b.unallocated.append(o)
        b.seq_for_allocation.pop(str(o), None)
    b.sequence_number += 1
    _drop_unreferenced_attributes(b)
    return b, freed, per_handle


def release_handle(block: Block, handle: str) -> tuple[Block, list[int]]:
    b, freed, _ = release(block, ordinals_of_handle(block, handle))
    return b, freed


def _copy(block: Block) -> Block:
    """Copy-on-write of what the functions here change. Attributes are never
    changed in place (only appended, or the list rebuilt), so the lists are
    copied, not their items: a deepcopy cost ~1.2 ms per allocation."""
    return dataclasses.replace(
        block, allocations=list(block.allocations), unallocated=list(block.unallocated),
        attributes=list(block.attributes), seq_for_allocation=dict(block.seq_for_allocation),
        extra=dict(block.extra))


def _drop_unreferenced_attributes(b: Block) -> None:
    used = sorted({i for i in b.allocations if i is not None and i < len(b.attributes)})
    if len(used) == len(b.attributes):
        return
    renumber = {old: new for new, old in enumerate(used)}
    b.attributes = [b.attributes[i] for i in used]
    b.allocations = [None if i is None else renumber.get(i, i) for i in b.allocations]


def is_empty(block: Block) -> bool:
    return all(a is None for a in block.allocations)


def problems(block: Block) -> list[str]:
    """Violations of this module's invariants, as one-line texts (empty = sound)."""
    out: list[str] = []
    n = block.cidr.num_addresses
    free = block.unallocated
    if len(set(free)) != len(free):
        out.append(f"block {block.cidr}: unallocated list has duplicates")
    bad = [o for o in free if not 0 <= o < n]
    if bad:
        out.append(f"block {block.cidr}: unallocated ordinals out of range {bad[:5]}")
    free_set = set(free)
    both = [o for o in free_set if 0 <= o < n and block.allocations[o] is not None]
    if both:
        out.append(f"block {block.cidr}: ordinals both allocated and free {sorted(both)[:5]}")
    lost = [o for o in range(n) if block.allocations[o] is None and o not in free_set]
    if lost:
        out.append(
            f"block {block.cidr}: {len(lost)} free ordinal(s) missing from unallocated "
            f"(first {ip_at(block, lost[0])})"
        )
    dangling = [
        o for o, i in enumerate(block.allocations) if i is not None and i >= len(block.attributes)
    ]
    if dangling:
        out.append(f"block {block.cidr}: allocations point at missing attributes {dangling[:5]}")
    return out
