"""The speaker's state as BIRD would show it (implements ``ctl.SpeakerView``).

Read-only over the daemon: sessions become BIRD protocols (``Mesh_…``,
``Node_…``, ``Global_…`` plus ``kernel1``, ``static1``, ``device1``,
``direct1``) and the table holds learned paths, our blackhole aggregates and
the local ``cali*`` /32s, each with the protocol that put it there.
"""

from __future__ import annotations

import ipaddress
import time
from typing import TYPE_CHECKING

from pybgp import __version__
from pybgp.speaker.birdfmt import BgpStatus, ProtocolInfo, RouteStats, bird_time
from pybgp.speaker.birdroutes import BgpAttrs, RouteLine
from pybgp.speaker.core import SPEAKER_PROTOCOL, PeerRuntime
from pybgp.speaker.ctl import StatusInfo

if TYPE_CHECKING:
    from pybgp.speaker.daemon import SpeakerDaemon

_BGP_STATE = {"up": "Established", "connected": "OpenSent"}


def _sort_key(prefix: str) -> tuple[int, int, int]:
    net = ipaddress.ip_network(prefix, strict=False)
    return net.version, int(net.network_address), net.prefixlen


class View:
    def __init__(self, daemon: SpeakerDaemon):
        self.daemon = daemon

    @property
    def _speaker(self):  # -> Speaker
        return self.daemon.speaker

    def status(self) -> StatusInfo:
        sp = self._speaker
        return StatusInfo(router_id=sp.router_id, started_at=sp.started_at,
                          reconfigured_at=sp.reconfigured_at or sp.started_at,
                          version=__version__)

    def protocols(self) -> list[ProtocolInfo]:
        sp, now = self._speaker, time.time()
        out = []
        for spec in sorted(sp.peers.values(), key=lambda s: s.name):
            rt = sp.runtime.get(spec.address, PeerRuntime())
            up = rt.state == "up"
            idle = "Passive" if spec.passive else "Active"
            rib = sp.rib
            out.append(ProtocolInfo(
                name=spec.name, proto="BGP", state="up" if up else "start",
                since=bird_time(rt.since or sp.started_at, now),
                description=None,
                stats=RouteStats(
                    imported=rib.imported_count(spec.address) if rib else 0,
                    exported=len(sp.advertised) if up else 0,
                    preferred=rib.preferred_count(spec.address) if rib else 0,
                ),
                bgp=BgpStatus(
                    state=_BGP_STATE.get(rt.state, idle),
                    neighbor_address=spec.address,
                    neighbor_as=spec.peer_as,
                    neighbor_id=rt.router_id or None,
                    session=("internal",) if spec.ibgp else ("external", "AS4"),
                    source_address=spec.local_address,
                    last_error=rt.reason if not up else "",
                ),
            ))
        started = bird_time(sp.started_at, now)
        kernel_routes = len(self.daemon.kernel.actual)
        out += [
            ProtocolInfo("kernel1", "Kernel", "up", started,
                         stats=RouteStats(imported=len(sp.local_routes), exported=kernel_routes,
                                          preferred=len(sp.local_routes))),
            ProtocolInfo("static1", "Static", "up", started,
                         stats=RouteStats(imported=len(sp.blackholes),
                                          preferred=len(sp.blackholes))),
            ProtocolInfo("device1", "Device", "up", started, stats=None),
            ProtocolInfo("direct1", "Direct", "up", started, stats=RouteStats()),
        ]
        return out

    def routes(self) -> list[RouteLine]:
        sp, now = self._speaker, time.time()
        names = {s.address: s.name for s in sp.peers.values()}
        ifaces = self._nexthop_ifaces()
        lines: list[RouteLine] = []
        if sp.rib is not None:
            for prefix, decision in sp.rib.decisions().items():
                for path in sp.rib.paths(prefix):
                    rt = sp.runtime.get(path.peer, PeerRuntime())
                    lines.append(RouteLine(
                        prefix=prefix, protocol=names.get(path.peer, path.peer),
                        since=bird_time(rt.since or sp.started_at, now), dest="via",
                        gateway=path.next_hop, iface=ifaces.get(path.next_hop, "?"),
                        primary=path == decision.best, preference=100, source="BGP",
                        from_address=path.peer,
                        bgp=BgpAttrs(origin=path.origin, as_path=path.as_path,
                                     next_hop=path.next_hop, local_pref=path.local_pref,
                                     med=path.med, originator_id=path.originator_id,
                                     cluster_list=path.cluster_list,
                                     stale=sp.rib.is_stale(prefix, path.peer)),
                    ))
        started = bird_time(sp.started_at, now)
        for cidr in sp.blackholes:
            lines.append(RouteLine(prefix=cidr, protocol="static1", since=started,
                                   dest="blackhole", preference=200, source="static"))
        for prefix, ifname in sp.local_routes.items():
            lines.append(RouteLine(prefix=prefix, protocol="kernel1", since=started,
                                   dest="dev", iface=ifname, preference=10, source="inherit"))
        lines.sort(key=lambda r: (_sort_key(r.prefix), not r.primary))
        return lines

    def _nexthop_ifaces(self) -> dict[str, str]:
        """Next hop → interface, as the kernel resolved it for our routes.

        Read on a socket of its own (the daemon's may be busy in its worker
        thread), only when someone asks to see routes.
        """
        from pybgp.kernel_sync.netlink import RouteWriter

        out: dict[str, str] = {}
        writer = RouteWriter()
        try:
            for route in writer.dump_routes(SPEAKER_PROTOCOL):
                for hop in route.nexthops:
                    dev = writer.ifname(hop.dev) if isinstance(hop.dev, int) else hop.dev
                    if hop.gateway and dev is not None:
                        out.setdefault(hop.gateway, str(dev))
        finally:
            writer.close()
        return out
