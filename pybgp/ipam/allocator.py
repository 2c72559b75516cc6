"""Calico-semantics IPAM over a compare-and-swap key-value store.

``IPAM`` is used synchronously by a short-lived process (the CNI plugin, the
CLI). It reads and writes only through ``KVStore`` (``get``/``list``/``txn``);
every write is a ``txn`` whose checks make it a compare-and-swap, and a lost
race (``ConflictError``) re-reads and re-plans, up to ``retries`` times with
a small random back-off.

Allocation order (as libcalico-go): (1) the node's *confirmed* affine blocks
in the usable pools, lowest CIDR first, each from the head of its free list;
(2) claim a new block (own unfinished claims are resumed first), bounded by
max blocks per host and ``auto_allocate_blocks``; (3) only when no block can
be claimed and strict affinity is off, borrow free addresses from other
nodes' blocks in the usable pools. Addresses are returned with the block's
prefix length (``198.19.0.5/26``), as Calico's AutoAssign does.

What is written, in which transaction:

- **claim** of block B by node N, three transactions, none allocates:
  T1 create affinity ``host/N/.../B`` = pending (check: absent);
  T2 create block B, empty, ``affinity: host:N`` (checks: block absent AND
  our pending affinity unchanged); T3 affinity = confirmed (check: unchanged).
  If T2 finds B already owned by another node, N deletes its pending
  affinity (CAS) and tries the next block. Only confirmed affinities are used
  for allocation (and advertised by the speaker).
- **allocation**: ONE transaction writes every touched block *and* the handle
  record ``handle/<id>`` (block -> count), checking each block's and the
  handle's mod_revision (0 = absent for a new handle). ``auto_assign`` stages
  all ``count`` addresses first, so it is all-or-nothing.
- **release** (by handle or by address): ONE transaction frees the ordinals
  (appended to the free lists' tails) in every touched block and deletes or
  decrements the handle records, with the same checks.

Why no crash point leaks an address: an address is allocated only by a
transaction that also records it in its handle, and freed only by one that
also removes it from the handle, so no crash can leave an allocation that
release-by-handle (the CNI DEL the runtime retries after a failed or crashed
ADD) cannot find, nor a handle count without its allocation. A crash inside
a claim leaves at most a pending affinity and/or an *empty* block affine to
N: no address is lost, the next claim on N resumes and confirms it (or
removes it when the block went to another node), and ``audit.check`` reports
it meanwhile. An ambiguous commit (the store applied a transaction but the
client saw an error) is the same as a crash just after that transaction.

Unfinished claims of the node are resumed before the block limit is
checked (they already count against it). Empty blocks keep their affinity
(as Calico does): this module never releases a confirmed affinity, and
never reclaims other nodes' empty blocks. A block that becomes empty and has
no affinity is deleted in the releasing transaction (as Calico does).
"""

from __future__ import annotations

import contextlib
import ipaddress
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from pybgp.datastore.kv import KV, Check, Delete, KVStore, Op, Put
from pybgp.errors import ConflictError, IPAMError, PoolExhaustedError, ValidationError
from pybgp.ipam import block as blk
from pybgp.ipam.keys import (
    CONFIG_KEY,
    Network,
    affinities_prefix,
    affinity_key,
    block_key,
    blocks_prefix,
    check_handle,
    check_node,
    handle_key,
    parse_affinity_key,
    parse_block_key,
)
from pybgp.ipam.pools import (
    Matcher,
    Pool,
    candidate_blocks,
    match_all_only,
    pool_for,
    pool_of_block,
    usable_pools,
)
from pybgp.ipam.records import (
    STATE_CONFIRMED,
    STATE_PENDING,
    Affinity,
    Block,
    Handle,
    IPAMConfig,
)

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
T = TypeVar("T")


@dataclass
class _Staged:
    """A block read at ``rev`` with this request's allocations applied."""

    rev: int
    block: Block
    ordinals: list[int]


