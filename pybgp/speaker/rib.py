"""Adj-RIB-In of the speaker and the BGP decision process (pure).

Owns: the ``Path`` record, the loop checks applied at import, the RFC 4271
§9.1.2 decision process as a chain of small named comparators (GoBGP style,
each answering "a wins", "b wins" or "tie") with a ``Reason`` naming the step
that decided, the ECMP multipath set (BIRD/Calico ``merge paths``), the
graceful-restart helper's mark-and-sweep of a peer's stale paths, and the
diff of decisions that the kernel layer applies.

Must never: do I/O, look at the clock (``received_at`` is given by the
caller), import anything above ``pybgp.speaker`` or mutate a ``Path``.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cmp_to_key
from typing import Literal

Origin = Literal["igp", "egp", "incomplete"]
ORIGIN_RANK: dict[str, int] = {"igp": 0, "egp": 1, "incomplete": 2}
DEFAULT_LOCAL_PREF = 100


@dataclass(frozen=True, slots=True)
class Path:
    """One route to ``prefix`` as learned from ``peer`` (its address).

    ``as_path`` holds the AS_SEQUENCE members in order; ``as_sets`` holds each
    AS_SET segment (each counts as one AS in the path length, RFC 4271
    §9.1.2.2 a). ``received_at`` is informational and not part of equality,
    so a re-announcement of the same attributes is no change.
    """

    prefix: str
    peer: str
    next_hop: str
    local_pref: int | None = None
    as_path: tuple[int, ...] = ()
    origin: Origin = "igp"
    med: int | None = None
    ibgp: bool = True
    peer_router_id: str = ""
    originator_id: str | None = None
    cluster_list: tuple[str, ...] = ()
    communities: tuple[tuple[int, int], ...] = ()
    large_communities: tuple[tuple[int, int, int], ...] = ()
    as_sets: tuple[tuple[int, ...], ...] = ()
    received_at: float = field(default=0.0, compare=False)

    @property
    def effective_local_pref(self) -> int:
        return DEFAULT_LOCAL_PREF if self.local_pref is None else self.local_pref

    @property
    def as_path_length(self) -> int:
        return len(self.as_path) + len(self.as_sets)

    @property
    def neighbor_as(self) -> int | None:
        """The AS the path was learned from (first AS); ``None`` = our own AS."""
        return self.as_path[0] if self.as_path else None

    @property
    def origin_as(self) -> int | None:
        """The last AS of the sequence (BIRD shows it as ``[AS<n>i]``)."""
        return self.as_path[-1] if self.as_path else None

    @property
    def effective_router_id(self) -> str:
        """ORIGINATOR_ID when present (RFC 4456 §9), else the peer's BGP id."""
        return self.originator_id or self.peer_router_id or self.peer

    def all_ases(self) -> Iterator[int]:
        yield from self.as_path
        for segment in self.as_sets:
            yield from segment


class Reason(enum.Enum):
    """Which step of the decision process chose the best path."""

    ONLY_PATH = "only path"
    LOCAL_PREF = "local pref"
    AS_PATH = "as path"
    ORIGIN = "origin"
    MED = "med"
    EBGP_OVER_IBGP = "ebgp over ibgp"
    ROUTER_ID = "router id"
    CLUSTER_LIST = "cluster list"
    PEER_ADDRESS = "peer address"


class LoopReason(enum.Enum):
    """Why a path was refused at import."""

    AS_PATH = "own AS in AS_PATH"
    ORIGINATOR_ID = "own router id as ORIGINATOR_ID"
    CLUSTER_LIST = "own cluster id in CLUSTER_LIST"


Comparator = Callable[[Path, Path], "Path | None"]


def _prefer_lower(a: Path, b: Path, ka: object, kb: object) -> Path | None:
    if ka == kb:
        return None
    return a if ka < kb else b  # type: ignore[operator]


def by_local_pref(a: Path, b: Path) -> Path | None:
    """Highest LOCAL_PREF (absent = 100)."""
    return _prefer_lower(a, b, -a.effective_local_pref, -b.effective_local_pref)


def by_as_path_length(a: Path, b: Path) -> Path | None:
    """Shortest AS_PATH (an AS_SET counts as one)."""
    return _prefer_lower(a, b, a.as_path_length, b.as_path_length)


def by_origin(a: Path, b: Path) -> Path | None:
    """Lowest ORIGIN: IGP < EGP < INCOMPLETE."""
    return _prefer_lower(a, b, ORIGIN_RANK[a.origin], ORIGIN_RANK[b.origin])


