"""The reflector as BIRD would show it (implements ``speaker.ctl.SpeakerView``).

Read-only over the daemon: every peer is a BGP protocol (``Node_<ip>`` for
clients, ``Global_<ip>`` for non-clients, with ``route-reflector`` in its
``Session:`` line for clients, as BIRD prints it), and the table holds every
path of the RIB, best first, with the attributes as received (the
reflected ones add our ORIGINATOR_ID default and cluster id). A next hop's
interface is looked up in this namespace's routing table (``/proc/net/route``)
only when routes are shown.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import time
from typing import TYPE_CHECKING

from pybgp import __version__
from pybgp.reflector.daemon import _address
from pybgp.reflector.peer import protocol_name
from pybgp.speaker import rr
from pybgp.speaker.birdfmt import BgpStatus, ProtocolInfo, RouteStats, bird_time
from pybgp.speaker.birdroutes import BgpAttrs, RouteLine
from pybgp.speaker.ctl import StatusInfo
from pybgp.speaker.rr import Role

if TYPE_CHECKING:
    from pybgp.reflector.daemon import ReflectorDaemon


def _sort_key(prefix: str) -> tuple[int, int, int]:
    net = ipaddress.ip_network(prefix, strict=False)
    return net.version, int(net.network_address), net.prefixlen


def ipv4_routes(path: str = "/proc/net/route") -> list[tuple[int, int, str]]:
    """(network, mask, interface) of this namespace's IPv4 main table."""
    out = []
    try:
        with open(path) as fh:
            next(fh)
            for line in fh:
                f = line.split()
                if len(f) >= 8:
                    dest = struct.unpack("<I", bytes.fromhex(f[1]))[0]
                    mask = struct.unpack("<I", bytes.fromhex(f[7]))[0]
                    out.append((socket.ntohl(dest), socket.ntohl(mask), f[0]))
    except (OSError, ValueError, StopIteration):
        pass
    return out


def interface_for(address: str, routes: list[tuple[int, int, str]]) -> str:
    """The interface the longest matching route names ('?' if none, IPv6)."""
    try:
        ip = int(ipaddress.IPv4Address(address))
    except ValueError:
        return "?"
    best, best_mask = "?", -1
    for net, mask, iface in routes:
        if ip & mask == net and mask > best_mask:
            best, best_mask = iface, mask
    return best


class View:
    def __init__(self, daemon: ReflectorDaemon):
        self.daemon = daemon

    def status(self) -> StatusInfo:
        d = self.daemon
        return StatusInfo(router_id=d.cfg.router_id, started_at=d.started_wall,
                          reconfigured_at=d.reconfigured_wall, version=__version__)

    def protocols(self) -> list[ProtocolInfo]:
        d, now = self.daemon, time.time()
        core = d.core
        rib = core.rib
        # one pass over the table: each peer's preferred paths, best paths by source role
        preferred: dict[str, int] = {}
        by_role: dict[Role, int] = {}
        roles = {a: st.role for a, st in core.peers.items()}
        for _prefix, path in rib.best_paths():
            preferred[path.peer] = preferred.get(path.peer, 0) + 1
            role = roles.get(path.peer, Role.CLIENT)
            by_role[role] = by_role.get(role, 0) + 1
        out = []
        for p in sorted(d.peers.values(), key=lambda x: x.spec.name):
            spec, st = p.spec, core.peers.get(p.spec.address)
            up = p.established is not None
            info = p.info if up else None
            exported = 0
            if up:
                exported = sum(n for r, n in by_role.items() if rr.reflects(r, spec.role))
                if rr.reflects(spec.role, spec.role):
                    exported -= preferred.get(spec.address, 0)
            sess = p.session
            hold = keep = None
            if up and sess is not None and info is not None and info.hold_time:
                h, k = sess._hold_deadline, sess._next_keepalive
                mono = time.monotonic()
                hold = (max(0, int((h or mono) - mono)), info.hold_time)
                keep = (max(0, int((k or mono) - mono)), int(info.keepalive))
            source = d.cfg.listen_address
            conn = d.conns.get(p.established) if p.established is not None else None
            if conn is not None:
                try:
                    source = _address(conn.sock.getsockname()[0])
                except OSError:
                    pass
            session = ["internal"]
            if spec.role is Role.CLIENT:
                session.append("route-reflector")
            if info is not None and info.asn4:
                session.append("AS4")
            updates = st.updates if st else 0
            withdraws = st.withdraws if st else 0
            out.append(ProtocolInfo(
                name=spec.name, proto="BGP", state="up" if up else "start",
                since=bird_time(d.wall(p.since), now), description=spec.description or None,
                input_filter="ACCEPT", output_filter="ACCEPT",
                stats=RouteStats(
                    imported=rib.imported_count(spec.address), exported=exported,
                    preferred=preferred.get(spec.address, 0),
                    import_updates=(updates, st.loops if st else 0, 0, 0, updates),
                    import_withdraws=(withdraws, 0, 0, withdraws)),
                bgp=BgpStatus(
                    state=p.state, neighbor_address=spec.address,
                    neighbor_as=d.cfg.asn, neighbor_id=info.router_id if info else None,
                    neighbor_caps=info.cap_names() if info else (),
                    session=tuple(session), source_address=source,
                    hold_timer=hold, keepalive_timer=keep,
                    last_error=p.last_error or (st.last_error if st else ""),
                    gr_active=bool(st and st.stale)),
            ))
        return out

    def routes(self) -> list[RouteLine]:
        d, now = self.daemon, time.time()
        core = d.core
        rib = core.rib
        kernel = ipv4_routes()
        ifaces: dict[str, str] = {}
        names = {a: protocol_name(a, st.role) for a, st in core.peers.items()}
        since = {a: bird_time(d.wall(p.since), now) for a, p in d.peers.items()}
        started = bird_time(d.started_wall, now)
        lines: list[RouteLine] = []
        for prefix, best in rib.best_paths():
            for path in rib.paths(prefix):
                iface = ifaces.get(path.next_hop)
                if iface is None:
                    iface = ifaces[path.next_hop] = interface_for(path.next_hop, kernel)
                lines.append(RouteLine(
                    prefix=prefix, protocol=names.get(path.peer, path.peer),
                    since=since.get(path.peer, started), dest="via", gateway=path.next_hop,
                    iface=iface, primary=path is best, from_address=path.peer,
                    bgp=BgpAttrs(origin=path.origin, as_path=path.as_path,
                                 as_sets=path.as_sets, next_hop=path.next_hop,
                                 local_pref=path.local_pref, med=path.med,
                                 communities=path.communities,
                                 originator_id=path.originator_id,
                                 cluster_list=path.cluster_list, igp_metric=None,
                                 stale=rib.is_stale(prefix, path.peer)),
                ))
        lines.sort(key=lambda r: (_sort_key(r.prefix), not r.primary))
        return lines
