"""Which unexplained workload routes to leave alone for now (pure): Felix's grace period.

The CNI plugin writes a pod's ``<ip>/32 dev cali… proto 80`` route — our
mark — *before* it writes the pod's WorkloadEndpoint, so that the pod has a
route even if the agent is away. A resync that falls between the two finds a
route of ours that no endpoint explains; deleting it then would cut the new
pod off until its endpoint arrives and the agent writes the same route back.
So such a route is deleted only once it is clear that nothing will explain
it. It is spared while its interface exists and

- the interface has no local endpoint, and the route has been unexplained
  for less than the grace period; or
- the interface has a local endpoint (which says which routes it wants), but
  was first seen less than the grace period ago — Felix's rule, which gives
  every interface that much time after it first sees it: a pod re-created
  under the same interface name can meet its old endpoint for a moment.

A route that its endpoint then explains is desired *and already right*, so
nothing is written: it never flaps. A spared route on an interface that goes
away goes with it (the kernel drops it; its record here is forgotten).

Routes and interfaces are known by (name, ifindex), so an interface deleted
and made again under the same name starts a new grace period. Time is passed
in (monotonic seconds).

Must never: do I/O, or spare a route that is not on a workload interface
(``<prefix>…``) that exists now.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

#: Felix's ``cleanupGracePeriod`` (routetable/route_table.go), fixed there too.
CLEANUP_GRACE = 10.0


@dataclass
class RouteGrace:
    """What is known of unexplained routes and interfaces, and the decision."""

    period: float = CLEANUP_GRACE
    iface_prefix: str = "cali"
    #: (name, ifindex) → when the interface was first seen.
    ifaces: dict[tuple[str, int], float] = field(default_factory=dict)
    #: (prefix, name, ifindex) → when the route was first seen unexplained.
    routes: dict[tuple[str, str, int], float] = field(default_factory=dict)
    #: Routes spared for the first time since the last :meth:`take_new` (to log).
    new: list[tuple[str, str]] = field(default_factory=list)
    _links: Mapping[str, int] = field(default_factory=dict)
    _endpoints: Collection[str] = ()
    _now: float = 0.0

    def observe(self, links: Mapping[str, int], endpoint_ifaces: Collection[str],
                now: float) -> None:
        """The workload interfaces that exist now (name → ifindex) and those
        with a local endpoint; call before :meth:`spare` in each apply."""
        links = {n: i for n, i in links.items() if n.startswith(self.iface_prefix)}
        for key in list(self.ifaces):
            if links.get(key[0]) != key[1]:
                del self.ifaces[key]
        for name, index in links.items():
            self.ifaces.setdefault((name, index), now)
        self._links, self._endpoints, self._now = links, endpoint_ifaces, now

    def spare(self, prefix: str, iface: str | int | None) -> bool:
        """Leave this route of ours, which no endpoint explains, for now?"""
        if not isinstance(iface, str) or iface not in self._links:
            return False  # not on a workload interface that exists
        index = self._links[iface]
        now = self._now
        key = (prefix, iface, index)
        fresh = key not in self.routes
        if fresh:
            self.routes[key] = now
        keep = now < self._deadline(key)
        if keep and fresh:
            self.new.append((prefix, iface))
        return keep

    def _deadline(self, key: tuple[str, str, int]) -> float:
        prefix, iface, index = key
        if iface in self._endpoints:
            return self.ifaces.get((iface, index), self._now) + self.period
        return self.routes[key] + self.period

    def settle(self, strays: Iterable[tuple[str, str | int | None]]) -> float | None:
        """After the apply: forget the routes that are no longer unexplained
        (``strays``: the routes of ours where none is desired, as
        (prefix, interface)); the earliest time a spared one's grace ends
        (the next apply should run then), or None."""
        keep: dict[tuple[str, str, int], float] = {}
        for prefix, iface in strays:
            if isinstance(iface, str) and iface in self._links:
                key = (prefix, iface, self._links[iface])
                if key in self.routes:
                    keep[key] = self.routes[key]
        self.routes = keep
        deadlines = [d for d in map(self._deadline, keep) if d > self._now]
        return min(deadlines) if deadlines else None

    def take_new(self) -> list[tuple[str, str]]:
        new, self.new = self.new, []
        return new
