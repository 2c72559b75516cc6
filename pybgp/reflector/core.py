"""The route reflector's brain, pure: sessions' events in, group chunks out.

Owns: the RIB (``speaker.rib``: adj-RIB-in of what each peer sent, the RFC
4271 decision process with RFC 4456's tie-breakers, the loop checks), each
peer's route-level state (role, graceful-restart capability, stale paths,
End-of-RIB seen), the update groups and what goes into them.

Changes are collected per prefix, with the best path before the first of
them, and published when the shell calls ``flush()`` (after each read
burst): per group, each prefix whose exported best changed is announced
with its new path's attributes (never to the peer it came from; that peer
gets a withdrawal if it had the old one from us), or withdrawn. Prefixes
sharing a path are packed together; each group encodes each message once.

Invariants:
- A peer that comes up gets the current table (its own paths left out),
  then every change after it, then End-of-RIB — which waits while the
  reflector is in its start-up hold (RFC 4724 §4.1: until the peers it
  expects have sent theirs, or ``startup_hold`` passes), so clients keeping
  our old routes as stale never sweep before the table is whole again.
- Graceful-restart helper (RFC 4724 §4.2): a peer whose session fails
  without a NOTIFICATION, and which had the capability, keeps its paths,
  marked stale, for its restart time (at most ``restart_limit``); they
  stay reflected. When it is back, what it re-sends replaces them; the rest
  go at its End-of-RIB, or after ``stale_time``, or at once when its new
  OPEN does not keep forwarding state (no F bit).
- Nothing per client per route is kept: only the adj-RIB-in of what a peer
  sent, and each group's log of chunks not yet read by all.

Must never: do I/O, read the clock (``now`` is given) or decode bytes.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable
from dataclasses import dataclass, field

from pybgp.reflector import codec, wire
from pybgp.reflector.groups import Group, GroupKey, Message, Outbox, Table
from pybgp.reflector.session import PeerInfo
from pybgp.reflector.wire import Family, GracefulRestart
from pybgp.speaker import rr
from pybgp.speaker.rib import LoopReason, Path, Rib
from pybgp.speaker.rr import Role


@dataclass(frozen=True)
class Settings:
    router_id: str
    cluster_id: str
    asn: int
    families: tuple[Family, ...] = (wire.IPV4_UNICAST,)
    startup_hold: float = 10.0
    stale_time: float = 360.0
    restart_limit: int | None = None
    log_limit: int = 64 << 20  # bytes a group's log may hold for its slowest member


@dataclass
class PeerRoutes:
    """Route-level state of one peer (outlives its sessions while stale)."""

    address: str
    role: Role
    router_id: str = ""
    box: Outbox | None = None
    info: PeerInfo | None = None
    gr: GracefulRestart | None = None
    stale: bool = False
    eor: set[Family] = field(default_factory=set)
    gen: int = 0
    updates: int = 0
    withdraws: int = 0
    treat_as_withdraw: int = 0
    loops: int = 0
    last_error: str = ""

    @property
    def up(self) -> bool:
        return self.box is not None


@dataclass
class Effects:
    timers: list[tuple[str, float]] = field(default_factory=list)
    reset: list[tuple[str, int, int, str]] = field(default_factory=list)  # peer, code, sub, why

    def __iadd__(self, other: Effects) -> Effects:
        self.timers += other.timers
        self.reset += other.reset
        return self


class _Plan:
    """What one flush sends one group."""

    __slots__ = ("announce", "withdraw", "only")

    def __init__(self) -> None:
        self.announce: dict[int, tuple[codec.RPath, list[str]]] = {}
        self.withdraw: dict[tuple[Family, str | None], list[str]] = collections.defaultdict(list)
        self.only: dict[tuple[Family, str], list[str]] = collections.defaultdict(list)


class Reflector:
    def __init__(self, settings: Settings, now: float):
        self.settings = settings
        self.rib = Rib(local_as=settings.asn, router_id=settings.router_id,
                       cluster_id=settings.cluster_id)
        self.peers: dict[str, PeerRoutes] = {}
        self.groups: dict[GroupKey, Group] = {}
        self.pending: dict[str, Path | None] = {}
        self.version = 0
        self.holding = settings.startup_hold > 0
        self.expected: set[str] = set()  # configured peers the start-up hold waits for
        self._eor_owed: set[str] = set()
        self.started_at = now

    def start(self) -> Effects:
        fx = Effects()
        if self.holding:
            fx.timers.append(("startup-hold", self.settings.startup_hold))
        return fx

    # -- sessions ---------------------------------------------------------------------
    def peer_up(self, address: str, role: Role, info: PeerInfo, box: Outbox,
                now: float) -> Effects:
        """``address``'s session is Established; ``box`` is its outbox."""
        fx = Effects()
        st = self.peers.get(address)
        if st is None:
            st = self.peers[address] = PeerRoutes(address, role)
        st.role, st.router_id, st.info, st.box = role, info.router_id, info, box
        st.eor = set()
        st.gen += 1
        if st.stale:
            gr = info.graceful_restart
            kept = gr.forwarding if gr is not None else frozenset()
            lost = set(info.families) - kept
            if lost:  # RFC 4724 §4.2: no forwarding state kept for these families
                self._sweep(st, lost)
            if st.stale:
                fx.timers.append((f"stale:{address}:{st.gen}", self.settings.stale_time))
        st.gr = info.graceful_restart
        fx += self.flush()  # what changed so far goes out before this peer's table
        key = GroupKey(role, info.asn4, info.families)
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = Group(key)
        table = self._table(group)
        for part in table.for_peer(address):
            box.send(part)  # a view of the shared table: nothing copied per peer
        group.join(box, at=table.seq)
        if self.holding:
            self._eor_owed.add(address)
        else:  # after the table and the log replayed behind it
            for family in info.families:
                box.send_after_log(wire.end_of_rib(family))
        return fx

    def peer_down(self, address: str, graceful: bool, now: float) -> Effects:
        fx = Effects()
        st = self.peers.get(address)
        if st is None or st.box is None:
            return fx
        if st.box.group is not None:
            st.box.group.leave(st.box)
        st.box = None
        st.gen += 1
        self._eor_owed.discard(address)
        gr = st.gr
        if graceful and gr is not None and gr.time > 0 and self.rib.imported_count(address):
            limit = self.settings.restart_limit
            self.rib.mark_stale(address)
            st.stale = True
            time = gr.time if limit is None else min(gr.time, limit)
            fx.timers.append((f"restart:{address}:{st.gen}", float(time)))
        else:
            self._drop(address)
            st.stale = False
        return fx

    def forget(self, address: str) -> None:
        """A dynamic peer that is gone and holds no paths."""
        st = self.peers.get(address)
        if st is not None and not st.up and not self.rib.imported_count(address):
            del self.peers[address]

    def routes(self, address: str, update: codec.Update) -> None:
        st = self.peers[address]
        st.updates += 1
        if update.error:
            st.treat_as_withdraw += 1
            st.last_error = f"treat-as-withdraw: {update.error}"
        rib, note = self.rib, self._note
        for prefix in update.withdrawn:
            st.withdraws += 1
            note(prefix)
            rib.withdraw(prefix, address)
        for path, prefixes in update.groups:
            loop = rib.check(path)
            if loop is not None:
                st.loops += len(prefixes)
                for prefix in prefixes:
                    rib.rejected[loop] += 1
                    note(prefix)
                    rib.withdraw(prefix, address)
                continue
            for prefix in prefixes:
                note(prefix)
            rib.update_group(path, prefixes)

    def end_of_rib(self, address: str, family: Family) -> Effects:
        st = self.peers.get(address)
        if st is None or st.info is None:
            return Effects()
        st.eor.add(family)
        if st.stale and st.eor >= set(st.info.families):
            self._sweep(st)
        return self._maybe_end_hold()

    def refresh(self, address: str, family: Family) -> None:
        """ROUTE-REFRESH (RFC 2918): the table again, behind what is queued."""
        st = self.peers.get(address)
        if st is None or st.box is None or st.box.group is None:
            return
        self.flush()  # (a laggard is caught at the next flush)
        group = st.box.group
        after = group.next_seq
        for source, msg in self._messages(group, family):
            if source != address:
                st.box.send(msg, after=after)

    def timer(self, name: str, now: float) -> Effects:
        if name == "startup-hold":
            return self._end_hold()
        kind, _, rest = name.partition(":")
        address, _, gen = rest.rpartition(":")
        st = self.peers.get(address)
        if st is None or str(st.gen) != gen or not st.stale:
            return Effects()
        if kind in ("restart", "stale"):
            self._sweep(st)
        return Effects()

    def set_expected(self, addresses: Iterable[str]) -> Effects:
        self.expected = set(addresses)
        return self._maybe_end_hold()

    # -- publishing ---------------------------------------------------------------------
    def flush(self) -> Effects:
        """Turn the changes collected since the last flush into group chunks."""
        pending, self.pending = self.pending, {}
        fx = Effects()
        if not pending:
            return fx
        self.version += 1
        groups = [g for g in self.groups.values() if g.members]
        if not groups:
            return fx
        plans = [(g, _Plan(), g.key.role, frozenset(g.key.families)) for g in groups]
        best = self.rib.best_path
        roles = {a: st.role for a, st in self.peers.items()}
        reflects = rr.reflects
        for prefix, old in pending.items():
            new = best(prefix)
            if new is old or (new is not None and old is not None and new == old):
                continue
            family = codec.family_of(prefix)
            for group, plan, role, families in plans:
                if family not in families:
                    continue
                was = old is not None and reflects(roles.get(old.peer, Role.CLIENT), role)
                if new is not None and reflects(roles.get(new.peer, Role.CLIENT), role):
                    assert isinstance(new, codec.RPath)
                    entry = plan.announce.get(id(new))
                    if entry is None:
                        plan.announce[id(new)] = (new, [prefix])
                    else:
                        entry[1].append(prefix)
                    if was and old is not None and old.peer != new.peer \
                            and new.peer in group.members:
                        plan.only[(family, new.peer)].append(prefix)
                elif was and old is not None:
                    plan.withdraw[(family, old.peer)].append(prefix)
        cid = self.settings.cluster_id
        for group, plan, _role, _f in plans:
            msgs: list[Message] = []
            for (family, skip), prefixes in plan.withdraw.items():
                msgs += [(m, skip, None) for m in codec.withdraw_messages(family, prefixes)]
            for (family, only), prefixes in plan.only.items():
                msgs += [(m, None, only) for m in codec.withdraw_messages(family, prefixes)]
            asn4 = group.key.asn4
            for path, prefixes in plan.announce.values():
                attrs = codec.reflected_attributes(path, cid, asn4)
                assert path.attrs is not None
                family = path.attrs.family
                msgs += [(m, path.peer, None) for m in codec.announce_messages(
                    family, attrs, path.attrs.nh_raw, prefixes)]
            group.publish(msgs)
            if group.log_bytes > self.settings.log_limit:
                laggard = group.laggard()
                if laggard is not None:
                    fx.reset.append((laggard.peer, 6, 8, "too slow to read its updates"))
        return fx

    # -- internals ----------------------------------------------------------------------
    def _note(self, prefix: str) -> None:
        if prefix not in self.pending:
            self.pending[prefix] = self.rib.best_path(prefix)

    def _drop(self, address: str) -> None:
        for prefix in self.rib.peer_prefixes(address):
            self._note(prefix)
        self.rib.drop_peer(address)

    def _sweep(self, st: PeerRoutes, families: set[Family] | None = None) -> None:
        """Drop ``st``'s stale paths (of ``families`` only, if given)."""
        stale = self.rib.stale_prefixes(st.address)
        if families is not None:
            stale = frozenset(p for p in stale if codec.family_of(p) in families)
            if len(stale) < len(self.rib.stale_prefixes(st.address)):
                for prefix in stale:
                    self._note(prefix)
                    self.rib.withdraw(prefix, st.address)
                return
        for prefix in stale:
            self._note(prefix)
        self.rib.sweep_stale(st.address)
        st.stale = False

    def _table(self, group: Group) -> Table:
        """The group's table for a peer that comes up: the one kept while the
        log since it is smaller than it (peers coming up together, or one
        after another while routes keep coming, share one encoding), else a
        new one at the log's head."""
        table = group.usable_table(len(group.table.blob) if group.table else 0)
        if table is None:
            table = group.table = Table(group.next_seq, self._messages(group))
        return table

    def _messages(self, group: Group, family: Family | None = None) -> list[tuple[str, bytes]]:
        """The group's whole table now, as (source peer, UPDATE)."""
        role = group.key.role
        roles = {a: st.role for a, st in self.peers.items()}
        families = set(group.key.families) if family is None else {family}
        buckets: dict[int, tuple[codec.RPath, list[str]]] = {}
        for prefix, path in self.rib.best_paths():
            if not rr.reflects(roles.get(path.peer, Role.CLIENT), role):
                continue
            assert isinstance(path, codec.RPath) and path.attrs is not None
            if path.attrs.family not in families:
                continue
            entry = buckets.get(id(path))
            if entry is None:
                buckets[id(path)] = (path, [prefix])
            else:
                entry[1].append(prefix)
        out: list[tuple[str, bytes]] = []
        cid, asn4 = self.settings.cluster_id, group.key.asn4
        for path, prefixes in buckets.values():
            assert path.attrs is not None
            attrs = codec.reflected_attributes(path, cid, asn4)
            for m in codec.announce_messages(path.attrs.family, attrs, path.attrs.nh_raw,
                                             prefixes):
                out.append((path.peer, m))
        group.encoded += len(out)
        return out

    def _maybe_end_hold(self) -> Effects:
        if not self.holding or not self.expected:
            return Effects()
        for address in self.expected:
            st = self.peers.get(address)
            if st is None or st.info is None or not st.up \
                    or not st.eor >= set(st.info.families):
                return Effects()
        return self._end_hold()

    def _end_hold(self) -> Effects:
        if self.holding:
            self.holding = False
            for address in sorted(self._eor_owed):
                st = self.peers.get(address)
                if st is not None and st.box is not None and st.info is not None:
                    for family in st.info.families:
                        st.box.send_after_log(wire.end_of_rib(family))
            self._eor_owed.clear()
        return Effects()

    # -- for show -------------------------------------------------------------------------
    def loop_counts(self) -> dict[LoopReason, int]:
        return dict(self.rib.rejected)