def go_time_string(ts: float) -> str:
    """``ts`` as Go's ``time.Now().UTC().String()`` prints it (Calico's timestamp attribute)."""
    dt = datetime.fromtimestamp(ts, tz=UTC)
    frac = f".{dt.microsecond:06d}".rstrip("0") if dt.microsecond else ""
    return dt.strftime("%Y-%m-%d %H:%M:%S") + frac + " +0000 UTC"


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class IPAM:
    def __init__(
        self,
        store: KVStore,
        node: str,
        *,
        node_labels: Mapping[str, str] | None = None,
        matches: Matcher = match_all_only,
        max_blocks_per_host: int = 20,
        strict_affinity: bool = False,
        auto_allocate_blocks: bool = True,
        retries: int = 100,
        block_order: str = "hashed",
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        seed: int | None = None,
    ) -> None:
        """``strict_affinity``/``auto_allocate_blocks`` apply only while no
        ``/calico/ipam/v2/config`` record exists; when it exists it wins.
        The block limit is the smaller of ``max_blocks_per_host`` and the
        record's ``maxBlocksPerHost`` (0 = no limit from that source)."""
        self.store = store
        self.node = check_node(node)
        self.node_labels = dict(node_labels or {})
        self.matches = matches
        self.max_blocks_per_host = max_blocks_per_host
        self.retries = max(1, retries)
        self.block_order = block_order
        self._defaults = IPAMConfig(strict_affinity, auto_allocate_blocks, 0)
        self._clock = clock
        self._sleep = sleep
        self._rng = random.Random(seed)

    # ------------------------------------------------------------------ config

    def config(self) -> IPAMConfig:
        kv = self.store.get(CONFIG_KEY)
        return self._defaults if kv is None else IPAMConfig.decode(kv.value, CONFIG_KEY)

    def block_limit(self, cfg: IPAMConfig) -> int:
        limits = [n for n in (self.max_blocks_per_host, cfg.max_blocks_per_host) if n > 0]
        return min(limits) if limits else 0

    # -------------------------------------------------------------- public API

    def auto_assign(
        self,
        handle: str,
        count: int = 1,
        attrs: Mapping[str, str] | None = None,
        pools: Sequence[Pool] = (),
        requested_pools: Sequence[str] | None = None,
        *,
        ip_version: int | None = None,
    ) -> list[IPInterface]:
        """Assign ``count`` addresses of one IP family to ``handle``, all or none."""
        check_handle(handle)
        if count < 1:
            raise ValidationError(f"count must be at least 1, got {count}")
        version = _infer_version(pools, requested_pools, ip_version)
        usable = usable_pools(pools, version, self.node_labels, self.matches, requested_pools)
        if not usable:
            raise IPAMError(f"no enabled IPv{version} pool selects node {self.node}")
        secondary = self._secondary(attrs)
        cfg = self.config()
        staged = self._retry(
            lambda: self._plan_auto(handle, count, secondary, usable, version, cfg),
            f"assign {count} address(es) to {handle}",
        )
        out: list[IPInterface] = []
        for net, st in staged.items():
            out += [
                ipaddress.ip_interface(f"{blk.ip_at(st.block, o)}/{net.prefixlen}")
                for o in st.ordinals
            ]
        return out

    def assign_ip(
        self,
        ip: str | IPAddress,
        handle: str,
        attrs: Mapping[str, str] | None = None,
        pools: Sequence[Pool] = (),
    ) -> IPInterface:
        """Assign exactly ``ip`` (the ``ipAddrs`` annotation) to ``handle``.

        Claims the address's block for this node when nobody has it yet.
        Assigning an address its own handle already holds succeeds again
        (so a retried CNI ADD is harmless); any other holder is an IPAMError.
        """
        check_handle(handle)
        addr = _parse_ip(ip)
        pool = pool_for([p for p in pools if not p.disabled], addr)
        if pool is None:
            raise IPAMError(f"{addr} is not in any enabled IP pool")
        net = pool.block_for(addr)
        secondary = self._secondary(attrs)

        def attempt() -> IPInterface:
            cfg = self.config()
            kv = self.store.get(block_key(net))
            if kv is None:
                affs = self._own_affinities(net.version)
                if not self._claim(net, affs.get(net)):
                    raise ConflictError(
                        f"block {net} was claimed by another node", key=block_key(net)
                    )
                kv = self.store.get(block_key(net))
                if kv is None:
                    raise ConflictError(f"block {net} vanished", key=block_key(net))
            block = Block.decode(kv.value, kv.key)
            owner = blk.host_of(block)
            if cfg.strict_affinity and owner != self.node:
                raise IPAMError(
                    f"{addr} is in block {net} affine to {owner or 'no node'}, "
                    "and strict affinity forbids borrowing it"
                )
            ordinal = blk.ordinal_of(block, addr)
            iface = ipaddress.ip_interface(f"{addr}/{net.prefixlen}")
            if blk.handle_at(block, ordinal) == handle:
                return iface
            new = blk.take_ordinal(block, ordinal, handle, secondary)
            self._commit_alloc(handle, {net: _Staged(kv.mod_revision, new, [ordinal])})
            return iface

        return self._retry(attempt, f"assign {addr} to {handle}")

    def release_by_handle(self, handle: str) -> list[str]:
        """Free every address of ``handle`` in one transaction; unknown handle -> []."""
        check_handle(handle)
        hkey = handle_key(handle)

        def attempt() -> list[str]:
            hkv = self.store.get(hkey)
            if hkv is None:
                return []
            record = Handle.decode(hkv.value, hkey)
            checks = [Check(hkey, hkv.mod_revision)]
            ops: list[Op] = [Delete(hkey)]
            released: list[str] = []
            for cidr in sorted(record.block, key=_cidr_sort_key):
                try:
                    net = ipaddress.ip_network(cidr)
                except ValueError:
                    continue
                kv = self.store.get(block_key(net))
                if kv is None:
                    continue
                block = Block.decode(kv.value, kv.key)
                new, freed = blk.release_handle(block, handle)
                if not freed:
                    continue
                checks.append(Check(kv.key, kv.mod_revision))
                ops.append(_block_write(new))
                released += [str(blk.ip_at(block, o)) for o in freed]
            self.store.txn(checks, ops)
            return released

        return self._retry(attempt, f"release handle {handle}")

    def release_ips(self, ips: Iterable[str | IPAddress]) -> list[str]:
        """Free the given addresses (whoever holds them); returns those that were in use."""
        addrs = list(dict.fromkeys(_parse_ip(ip) for ip in ips))
        if not addrs:
            return []

        def attempt() -> list[str]:
            located = self._locate(addrs)
            checks: list[Check] = []
            ops: list[Op] = []
            per_handle: Counter[tuple[str, str]] = Counter()
            freed_ips: set[IPAddress] = set()
            for kv, block, wanted in located:
                new, freed, by_handle = blk.release(
                    block, [blk.ordinal_of(block, a) for a in wanted]
                )
                if not freed:
                    continue
                checks.append(Check(kv.key, kv.mod_revision))
                ops.append(_block_write(new))
                freed_ips.update(blk.ip_at(block, o) for o in freed)
                for h, n in by_handle.items():
                    per_handle[(h, str(block.cidr))] += n
            for h in sorted({h for h, _ in per_handle}):
                hkey = _handle_key_or_none(h)
                hkv = self.store.get(hkey) if hkey else None
                if hkey is None or hkv is None:
                    continue  # allocation without handle record: nothing to decrement
                record = Handle.decode(hkv.value, hkey)
                for (hh, cidr), n in per_handle.items():
                    if hh == h:
                        left = record.block.get(cidr, 0) - n
                        if left > 0:
                            record.block[cidr] = left
                        else:
                            record.block.pop(cidr, None)
                checks.append(Check(hkey, hkv.mod_revision))
                ops.append(Put(hkey, record.encode()) if record.block else Delete(hkey))
            if ops:
                self.store.txn(checks, ops)
            return [str(a) for a in addrs if a in freed_ips]

        return self._retry(attempt, "release addresses")

    # ------------------------------------------------------------ allocation

    def _plan_auto(
        self,
        handle: str,
        count: int,
        secondary: dict[str, str],
        usable: list[Pool],
        version: int,
        cfg: IPAMConfig,
    ) -> dict[Network, _Staged]:
        """Stage ``count`` addresses (claiming blocks as needed) and commit them."""
        need = count
        staged: dict[Network, _Staged] = {}
        limit = self.block_limit(cfg)
        reason = ""
        for _round in range((limit or 1024) + 1):
            affs = {
                net: a
                for net, a in self._own_affinities(version).items()
                if pool_of_block(usable, net) is not None
            }
            for net in sorted(affs, key=_net_sort_key):
                if need == 0:
                    break
                if affs[net][0].state != STATE_CONFIRMED or net in staged:
                    continue
                kv = self.store.get(block_key(net))
                if kv is None and self._claim(net, affs[net]):
                    kv = self.store.get(block_key(net))  # block re-created for our affinity
                if kv is None:
                    continue
                block = Block.decode(kv.value, kv.key)
                if blk.host_of(block) != self.node:
                    continue
                new, ords = blk.take(block, need, handle, secondary)
                if ords:
                    staged[net] = _Staged(kv.mod_revision, new, ords)
                    need -= len(ords)
            if need == 0:
                break
            if not cfg.auto_allocate_blocks:
                reason = "its blocks are full and auto_allocate_blocks is off"
                break
            if self._resume_claims(affs):
                continue
            if limit and len(affs) >= limit:
                reason = f"its {len(affs)} blocks are full and the limit is {limit} blocks per node"
                break
            if self._claim_free_block(usable, version, affs) is None:
                reason = "its blocks are full and no unclaimed block is left in " + _names(usable)
                break
        else:
            raise ConflictError("blocks filled up while claiming; starting over")
        if need and cfg.strict_affinity:
            raise PoolExhaustedError(
                f"cannot assign {count} IPv{version} address(es) on node {self.node}: "
                f"{reason}; strict affinity forbids borrowing from other nodes' blocks"
            )
        if need:
            short = need
            need = self._borrow(need, handle, secondary, usable, version, staged)
            if need:
                raise PoolExhaustedError(
                    f"cannot assign {count} IPv{version} address(es) on node {self.node}: "
                    f"{reason}, and other nodes' blocks in {_names(usable)} have only "
                    f"{short - need} of the {short} missing free"
                )
        self._commit_alloc(handle, staged)
        return staged

    def _borrow(
        self,
        need: int,
        handle: str,
        secondary: dict[str, str],
        usable: list[Pool],
        version: int,
        staged: dict[Network, _Staged],
    ) -> int:
        kvs, _ = self.store.list(blocks_prefix(version))
        for kv in kvs:
            if need == 0:
                break
            net = parse_block_key(kv.key)
            if net is None or net in staged or pool_of_block(usable, net) is None:
                continue
            block = Block.decode(kv.value, kv.key)
            if blk.host_of(block) == self.node or not block.unallocated:
                continue
            new, ords = blk.take(block, need, handle, secondary)
            staged[net] = _Staged(kv.mod_revision, new, ords)
            need -= len(ords)
        return need

    def _commit_alloc(self, handle: str, staged: Mapping[Network, _Staged]) -> None:
        """One txn: every staged block and the handle record, all CAS-checked."""
        hkey = handle_key(handle)
        hkv = self.store.get(hkey)
        record = Handle.decode(hkv.value, hkey) if hkv else Handle()
        checks = [Check(hkey, hkv.mod_revision if hkv else 0)]
        ops: list[Op] = []
        for net, st in staged.items():
            record.block[str(net)] = record.block.get(str(net), 0) + len(st.ordinals)
            checks.append(Check(block_key(net), st.rev))
            ops.append(Put(block_key(net), st.block.encode()))
        ops.append(Put(hkey, record.encode()))
        self.store.txn(checks, ops)

    # ----------------------------------------------------------------- claims

    def _own_affinities(self, version: int) -> dict[Network, tuple[Affinity, int]]:
        kvs, _ = self.store.list(affinities_prefix(self.node, version))
        out: dict[Network, tuple[Affinity, int]] = {}
        for kv in kvs:
            parsed = parse_affinity_key(kv.key)
            if parsed and parsed[0] == self.node:
                out[parsed[1]] = (Affinity.decode(kv.value, kv.key), kv.mod_revision)
        return out

    def _resume_claims(self, affs: Mapping[Network, tuple[Affinity, int]]) -> bool:
        """Finish (or drop, if the block went elsewhere) our interrupted claims.

        True if there were any (the caller re-reads its affinities). These
        claims already count against the block limit, so they go first.
        """
        unfinished = [n for n in affs if affs[n][0].state != STATE_CONFIRMED]
        for net in sorted(unfinished, key=_net_sort_key):
            self._claim(net, affs[net])
        return bool(unfinished)

    def _claim_free_block(
        self, usable: list[Pool], version: int, affs: Mapping[Network, tuple[Affinity, int]]
    ) -> Network | None:
        """Claim the first unclaimed block of the usable pools; None if none is left."""
        kvs, _ = self.store.list(blocks_prefix(version))
        existing: dict[Network, KV] = {}
        for kv in kvs:
            parsed = parse_block_key(kv.key)
            if parsed is not None:
                existing[parsed] = kv
        for pool in usable:
            for cand in candidate_blocks(pool, self.node, self.block_order):
                if cand in affs:
                    continue
                found = existing.get(cand)
                if found is None:
                    if self._claim(cand, None):
                        return cand
                elif self.node.encode() in found.value:
                    # Block says it is ours but our affinity record is gone: re-attach.
                    block = Block.decode(found.value, found.key)
                    ours = blk.host_of(block) == self.node and block.unallocated
                    if ours and self._claim(cand, None):
                        return cand
        return None

    def _claim(self, net: Network, aff: tuple[Affinity, int] | None) -> bool:
        """Two-phase claim of ``net`` for this node, or the resumption of one.

        True once our affinity is confirmed and the block exists affine to us
        (an empty block is re-created for a confirmed affinity that lost it,
        as libcalico-go does); False if the block belongs to someone else (a
        pending affinity of ours is then removed). ConflictError when a race
        needs a re-plan."""
        akey, bkey = affinity_key(self.node, net), block_key(net)
        confirmed = False
        if aff is None:
            arev = self.store.txn([Check(akey, 0)], [Put(akey, Affinity(STATE_PENDING).encode())])
        else:
            record, arev = aff
            confirmed = record.state == STATE_CONFIRMED
            if record.state not in (STATE_PENDING, STATE_CONFIRMED):
                record.state = STATE_PENDING
                arev = self.store.txn([Check(akey, arev)], [Put(akey, record.encode())])
        kv = self.store.get(bkey)
        if kv is None:
            now = self._clock()
            new = blk.new_block(net, self.node, claim_time=rfc3339(now), sequence=int(now * 1e9))
            try:
                self.store.txn([Check(bkey, 0), Check(akey, arev)], [Put(bkey, new.encode())])
            except ConflictError:
                kv = self.store.get(bkey)
                if kv is None:
                    raise
        if kv is not None and blk.host_of(Block.decode(kv.value, kv.key)) != self.node:
            if not confirmed:  # a confirmed one is left for check() to report, never guessed at
                with contextlib.suppress(ConflictError):
                    self.store.txn([Check(akey, arev)], [Delete(akey)])
            return False
        if confirmed:
            return True
        try:
            self.store.txn([Check(akey, arev)], [Put(akey, Affinity(STATE_CONFIRMED).encode())])
        except ConflictError:
            cur = self.store.get(akey)
            if cur is None or Affinity.decode(cur.value, akey).state != STATE_CONFIRMED:
                raise
        return True

    # ---------------------------------------------------------------- helpers

    def _locate(self, addrs: list[IPAddress]) -> list[tuple[KV, Block, list[IPAddress]]]:
        """The existing blocks holding ``addrs`` (addresses in no block are dropped)."""
        out: list[tuple[KV, Block, list[IPAddress]]] = []
        for version in sorted({a.version for a in addrs}):
            kvs, _ = self.store.list(blocks_prefix(version))
            index: dict[Network, KV] = {}
            for kv in kvs:
                net = parse_block_key(kv.key)
                if net is not None:
                    index[net] = kv
            plens = sorted({n.prefixlen for n in index}, reverse=True)
            wanted: dict[Network, list[IPAddress]] = {}
            for a in addrs:
                if a.version != version:
                    continue
                for plen in plens:
                    net = ipaddress.ip_network(f"{a}/{plen}", strict=False)
                    if net in index:
                        wanted.setdefault(net, []).append(a)
                        break
            for net, found in wanted.items():
                kv = index[net]
                out.append((kv, Block.decode(kv.value, kv.key), found))
        return out

    def _secondary(self, attrs: Mapping[str, str] | None) -> dict[str, str]:
        sec = {str(k): str(v) for k, v in (attrs or {}).items()}
        sec.setdefault("node", self.node)
        sec.setdefault("timestamp", go_time_string(self._clock()))
        return sec

    def _retry(self, fn: Callable[[], T], what: str) -> T:
        last: ConflictError | None = None
        for attempt in range(self.retries):
            try:
                return fn()
            except ConflictError as exc:
                last = exc
                self._sleep(self._rng.uniform(0, min(0.05, 0.0005 * (2 ** min(attempt, 7)))))
        raise IPAMError(
            f"could not {what}: {self.retries} attempts lost compare-and-swap races "
            f"(excessive concurrent IPAM requests; last: {last})"
        )