def by_med(a: Path, b: Path) -> Path | None:
    """Lowest MED, only between paths from the same neighbouring AS.

    A missing MED is the lowest possible value (RFC 4271 §9.1.2.2 c).
    """
    if a.neighbor_as != b.neighbor_as:
        return None
    return _prefer_lower(a, b, a.med or 0, b.med or 0)


def by_ebgp(a: Path, b: Path) -> Path | None:
    """eBGP-learned over iBGP-learned."""
    return _prefer_lower(a, b, a.ibgp, b.ibgp)


def _ip_key(addr: str) -> int:
    try:
        return int(ipaddress.ip_address(addr))
    except ValueError:
        return 0


def by_router_id(a: Path, b: Path) -> Path | None:
    """Lowest BGP identifier, ORIGINATOR_ID standing in for it (RFC 4456)."""
    return _prefer_lower(
        a, b, _ip_key(a.effective_router_id), _ip_key(b.effective_router_id)
    )


def by_cluster_list_length(a: Path, b: Path) -> Path | None:
    """Shorter CLUSTER_LIST (RFC 4456 §9)."""
    return _prefer_lower(a, b, len(a.cluster_list), len(b.cluster_list))


def by_peer_address(a: Path, b: Path) -> Path | None:
    """Lowest peer address: the final tie-break."""
    return _prefer_lower(a, b, _ip_key(a.peer), _ip_key(b.peer))


#: Steps whose ties make paths equal-cost (multipath); IGP cost is skipped
#: because every next hop is directly connected in a Calico fabric.
MULTIPATH_STEPS: tuple[tuple[Reason, Comparator], ...] = (
    (Reason.LOCAL_PREF, by_local_pref),
    (Reason.AS_PATH, by_as_path_length),
    (Reason.ORIGIN, by_origin),
    (Reason.MED, by_med),
    (Reason.EBGP_OVER_IBGP, by_ebgp),
)
TIEBREAK_STEPS: tuple[tuple[Reason, Comparator], ...] = (
    (Reason.ROUTER_ID, by_router_id),
    (Reason.CLUSTER_LIST, by_cluster_list_length),
    (Reason.PEER_ADDRESS, by_peer_address),
)
STEPS = MULTIPATH_STEPS + TIEBREAK_STEPS


def compare(
    a: Path, b: Path, steps: Iterable[tuple[Reason, Comparator]] = STEPS
) -> tuple[Path | None, Reason | None]:
    """Run ``steps`` in order: the first winner and the step that chose it."""
    for reason, step in steps:
        winner = step(a, b)
        if winner is not None:
            return winner, reason
    return None, None


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome for one prefix: best path, ECMP set (best first), reason."""

    best: Path
    multipath: tuple[Path, ...]
    reason: Reason

    @property
    def next_hops(self) -> tuple[str, ...]:
        """Distinct next hops of the multipath set, best's first."""
        if len(self.multipath) == 1:
            return (self.multipath[0].next_hop,)
        return tuple(dict.fromkeys(p.next_hop for p in self.multipath))


def decide(paths: Iterable[Path]) -> Decision | None:
    """The decision process over candidate paths (all for one prefix)."""
    candidates = list(paths)
    if len(candidates) == 1:  # the common case: no ordering to compute
        return Decision(candidates[0], (candidates[0],), Reason.ONLY_PATH)
    if not candidates:
        return None
    candidates.sort(key=lambda p: (_ip_key(p.peer), p.peer))

    def cmp(a: Path, b: Path) -> int:
        winner, _ = compare(a, b)
        return 0 if winner is None else (-1 if winner is a else 1)

    ranked = sorted(candidates, key=cmp_to_key(cmp))
    best = ranked[0]
    _, reason = compare(best, ranked[1])
    multipath = tuple(
        p for p in ranked if p is best or compare(best, p, MULTIPATH_STEPS)[0] is None
    )
    return Decision(best, multipath, reason or Reason.PEER_ADDRESS)


def check_loop(
    path: Path, *, local_as: int, router_id: str, cluster_id: str | None = None
) -> LoopReason | None:
    """The import loop checks; ``None`` when the path is acceptable."""
    if not path.ibgp and local_as in path.all_ases():
        return LoopReason.AS_PATH
    if path.originator_id is not None and path.originator_id == router_id:
        return LoopReason.ORIGINATOR_ID
    if cluster_id is not None and cluster_id in path.cluster_list:
        return LoopReason.CLUSTER_LIST
    return None


