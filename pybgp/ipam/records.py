"""The four IPAM records and their JSON, byte-compatible with libcalico-go.

Shapes (Go field tags of libcalico-go ``model``):

- AllocationBlock: ``{"cidr", "affinity" ("host:<node>" or null),
  "affinity_claim_time" (RFC 3339, omitted when unknown), "allocations"
  (one entry per ordinal: attribute index or null), "unallocated" (FIFO of
  free ordinals), "attributes" ([{"handle_id", "secondary": {node, namespace,
  pod, timestamp...}}]), "sequenceNumber", "sequenceNumberForAllocation"
  ({"<ordinal>": seq}), "deleted"}``
- BlockAffinity: ``{"state": "pending" | "confirmed" | "pendingDeletion", "deleted"}``
- IPAMHandle: ``{"block": {"<block cidr>": count}, "deleted"}``
- IPAMConfig: ``{"strict_affinity", "auto_allocate_blocks", "maxBlocksPerHost"}``
  (each omitted when false/0, as Go's ``omitempty`` does).

Invariants:
- decoding never loses a field: keys this module does not know are kept in
  ``extra`` and written back unchanged, so records written by real Calico
  (``hostAffinity``, ``alternate`` owner attributes...) survive our updates.
- Go ``null`` for a list decodes to ``[]``; encoding is compact JSON.
- a decode of malformed bytes raises ``ValidationError`` naming the key.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from typing import Any

from pybgp.errors import ValidationError
from pybgp.ipam.keys import Network

STATE_PENDING = "pending"
STATE_CONFIRMED = "confirmed"
STATE_PENDING_DELETION = "pendingDeletion"
AFFINITY_STATES = (STATE_PENDING, STATE_CONFIRMED, STATE_PENDING_DELETION)


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _loads(raw: bytes, what: str) -> dict[str, Any]:
    try:
        obj = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationError(f"not JSON: {exc}", source=what) from None
    if not isinstance(obj, dict):
        raise ValidationError("not a JSON object", source=what)
    return obj


@dataclass
class Attribute:
    handle_id: str | None
    secondary: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.handle_id is not None:
            out["handle_id"] = self.handle_id
        if self.secondary:
            out["secondary"] = dict(self.secondary)
        out.update(self.extra)
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Attribute:
        rest = dict(obj)
        handle = rest.pop("handle_id", None)
        secondary = rest.pop("secondary", None) or {}
        return cls(handle, {str(k): str(v) for k, v in secondary.items()}, rest)


@dataclass
class Block:
    cidr: Network
    affinity: str | None
    allocations: list[int | None]
    unallocated: list[int]
    attributes: list[Attribute] = field(default_factory=list)
    sequence_number: int = 0
    seq_for_allocation: dict[str, int] = field(default_factory=dict)
    deleted: bool = False
    affinity_claim_time: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def encode(self) -> bytes:
        out: dict[str, Any] = {"cidr": str(self.cidr), "affinity": self.affinity}
        if self.affinity_claim_time:
            out["affinity_claim_time"] = self.affinity_claim_time
        out.update(
            {
                "allocations": list(self.allocations),
                "unallocated": list(self.unallocated),
                "attributes": [a.to_json() for a in self.attributes],
                "sequenceNumber": self.sequence_number,
                "sequenceNumberForAllocation": dict(self.seq_for_allocation),
                "deleted": self.deleted,
            }
        )
        out.update(self.extra)
        return _dumps(out)

    @classmethod
    def decode(cls, raw: bytes, what: str = "block") -> Block:
        obj = _loads(raw, what)
        try:
            cidr = ipaddress.ip_network(obj.pop("cidr"))
            allocations = [None if a is None else int(a) for a in obj.pop("allocations") or []]
            block = cls(
                cidr=cidr,
                affinity=obj.pop("affinity", None),
                allocations=allocations,
                unallocated=[int(o) for o in obj.pop("unallocated", None) or []],
                attributes=[Attribute.from_json(a) for a in obj.pop("attributes", None) or []],
                sequence_number=int(obj.pop("sequenceNumber", 0) or 0),
                seq_for_allocation={
                    str(k): int(v)
                    for k, v in (obj.pop("sequenceNumberForAllocation", None) or {}).items()
                },
                deleted=bool(obj.pop("deleted", False)),
                affinity_claim_time=obj.pop("affinity_claim_time", None),
                extra=obj,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValidationError(f"malformed allocation block: {exc!r}", source=what) from None
        if len(block.allocations) != block.cidr.num_addresses:
            raise ValidationError(
                f"allocations has {len(block.allocations)} entries, "
                f"block {block.cidr} has {block.cidr.num_addresses} addresses",
                source=what,
            )
        return block


@dataclass
class Affinity:
    state: str
    deleted: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def encode(self) -> bytes:
        return _dumps({"state": self.state, "deleted": self.deleted, **self.extra})

    @classmethod
    def decode(cls, raw: bytes, what: str = "affinity") -> Affinity:
        obj = _loads(raw, what)
        state = obj.pop("state", "")
        # Calico treats an empty state as confirmed (records written before states existed).
        return cls(state or STATE_CONFIRMED, bool(obj.pop("deleted", False)), obj)


@dataclass
class Handle:
    block: dict[str, int] = field(default_factory=dict)
    deleted: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def encode(self) -> bytes:
        return _dumps({"block": dict(self.block), "deleted": self.deleted, **self.extra})

    @classmethod
    def decode(cls, raw: bytes, what: str = "handle") -> Handle:
        obj = _loads(raw, what)
        try:
            counts = {str(k): int(v) for k, v in (obj.pop("block", None) or {}).items()}
        except (TypeError, ValueError, AttributeError) as exc:
            raise ValidationError(f"malformed IPAM handle: {exc!r}", source=what) from None
        return cls(counts, bool(obj.pop("deleted", False)), obj)

    def total(self) -> int:
        return sum(self.block.values())


@dataclass(frozen=True)
class IPAMConfig:
    """Calico's IPAMConfig. Defaults are what Calico uses when no record exists."""

    strict_affinity: bool = False
    auto_allocate_blocks: bool = True
    max_blocks_per_host: int = 0  # 0 = no global limit

    def encode(self) -> bytes:
        out: dict[str, Any] = {}
        if self.strict_affinity:
            out["strict_affinity"] = True
        if self.auto_allocate_blocks:
            out["auto_allocate_blocks"] = True
        if self.max_blocks_per_host:
            out["maxBlocksPerHost"] = self.max_blocks_per_host
        return _dumps(out)

    @classmethod
    def decode(cls, raw: bytes, what: str = "IPAM config") -> IPAMConfig:
        """A *present* record: absent fields are false/0, exactly as Go decodes them."""
        obj = _loads(raw, what)
        try:
            return cls(
                strict_affinity=bool(obj.get("strict_affinity", False)),
                auto_allocate_blocks=bool(obj.get("auto_allocate_blocks", False)),
                max_blocks_per_host=int(obj.get("maxBlocksPerHost", 0) or 0),
            )
        except (TypeError, ValueError) as exc:
            raise ValidationError(f"malformed IPAM config: {exc!r}", source=what) from None