def _block_write(block: Block) -> Op:
    if blk.is_empty(block) and block.affinity is None:
        return Delete(block_key(block.cidr))
    return Put(block_key(block.cidr), block.encode())


def _handle_key_or_none(handle: str) -> str | None:
    try:
        return handle_key(handle)
    except ValidationError:
        return None


def _parse_ip(ip: str | IPAddress) -> IPAddress:
    if isinstance(ip, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return ip
    try:
        return ipaddress.ip_address(str(ip).split("/", 1)[0].strip())
    except ValueError:
        raise ValidationError(f"not an IP address: {ip!r}") from None


def _net_sort_key(net: Network) -> tuple[int, int, int]:
    return (net.version, int(net.network_address), net.prefixlen)


def _cidr_sort_key(cidr: str) -> tuple[int, int, int]:
    try:
        return _net_sort_key(ipaddress.ip_network(cidr))
    except ValueError:
        return (0, 0, 0)


def _names(pools: Sequence[Pool]) -> str:
    return "pool(s) " + ", ".join(p.name for p in pools)


def _infer_version(
    pools: Sequence[Pool], requested: Sequence[str] | None, ip_version: int | None
) -> int:
    if ip_version is not None:
        if ip_version not in (4, 6):
            raise ValidationError(f"ip_version must be 4 or 6, got {ip_version}")
        return ip_version
    if requested:
        families = {p.version for p in pools for r in requested if r in (p.name, str(p.cidr))}
        for r in requested:
            with contextlib.suppress(ValueError):
                families.add(ipaddress.ip_network(r, strict=False).version)
    else:
        families = {p.version for p in pools if not p.disabled}
    if len(families) > 1:
        raise ValidationError("pools of both IPv4 and IPv6 given: pass ip_version=4 or 6")
    return families.pop() if families else 4