class Rib:
    """Paths keyed by (prefix, peer) with cached decisions per prefix.

    Every mutating method returns the set of prefixes whose decision (best
    path or multipath set) changed, so the kernel layer can apply only those.

    Memory (most prefixes have one path): such a prefix maps straight to its
    ``Path`` and has no cached ``Decision`` (one is made when asked for);
    only prefixes with several paths hold a ``{peer: Path}`` dict and a
    ``Decision``. Paths that came in one UPDATE are one shared object (see
    ``update_group``), so a stored path's ``prefix`` may be empty: the keys
    name the prefixes. At 100k routes this costs ~500 B a route less than
    a dict, a Decision and a Path per prefix did. There is no per-peer index
    of prefixes either (a set entry, ~40 B a route), only a count per peer:
    what needs one peer's prefixes (its session going down, a graceful
    restart) is rare and scans the table.
    """

    def __init__(self, *, local_as: int, router_id: str, cluster_id: str | None = None):
        self.local_as = local_as
        self.router_id = router_id
        self.cluster_id = cluster_id
        self._paths: dict[str, Path | dict[str, Path]] = {}
        self._counts: dict[str, int] = {}  # paths held per peer
        self._stale: dict[str, set[str]] = {}
        self._decisions: dict[str, Decision] = {}  # prefixes with several paths only
        self.rejected: dict[LoopReason, int] = {r: 0 for r in LoopReason}

    # -- queries -----------------------------------------------------------
    def best(self, prefix: str) -> Decision | None:
        entry = self._paths.get(prefix)
        if entry is None:
            return None
        if isinstance(entry, Path):
            return Decision(entry, (entry,), Reason.ONLY_PATH)
        return self._decisions[prefix]

    def decisions(self) -> dict[str, Decision]:
        out = {}
        for prefix, entry in self._paths.items():
            if isinstance(entry, Path):
                out[prefix] = Decision(entry, (entry,), Reason.ONLY_PATH)
            else:
                out[prefix] = self._decisions[prefix]
        return out

    def best_path(self, prefix: str) -> Path | None:
        """``best(prefix).best`` without building a Decision (None: no path)."""
        entry = self._paths.get(prefix)
        if entry is None or isinstance(entry, Path):
            return entry
        return self._decisions[prefix].best

    def best_paths(self) -> Iterator[tuple[str, Path]]:
        """(prefix, best path) for every prefix, without a Decision each (a
        reflector's full table for a peer that comes up)."""
        decisions = self._decisions
        for prefix, entry in self._paths.items():
            yield prefix, entry if isinstance(entry, Path) else decisions[prefix].best

    def next_hops(self, prefix: str) -> tuple[str, ...]:
        """The best paths' next hops (``best(prefix).next_hops`` without
        building a Decision); () when the prefix has no path."""
        entry = self._paths.get(prefix)
        if entry is None:
            return ()
        if isinstance(entry, Path):
            return (entry.next_hop,)
        return self._decisions[prefix].next_hops

    def all_next_hops(self) -> Iterator[tuple[str, tuple[str, ...]]]:
        """(prefix, best next hops) for every prefix: ``next_hops`` for all,
        without a Decision per prefix (a full kernel rebuild at 100k routes)."""
        decisions = self._decisions
        for prefix, entry in self._paths.items():
            if isinstance(entry, Path):
                yield prefix, (entry.next_hop,)
            else:
                yield prefix, decisions[prefix].next_hops

    def paths(self, prefix: str) -> tuple[Path, ...]:
        entry = self._paths.get(prefix)
        if entry is None:
            return ()
        return (entry,) if isinstance(entry, Path) else tuple(entry.values())

    def prefixes(self) -> list[str]:
        return sorted(self._paths, key=_prefix_key)

    def peer_prefixes(self, peer: str) -> set[str]:
        """The prefixes ``peer`` has a path for (a scan of the whole table)."""
        if not self._counts.get(peer):
            return set()
        return {prefix for prefix, entry in self._paths.items()
                if (entry.peer == peer if isinstance(entry, Path) else peer in entry)}

    def imported_count(self, peer: str) -> int:
        return self._counts.get(peer, 0)

    def preferred_count(self, peer: str) -> int:
        return sum(1 for e in self._paths.values() if isinstance(e, Path) and e.peer == peer) + sum(
            1 for d in self._decisions.values() if d.best.peer == peer)

    def is_stale(self, prefix: str, peer: str) -> bool:
        return prefix in self._stale.get(peer, ())

    def stale_prefixes(self, peer: str) -> frozenset[str]:
        """The prefixes of ``peer`` still marked stale (graceful restart)."""
        return frozenset(self._stale.get(peer, ()))

    def __len__(self) -> int:
        return sum(1 if isinstance(e, Path) else len(e) for e in self._paths.values())

    # -- mutations ---------------------------------------------------------
    def check(self, path: Path) -> LoopReason | None:
        return check_loop(
            path, local_as=self.local_as, router_id=self.router_id, cluster_id=self.cluster_id
        )

    def update(self, path: Path) -> set[str]:
        """Insert or replace ``path``; a looped path withdraws the old one."""
        return self.update_group(path, (path.prefix,))

    def update_group(self, path: Path, prefixes: Iterable[str]) -> set[str]:
        """``path``'s attributes for each of ``prefixes``, its own ``prefix``
        unread: the prefixes of one UPDATE share one ``Path`` (with an empty
        prefix), stored once for all of them; the RIB's keys name prefixes."""
        peer = path.peer
        loop = self.check(path)
        if loop is not None:
            changed: set[str] = set()
            for prefix in prefixes:
                self.rejected[loop] += 1
                changed |= self.withdraw(prefix, peer)
            return changed
        stale = self._stale.get(peer)
        changed = set()
        added = 0
        paths = self._paths
        for prefix in prefixes:
            entry = paths.get(prefix)
            if entry is None:  # the common case, inline: a new prefix
                paths[prefix] = path
                changed.add(prefix)
                added += 1
                continue
            if self._store(prefix, entry, path):
                changed.add(prefix)
            if stale:
                stale.discard(prefix)
        if added:
            self._count(peer, added)
        return changed

    def _count(self, peer: str, delta: int) -> None:
        self._counts[peer] = self._counts.get(peer, 0) + delta

    def _store(self, prefix: str, entry: Path | dict[str, Path], path: Path) -> bool:
        """Put ``path`` in for ``prefix``, which holds ``entry``; did the
        decision change? Counts the path when its peer had none here."""
        peer = path.peer
        if isinstance(entry, Path):
            if entry.peer == peer:
                self._paths[prefix] = path
                return entry != path
            self._paths[prefix] = {entry.peer: entry, peer: path}
            self._count(peer, 1)
            return self._redecide(prefix, entry, (entry,))
        old = self._decisions[prefix]
        if peer not in entry:
            self._count(peer, 1)
        entry[peer] = path
        return self._redecide(prefix, old.best, old.multipath)

    def update_many(self, paths: Iterable[Path]) -> set[str]:
        changed: set[str] = set()
        for p in paths:
            changed |= self.update(p)
        return changed

    def withdraw(self, prefix: str, peer: str) -> set[str]:
        entry = self._paths.get(prefix)
        if entry is None:
            return set()
        if isinstance(entry, Path):
            if entry.peer != peer:
                return set()
            del self._paths[prefix]
            changed = True
        else:
            if peer not in entry:
                return set()
            old = self._decisions[prefix]
            del entry[peer]
            changed = self._redecide(prefix, old.best, old.multipath)
        self._count(peer, -1)
        stale = self._stale.get(peer)
        if stale:
            stale.discard(prefix)
        return {prefix} if changed else set()

    def drop_peer(self, peer: str) -> set[str]:
        """Forget every path from ``peer`` (session down, no graceful restart)."""
        changed: set[str] = set()
        for prefix in self.peer_prefixes(peer):
            changed |= self.withdraw(prefix, peer)
        self._counts.pop(peer, None)
        self._stale.pop(peer, None)
        return changed

    def mark_stale(self, peer: str) -> None:
        """Graceful-restart helper: keep ``peer``'s paths but mark them stale."""
        self._stale[peer] = self.peer_prefixes(peer)

    def sweep_stale(self, peer: str) -> set[str]:
        """End of RIB / restart timer: drop paths not refreshed since marking."""
        changed: set[str] = set()
        for prefix in list(self._stale.pop(peer, ())):
            changed |= self.withdraw(prefix, peer)
        return changed

    def _redecide(self, prefix: str, old_best: Path, old_multipath: tuple[Path, ...]) -> bool:
        """Re-run the decision for a prefix that had several paths or gains a
        second one; collapse to the plain form at one path. Changed?"""
        entry = self._paths[prefix]
        assert isinstance(entry, dict)
        if len(entry) == 1:
            (only,) = entry.values()
            self._paths[prefix] = only
            del self._decisions[prefix]
            return old_best != only or len(old_multipath) != 1
        new = decide(entry.values())
        assert new is not None
        self._decisions[prefix] = new
        return old_best != new.best or old_multipath != new.multipath


def _prefix_key(prefix: str) -> tuple[int, int, int]:
    net = ipaddress.ip_network(prefix, strict=False)
    return (net.version, int(net.network_address), net.prefixlen)
