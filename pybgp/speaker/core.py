"""The speaker's brain: events in, effects out. Pure — no I/O, no clock reads.

It owns: the inputs from etcd (``Inputs``), this node's local ``cali*`` /32
routes, the RIB of learned paths, per-peer session state, what we advertise
and what the kernel must hold. Each ``on_*`` method returns ``Effects`` that
the shell (``daemon.py``) carries out: lines to send to ExaBGP, whether the
ExaBGP configuration must be rewritten, whether the kernel's desired routes
changed, timers to start.

Invariants:
- Only blocks with a *confirmed* affinity are advertised and blackholed, and
  nothing is originated before the datastore is in sync.
- A route of ours already in the kernel at start-up is kept (``retained``)
  until every established peer has sent End-of-RIB or the start-up hold
  expires: a restarting speaker never blackholes traffic.
- A peer that restarts gracefully keeps its paths (stale) until it sends
  End-of-RIB or its restart time runs out; a peer that goes down without the
  graceful-restart capability loses them at once.
- Our advertisements to a peer that comes up are followed by our own
  End-of-RIB (ExaBGP runs with ``manual-eor``), so a peer in graceful-restart
  helper mode never sweeps our routes before it has them again.
- A peer removed from the datastore while its session is up is *drained*:
  our routes are withdrawn from it, and only ``DRAIN_TIME`` later does it
  leave ExaBGP's configuration. ExaBGP closes a graceful-restart session
  without a NOTIFICATION, so the peer would otherwise keep our routes as
  stale for its restart time (BIRD sends Cease "peer de-configured" here).
- Messages about a peer that is not (or no longer) configured are ignored:
  a reload is asynchronous, and a late update must not resurrect its paths.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from pybgp.kernel_sync.desired import RT_TABLE_MAIN, KRoute, NextHop, blackhole
from pybgp.speaker import exabgp_api as exa
from pybgp.speaker.inputs import Changed, Inputs
from pybgp.speaker.peers import PeerSpec, desired_peers
from pybgp.speaker.policy import Origination, import_decision
from pybgp.speaker.reflect import NodeReflector, roles
from pybgp.speaker.rib import Rib
from pybgp.speaker.rr import Role

SPEAKER_PROTOCOL = 12  # BIRD's route protocol number; see kernel_sync.desired
DRAIN_TIME = 2.0  # seconds a removed peer stays configured while our withdrawals go out
# Path attributes of our own routes: ExaBGP sets AS_PATH ([] iBGP, [our AS]
# eBGP); LOCAL_PREF is not sent on eBGP sessions, so leave it to ExaBGP too.
OWN_ATTRS = exa.Attributes(origin="igp", local_pref=None, as_path=None)


@dataclass
class Effects:
    commands: list[str] = field(default_factory=list)
    reconfigure: bool = False
    kernel: bool = False
    timers: list[tuple[str, float]] = field(default_factory=list)

    def __iadd__(self, other: Effects) -> Effects:
        self.commands += other.commands
        self.reconfigure |= other.reconfigure
        self.kernel |= other.kernel
        self.timers += other.timers
        return self


@dataclass
class PeerRuntime:
    """What we know of one session, keyed by peer address."""

    state: str = "idle"  # idle | connected | up | down
    since: float = 0.0
    reason: str = ""
    router_id: str = ""
    restart_time: int | None = None  # the peer's graceful-restart capability
    eor: bool = False


class Speaker:
    def __init__(
        self,
        inputs: Inputs,
        matches: Callable[[str, Mapping[str, str]], bool],
        *,
        startup_hold: float = 120.0,
    ):
        self.inputs = inputs
        self.matches = matches
        self.startup_hold = startup_hold
        self.origination = Origination()  # what we advertise and blackhole
        self.peers: dict[str, PeerSpec] = {}  # name → spec
        self.draining: dict[str, PeerSpec] = {}  # address → removed spec, withdrawing
        self.runtime: dict[str, PeerRuntime] = {}  # address → runtime
        self.rib: Rib | None = None
        self.advertised: set[str] = set()  # what our peers were told
        self.blackholes: frozenset[str] = frozenset()  # what the kernel was told
        self.retained: dict[str, KRoute] = {}  # our routes found in the kernel at start
        self.holding = True
        self.synced = False  # no origination before the datastore is read whole
        self.started_at = 0.0
        self.reconfigured_at = 0.0
        # What changed in kernel_routes() since the shell last asked
        # (take_kernel_changes): a set of prefixes, or everything.
        self._kernel_full = True
        # A list, not a set: during a 100k-route transfer it holds most of the
        # table until the kernel catches up, at 8 B a prefix instead of ~40.
        # A prefix changed twice is listed twice and handed over once a slice.
        self._kernel_dirty: list[str] = []
        # The validated next-hop tuples of learned routes, by gateways.
        self._hops: dict[tuple[str, ...], tuple[tuple[NextHop, ...], bool]] = {}
        # A node acting as route reflector (routeReflectorClusterID): what it
        # reflects, and its peers' roles. None on every other node.
        self.reflector: NodeReflector | None = None
        self._roles: dict[str, Role] = {}

    # -- derived state ---------------------------------------------------------

    @property
    def local_routes(self) -> dict[str, str]:
        """The node's workload routes: prefix → interface."""
        return self.origination.routes

    @property
    def router_id(self) -> str:
        local = self.inputs.local
        return (local.ipv4 or "").split("/")[0] if local else ""

    @property
    def local_as(self) -> int:
        local = self.inputs.local
        if local and local.as_number:
            return local.as_number
        return self.inputs.config.as_number

    def peer_by_address(self, address: str) -> PeerSpec | None:
        for spec in self.peers.values():
            if spec.address == address:
                return spec
        return None

    def neighbor_configs(self) -> list[exa.NeighborConfig]:
        configured = {s.address for s in self.peers.values()}
        specs = [*self.peers.values(),
                 *(s for a, s in self.draining.items() if a not in configured)]
        return [
            exa.NeighborConfig(
                address=spec.address,
                local_address=spec.local_address,
                router_id=self.router_id,
                local_as=spec.local_as,
                peer_as=spec.peer_as,
                passive=spec.passive,
                md5_password=spec.md5_password,
                graceful_restart=spec.restart_time,
                port=spec.port,
                listen_port=self.inputs.config.listen_port,
                description=spec.name,
            )
            for spec in sorted(specs, key=lambda s: s.name)
        ]

    def kernel_routes(self) -> dict[str, KRoute]:
        """Everything of ours the kernel must hold now."""
        routes = {cidr: blackhole(cidr, protocol=SPEAKER_PROTOCOL)
                  for cidr in self.blackholes}
        if self.rib is not None:
            for prefix, next_hops in self.rib.all_next_hops():
                if prefix in routes or prefix in self.local_routes:
                    continue
                route = self._learned_route(prefix, next_hops)
                if route is not None:
                    routes[prefix] = route
        if self.holding:
            for prefix, route in self.retained.items():
                routes.setdefault(prefix, route)
        return routes

    def kernel_route(self, prefix: str) -> KRoute | None:
        """The one route of ours for ``prefix`` (None: none), as in kernel_routes()."""
        if prefix in self.blackholes:
            return blackhole(prefix, protocol=SPEAKER_PROTOCOL)
        route = None
        if self.rib is not None and prefix not in self.local_routes:
            next_hops = self.rib.next_hops(prefix)
            if next_hops:
                route = self._learned_route(prefix, next_hops)
        if route is None:
            return self.retained.get(prefix) if self.holding else None
        return route

    def take_kernel_changes(self, limit: int | None = None) -> tuple[bool, set[str]]:
        """(everything changed?, prefixes whose kernel_route() may have changed)
        since the last call. With True, apply kernel_routes() whole. With a
        ``limit``, at most that many prefixes are handed over; the others
        stay for the next call (``kernel_changes_left``)."""
        full, dirty = self._kernel_full, self._kernel_dirty
        if not full and limit is not None and len(dirty) > limit:
            part = set(dirty[-limit:])
            del dirty[-limit:]
            return False, part
        self._kernel_full, self._kernel_dirty = False, []
        return full, set() if full else set(dirty)

    @property
    def kernel_changes_left(self) -> int:
        """How many prefixes take_kernel_changes() would hand over, at most
        (-1: all)."""
        return -1 if self._kernel_full else len(self._kernel_dirty)

    def _learned_route(self, prefix: str, next_hops: tuple[str, ...]) -> KRoute | None:
        """The kernel route for a learned prefix.

        At 100k routes the validation in ``KRoute``/``NextHop`` dominated the
        speaker's CPU; each distinct next-hop tuple is validated once here and
        a canonical IPv4 prefix needs no ``ipaddress`` parse, so building the
        route is cheap enough not to cache it (the kernel layer holds it).
        """
        own = self.router_id
        gws = next_hops if own not in next_hops else tuple(nh for nh in next_hops if nh != own)
        if not gws:
            return None
        hops = self._hops.get(gws)
        if hops is None:
            if len(self._hops) > 4096:  # next-hop sets are few; never let it grow unbounded
                self._hops.clear()
            nhs = tuple(NextHop(gateway=gw) for gw in gws)
            hops = self._hops[gws] = (nhs, all(nh.gateway and ":" not in nh.gateway
                                                for nh in nhs))
        nhs, v4 = hops
        if v4 and _canonical_v4(prefix):
            route = KRoute.trusted(prefix, "unicast", nhs, SPEAKER_PROTOCOL, RT_TABLE_MAIN, 0)
        else:
            route = KRoute(prefix, "unicast", nhs, SPEAKER_PROTOCOL)
        return route

    def _kernel_changed(self, prefixes: set[str] | None = None) -> bool:
        """Record a change for take_kernel_changes(); None = everything.
        Returns whether anything changed (for ``Effects.kernel``)."""
        if prefixes is None:
            self._kernel_full = True
            return True
        self._kernel_dirty += prefixes
        return bool(prefixes)

    # -- events ------------------------------------------------------------------

    def start(self, now: float, retained: Iterable[KRoute]) -> Effects:
        """Begin: what of ours the kernel already holds, and the hold timer."""
        self.started_at = now
        self.retained = {r.prefix: r for r in retained}
        fx = self._recompute(now)
        fx.kernel = self._kernel_changed()
        if self.holding:
            fx.timers.append(("startup-hold", self.startup_hold))
        return fx

    def on_synced(self, now: float) -> Effects:
        """Every datastore prefix has been read: origination may begin."""
        if self.synced:
            return Effects()
        self.synced = True
        return self._recompute(now)

    def on_datastore(self, key: str, value: bytes | None, now: float) -> Effects:
        return self.on_datastore_batch([(key, value)], now)

    def on_datastore_batch(self, items: Iterable[tuple[str, bytes | None]],
                           now: float) -> Effects:
        """Several datastore changes, then one recomputation: a burst (a
        cluster's Nodes at start-up) costs one pass over peers and exports,
        not one per key."""
        changed = Changed.NOTHING
        for key, value in items:
            changed |= self.inputs.apply(key, value)
        return self._recompute(now, changed) if changed else Effects()

    def on_local_route(self, action: str, prefix: str, ifname: str, now: float) -> Effects:
        return self.on_local_routes([(action, prefix, ifname)], now)

    def on_local_routes(self, events: Iterable[tuple[str, str, str]], now: float) -> Effects:
        """Workload routes added/removed (action, prefix, ifname), then one
        recomputation of the exports (a burst of 1000 pod routes was 1000
        passes over all of them)."""
        changed: set[str] = set()
        routes = self.origination.routes
        for action, prefix, ifname in events:
            if action == "add":
                if routes.get(prefix) == ifname:
                    continue
                self.origination.set_route(prefix, ifname)
            elif prefix in routes:
                self.origination.set_route(prefix, None)
            else:
                continue
            changed.add(prefix)
        if not changed:
            return Effects()
        self._kernel_changed(changed)  # a learned route for each steps aside / back
        return self._recompute(now, Changed.EXPORTS)

    def on_exabgp(self, line: str, now: float) -> Effects:
        router_ids = {a: r.router_id for a, r in self.runtime.items() if r.router_id}
        event = exa.parse_message(line, router_ids)
        peer = getattr(event, "peer", None)
        if peer is not None and self.peer_by_address(peer) is None:
            return Effects()  # removed (or draining) peer: nothing it says counts
        if isinstance(event, exa.PeerState):
            return self._on_state(event, now)
        if isinstance(event, exa.Open):
            rt = self.runtime.setdefault(event.peer, PeerRuntime())
            rt.router_id = event.router_id
            rt.restart_time = event.graceful_restart_time
            return Effects()
        if isinstance(event, exa.Update):
            return self._on_update(event)
        if isinstance(event, exa.EndOfRib):
            rt = self.runtime.setdefault(event.peer, PeerRuntime())
            rt.eor = True
            swept = self._sweep(event.peer)
            fx = Effects(kernel=self._kernel_changed(swept))
            fx.commands += self._reflect()
            fx += self._maybe_end_hold()
            return fx
        return Effects()

    def on_timer(self, name: str, now: float) -> Effects:
        if name == "startup-hold":
            return self._end_hold()
        if name.startswith("drain:"):
            address = name[6:]
            if self.draining.pop(address, None) is not None:
                return Effects(reconfigure=True)
            return Effects()
        if name.startswith("gr:") and self.rib is not None:
            peer = name[3:]
            rt = self.runtime.get(peer)
            if rt is None or rt.state != "up" or not rt.eor:
                fx = Effects(kernel=self._kernel_changed(self._sweep(peer)))
                fx.commands += self._reflect()
                return fx
        return Effects()

    # -- internals -----------------------------------------------------------------

    def _on_state(self, event: exa.PeerState, now: float) -> Effects:
        rt = self.runtime.setdefault(event.peer, PeerRuntime())
        was = rt.state
        rt.state, rt.since, rt.reason = event.state, now, event.reason
        fx = Effects()
        if event.state == "up" and was != "up":
            rt.eor = False
            if self.advertised:
                fx.commands += exa.announce_batch(
                    "self", sorted(self.advertised), OWN_ATTRS, neighbor=event.peer)
            if self.reflector is not None and self.rib is not None:
                fx.commands += self.reflector.table_for(self.rib, event.peer, self._roles,
                                                        self.inputs.pools.values())
            fx.commands.append(exa.announce_eor(neighbor=event.peer))
        elif event.state == "down" and was == "up" and self.rib is not None:
            if rt.restart_time:
                self.rib.mark_stale(event.peer)
                spec = self.peer_by_address(event.peer)
                limit = spec.restart_time if spec else rt.restart_time
                fx.timers.append((f"gr:{event.peer}", float(min(rt.restart_time, limit))))
            else:
                fx.kernel = self._kernel_changed(self._drop(event.peer))
                fx.commands += self._reflect()
        return fx

    def _on_update(self, event: exa.Update) -> Effects:
        if self.rib is None:
            return Effects()
        pools = list(self.inputs.pools.values())
        # Only a VXLAN-owned pool refuses a prefix (import_decision): with none,
        # every prefix is accepted and none needs parsing.
        check = any(p.vxlan_mode != "Never" for p in pools)
        changed: set[str] = set()
        rib = self.rib
        reflector = self.reflector
        if reflector is not None:  # a route reflector node: remember the old bests
            reflector.note(rib, event.withdraws)
            for _shared, prefixes in event.groups:
                reflector.note(rib, prefixes)
        for prefix in event.withdraws:
            changed |= rib.withdraw(prefix, event.peer)
        for shared, prefixes in event.groups:
            if check:
                refused = {p for p in prefixes if not import_decision(p, pools).accept}
                for prefix in refused:
                    changed |= rib.withdraw(prefix, event.peer)
                prefixes = [p for p in prefixes if p not in refused]
            changed |= rib.update_group(shared, prefixes)
        fx = Effects(kernel=self._kernel_changed(changed))
        if reflector is not None:
            fx.commands += self._reflect()
        return fx

    def _drop(self, peer: str) -> set[str]:
        """``rib.drop_peer``, noting the old bests when we reflect."""
        assert self.rib is not None
        if self.reflector is not None:
            self.reflector.note(self.rib, self.rib.peer_prefixes(peer))
        return self.rib.drop_peer(peer)

    def _sweep(self, peer: str) -> set[str]:
        """``rib.sweep_stale``, noting the old bests when we reflect."""
        if self.rib is None:
            return set()
        if self.reflector is not None:
            self.reflector.note(self.rib, self.rib.stale_prefixes(peer))
        return self.rib.sweep_stale(peer)

    def _reflect(self) -> list[str]:
        """A route reflector node's commands for what changed in the RIB."""
        if self.reflector is None or self.rib is None:
            return []
        return self.reflector.commands(self.rib, self._established(), self._roles,
                                       self.inputs.pools.values())

    def _recompute(self, now: float, what: Changed = Changed.PEERS | Changed.EXPORTS) -> Effects:
        """Redo what depends on ``what`` changed: peers (and the RIB's identity)
        only when Nodes, the BGP configuration or peers changed; a new block or
        pod redoes only the exports, incrementally (``Origination``)."""
        fx = Effects()
        local = self.inputs.local
        if what & Changed.PEERS:
            self._recompute_peers(now, fx)
        # Origination (a half-read datastore would advertise a pod's /32 before
        # the block affinity that suppresses it had arrived).
        if not self.synced:
            return fx
        origination = self.origination
        origination.set_pools(self.inputs.pools.values())
        origination.set_blocks(self.inputs.affine_blocks)
        blackholes = origination.blackholes
        if blackholes != self.blackholes:
            fx.kernel |= self._kernel_changed(set(blackholes ^ self.blackholes))
            self.blackholes = blackholes
        advertise = origination.advertise
        add = sorted(advertise - self.advertised)
        remove = sorted(self.advertised - advertise)
        # Only established sessions hear about changes: a peer that is down gets
        # the whole set when it comes up (``_on_state``). A global command would
        # also queue in ExaBGP for every peer that is down, and ExaBGP 5.0 drops
        # a reload (SIGUSR1) while any connecting peer has updates queued — one
        # unreachable peer would freeze every later session change.
        up = self._established()
        if remove and up:
            fx.commands += exa.withdraw_batch(remove, neighbor=up)
        if add and up:
            fx.commands += exa.announce_batch("self", add, OWN_ATTRS, neighbor=up)
        self.advertised = set(advertise)
        if local is None:
            fx.kernel = self._kernel_changed()
        fx += self._maybe_end_hold()
        return fx

    def _recompute_peers(self, now: float, fx: Effects) -> None:
        local = self.inputs.local
        # RIB identity follows our AS and router id.
        if local is None:
            if self.rib is not None:
                self.rib = None
                fx.kernel = self._kernel_changed()
        elif self.rib is None or (self.rib.local_as, self.rib.router_id) != (
            self.local_as, self.router_id
        ):
            self.rib = Rib(local_as=self.local_as, router_id=self.router_id,
                           cluster_id=local.rr_cluster_id)
            fx.kernel = self._kernel_changed()
        elif self.rib.cluster_id != local.rr_cluster_id:
            self.rib.cluster_id = local.rr_cluster_id  # loop checks follow a new cluster id
        cid = local.rr_cluster_id if local is not None else None
        if not cid:
            self.reflector, self._roles = None, {}
        elif self.reflector is None or self.reflector.cluster_id != cid:
            self.reflector = NodeReflector(cid)
        # Peers.
        peers: dict[str, PeerSpec] = {}
        if local is not None:
            peers = desired_peers(local, self.inputs.nodes.values(), self.inputs.config,
                                  self.inputs.bgp_peers.values(), self.matches)
        if peers != self.peers:
            old = {s.address: s for s in self.peers.values()}
            gone = old.keys() - {s.address for s in peers.values()}
            for address in sorted(gone):
                rt = self.runtime.pop(address, None)
                if self.rib is not None:
                    fx.kernel |= self._kernel_changed(self._drop(address))
                if rt is not None and rt.state == "up" and self.synced:
                    self.draining[address] = old[address]
                    if self.advertised:
                        fx.commands += exa.withdraw_batch(sorted(self.advertised),
                                                          neighbor=address)
                    fx.timers.append((f"drain:{address}", DRAIN_TIME))
            for address in sorted({s.address for s in peers.values()} & self.draining.keys()):
                # back before it left: its session may have lived on without our routes
                # (withdrawn) and without its paths (dropped), so start it afresh
                del self.draining[address]
                fx.commands.append(exa.teardown(address))
            self.peers = peers
            self.reconfigured_at = now
            fx.reconfigure = True
        if self.reflector is not None:
            self._roles = roles(self.peers.values())
            fx.commands += self._reflect()  # withdrawals of what gone peers sent

    def _established(self) -> list[str]:
        """Addresses of the configured peers whose session is up."""
        return sorted(s.address for s in self.peers.values()
                      if self.runtime.get(s.address, PeerRuntime()).state == "up")

    def _maybe_end_hold(self) -> Effects:
        """End the start-up hold once every established peer has sent End-of-RIB."""
        if not self.holding or not self.peers:
            return Effects()
        addresses = [s.address for s in self.peers.values()]
        states = [self.runtime.get(a, PeerRuntime()) for a in addresses]
        if all(rt.state == "up" and rt.eor for rt in states):
            return self._end_hold()
        return Effects()

    def _end_hold(self) -> Effects:
        if not self.holding:
            return Effects()
        self.holding = False
        self._kernel_changed(set(self.retained))
        self.retained = {}
        return Effects(kernel=True)


_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_CANONICAL_V4 = re.compile(rf"({_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET})/(3[0-2]|[12]?[0-9])")


def _canonical_v4(prefix: str) -> bool:
    """True for a canonical IPv4 ``a.b.c.d/len`` with no host bits (what
    ``ipaddress`` would print back unchanged), checked without ``ipaddress``."""
    m = _CANONICAL_V4.fullmatch(prefix)
    if m is None:
        return False
    addr, length = m.groups()
    return int.from_bytes(socket.inet_aton(addr), "big") & ((1 << (32 - int(length))) - 1) == 0
