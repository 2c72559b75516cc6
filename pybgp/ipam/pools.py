"""IP pools as IPAM sees them, and which of them a request may use.

Pools are *input*: the caller reads Calico IPPool resources and passes
``Pool`` values in; this module never touches the store. Node-selector
evaluation is delegated to a ``Matcher`` callable so the selector language
lives in one place (``match_all_only`` is the stand-in used when no parser is
wired: it understands ``""`` and ``all()`` and refuses anything else rather
than guess).

Invariants:
- a ``Pool`` is validated on construction: its network is canonical, its
  block size fits Calico's limits (IPv4 20..32, IPv6 116..128) and is not
  shorter than the pool's prefix.
- ``usable_pools`` never returns a disabled pool, a pool of another IP
  version, or (unless no selector matcher can decide) one whose selector does
  not select the node.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pybgp.errors import IPAMError, ValidationError
from pybgp.ipam.keys import Network

Matcher = Callable[[str, Mapping[str, str]], bool]

DEFAULT_BLOCK_SIZE = {4: 26, 6: 122}
BLOCK_SIZE_RANGE = {4: (20, 32), 6: (116, 128)}


def match_all_only(selector: str, labels: Mapping[str, str]) -> bool:
    """Stand-in matcher: ``""`` and ``all()`` select every node; others are refused."""
    if selector.strip() in ("", "all()"):
        return True
    raise ValidationError(
        f"cannot evaluate node selector {selector!r}: no selector matcher was given to IPAM"
    )


@dataclass(frozen=True)
class Pool:
    cidr: Network
    block_size: int = 0  # 0 = Calico's default for the family (26 / 122)
    disabled: bool = False
    node_selector: str = ""
    name: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def __init__(
        self,
        cidr: str | Network,
        block_size: int | None = None,
        disabled: bool = False,
        node_selector: str = "",
        name: str = "",
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        try:
            net = ipaddress.ip_network(cidr, strict=False)
        except ValueError as exc:
            raise ValidationError(str(exc), field="spec.cidr", source=name or None) from None
        size = block_size or DEFAULT_BLOCK_SIZE[net.version]
        lo, hi = BLOCK_SIZE_RANGE[net.version]
        if not lo <= size <= hi:
            raise ValidationError(
                f"block size {size} out of range {lo}..{hi} for IPv{net.version}",
                field="spec.blockSize",
                source=name or None,
            )
        if size < net.prefixlen:
            raise ValidationError(
                f"pool {net} is smaller than its block size /{size}",
                field="spec.blockSize",
                source=name or None,
            )
        object.__setattr__(self, "cidr", net)
        object.__setattr__(self, "block_size", size)
        object.__setattr__(self, "disabled", bool(disabled))
        object.__setattr__(self, "node_selector", node_selector or "")
        object.__setattr__(self, "name", name or str(net))
        object.__setattr__(self, "extra", dict(extra or {}))

    @classmethod
    def from_resource(cls, obj: Mapping[str, Any]) -> Pool:
        """From a Calico v3 IPPool object (as read from the datastore)."""
        spec = obj.get("spec") or {}
        name = (obj.get("metadata") or {}).get("name", "")
        if "cidr" not in spec:
            raise ValidationError("missing", field="spec.cidr", source=name or None)
        return cls(
            spec["cidr"],
            block_size=spec.get("blockSize"),
            disabled=bool(spec.get("disabled", False)),
            node_selector=spec.get("nodeSelector", "") or "",
            name=name,
            extra=spec,
        )

    @property
    def version(self) -> int:
        return self.cidr.version

    @property
    def block_count(self) -> int:
        return 1 << (self.block_size - self.cidr.prefixlen)

    def block_for(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> Network:
        return ipaddress.ip_network(f"{ip}/{self.block_size}", strict=False)

    def block_at(self, index: int) -> Network:
        step = 1 << (self.cidr.max_prefixlen - self.block_size)
        base = self.cidr.network_address + index * step
        return ipaddress.ip_network(f"{base}/{self.block_size}")


def pool_for(
    pools: Sequence[Pool], ip: ipaddress.IPv4Address | ipaddress.IPv6Address
) -> Pool | None:
    for pool in pools:
        if ip.version == pool.version and ip in pool.cidr:
            return pool
    return None


def pool_of_block(pools: Sequence[Pool], net: Network) -> Pool | None:
    for pool in pools:
        if net.version == pool.version and net.subnet_of(pool.cidr):  # type: ignore[arg-type]
            return pool
    return None


def candidate_blocks(pool: Pool, node: str, order: str = "hashed") -> Iterator[Network]:
    """Every block of ``pool`` once, in the order a node tries to claim them.

    ``hashed`` starts at a node-specific offset (sha256 of the name), as
    Calico's per-host randomised block generator does, so nodes starting
    together rarely contend for the same block; ``sequential`` starts at the
    pool's first block.
    """
    n = pool.block_count
    start = 0
    if order == "hashed":
        import hashlib  # here: it loads libcrypto (~3 MiB), which the speaker never needs

        start = int.from_bytes(hashlib.sha256(node.encode()).digest()[:8], "big") % n
    elif order != "sequential":
        raise ValidationError(f"unknown block order {order!r} (hashed or sequential)")
    for i in range(n):
        yield pool.block_at((start + i) % n)


def usable_pools(
    pools: Sequence[Pool],
    version: int,
    node_labels: Mapping[str, str],
    matches: Matcher,
    requested: Sequence[str] | None = None,
) -> list[Pool]:
    """The pools an auto-assignment on this node may use, in preference order.

    With ``requested`` (pool names or CIDRs, the ``ipv4pools``/``ipv6pools``
    annotation), only those pools, in that order; each must exist and be
    enabled (IPAMError otherwise, as Calico). The node selector applies in
    both cases.
    """
    family = [p for p in pools if p.version == version]
    if requested:
        chosen: list[Pool] = []
        for want in requested:
            pool = _find_requested(family, want)
            if pool is None or pool.disabled:
                raise IPAMError(f"the given pool ({want}) does not exist, or is not enabled")
            if pool not in chosen:
                chosen.append(pool)
    else:
        chosen = [p for p in family if not p.disabled]
    return [p for p in chosen if matches(p.node_selector, node_labels)]


def _find_requested(pools: Sequence[Pool], want: str) -> Pool | None:
    for pool in pools:
        if want == pool.name:
            return pool
    try:
        net = ipaddress.ip_network(want, strict=False)
    except ValueError:
        return None
    for pool in pools:
        if pool.cidr == net:
            return pool
    return None
