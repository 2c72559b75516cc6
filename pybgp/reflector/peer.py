"""One BGP neighbour and its connections, sans-IO.

Owns: the sessions of one peer address (ours and the peer's, at most one
Established), connection collision resolution (RFC 4271 §6.8: the peer's
OPEN names its BGP identifier; of two connections the one initiated by the
side with the higher identifier stays, the other is closed with Cease 7,
and a connection arriving while one is Established is the one closed), the
connect-retry timer of an active peer, and what ``show protocols`` says of
it (state, since, last error, negotiated capabilities).

Connections are named by integers the shell chooses. Actions out are
``(connection, session action)`` pairs and, for the reflector, ``Down``
when the Established session ends.

Must never: do I/O, read the clock, or hold routes (``core`` does).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from pybgp.reflector import session as s
from pybgp.speaker.rr import Role


@dataclass(frozen=True)
class PeerSpec:
    """A configured (or, from a range, accepted) neighbour."""

    address: str
    name: str
    role: Role = Role.CLIENT
    passive: bool = False
    password: str | None = None
    port: int = 179
    dynamic: bool = False  # accepted from a range: forgotten when its session ends
    description: str = ""


@dataclass(frozen=True)
class Down:
    """The Established session ended (``graceful``: no NOTIFICATION, so a
    graceful-restart helper keeps the routes)."""

    graceful: bool
    reason: str


PeerAction = tuple[int | None, "s.Action | Down"]


def protocol_name(address: str, role: Role) -> str:
    """BIRD-style protocol name: ``Node_<ip>`` for clients, ``Global_<ip>``
    for non-clients (what Calico's parsers of ``show protocols`` accept)."""
    prefix = "Node" if role is Role.CLIENT else "Global"
    return f"{prefix}_{address.replace('.', '_').replace(':', '_')}"


def _rid(router_id: str) -> int:
    return int(ipaddress.IPv4Address(router_id))


class Peer:
    def __init__(self, spec: PeerSpec, local: s.LocalSettings, now: float,
                 connect_retry: float = 5.0):
        self.spec = spec
        self.local = local
        self.connect_retry = connect_retry
        self.sessions: dict[int, s.Session] = {}
        self.outgoing: set[int] = set()
        self.established: int | None = None
        self.info: s.PeerInfo | None = None
        self.since = now
        self.last_error = ""
        self.next_connect: float | None = None if spec.passive else now
        self.up_count = 0

    # -- what the shell asks --------------------------------------------------------
    @property
    def state(self) -> str:
        """The BGP state ``show protocols`` prints."""
        if self.established is not None:
            return "Established"
        order = {"OpenConfirm": 3, "OpenSent": 2, "Connect": 1}
        live = [x.state for x in self.sessions.values() if x.state in order]
        if live:
            return max(live, key=order.__getitem__)
        return "Passive" if self.spec.passive else "Active"

    def wants_connection(self, now: float) -> bool:
        return (not self.spec.passive and not self.sessions and self.next_connect is not None
                and now >= self.next_connect)

    def next_deadline(self) -> float | None:
        times = [d for d in (x.next_deadline() for x in self.sessions.values()) if d is not None]
        if not self.spec.passive and not self.sessions and self.next_connect is not None:
            times.append(self.next_connect)
        return min(times) if times else None

    @property
    def session(self) -> s.Session | None:
        return self.sessions.get(self.established) if self.established is not None else None

    # -- connections ------------------------------------------------------------------
    def connecting(self, conn: int, now: float) -> None:
        """We started a connection ``conn`` (TCP SYN sent)."""
        self.sessions[conn] = s.Session(self.local, self.spec.address, now)
        self.outgoing.add(conn)
        self.next_connect = None

    def connected(self, conn: int, now: float) -> list[PeerAction]:
        """Our connection ``conn`` is up."""
        return self._own(conn, self.sessions[conn].start(now), now)

    def connect_failed(self, conn: int, reason: str, now: float) -> list[PeerAction]:
        self.sessions.pop(conn, None)
        self.outgoing.discard(conn)
        self.last_error = f"Socket: {reason}"
        self._retry(now)
        return []

    def accepted(self, conn: int, now: float) -> list[PeerAction]:
        """The peer connected to us on ``conn``."""
        sess = self.sessions[conn] = s.Session(self.local, self.spec.address, now)
        return self._own(conn, sess.start(now), now)

    def data(self, conn: int, data: bytes, now: float) -> list[PeerAction]:
        sess = self.sessions.get(conn)
        if sess is None:
            return []
        return self._own(conn, sess.feed(data, now), now)

    def lost(self, conn: int, reason: str, now: float) -> list[PeerAction]:
        sess = self.sessions.get(conn)
        if sess is None:
            return []
        return self._own(conn, sess.connection_lost(reason), now)

    def tick(self, now: float) -> list[PeerAction]:
        out: list[PeerAction] = []
        for conn, sess in list(self.sessions.items()):
            out += self._own(conn, sess.tick(now), now)
        return out

    def shutdown(self, code: int = 6, subcode: int = 2, text: str = "",
                 now: float = 0.0) -> list[PeerAction]:
        """Close every connection with a NOTIFICATION (Cease: administrative
        shutdown, by default). An active peer tries again after its retry
        time unless it is going away."""
        out: list[PeerAction] = []
        for conn, sess in list(self.sessions.items()):
            out += self._own(conn, sess.notify(code, subcode, text), now, retry=bool(now))
        return out

    # -- internals -----------------------------------------------------------------------
    def _own(self, conn: int, actions: list[s.Action], now: float,
             retry: bool = True) -> list[PeerAction]:
        out: list[PeerAction] = []
        for act in actions:
            if conn not in self.sessions and not isinstance(act, s.Closed):
                continue  # closed meanwhile (a collision lost in the same breath)
            if isinstance(act, s.Opened):
                out.append((conn, act))
                out += self._collision(conn, act.info, now)
            elif isinstance(act, s.Up):
                self.established = conn
                self.info = act.info
                self.since = now
                self.last_error = ""
                self.up_count += 1
                out.append((conn, act))
            elif isinstance(act, s.Closed):
                out += self._closed(conn, act, now, retry)
            else:
                out.append((conn, act))
        return out

    def _collision(self, conn: int, info: s.PeerInfo, now: float) -> list[PeerAction]:
        out: list[PeerAction] = []
        for other, sess in list(self.sessions.items()):
            if other == conn or sess.state == "Idle":
                continue
            if sess.state == "Established":
                loser = conn
            elif (conn in self.outgoing) == (other in self.outgoing):
                loser = other  # the same side connected twice: the newer one stays
            else:
                local_wins = _rid(self.local.router_id) > _rid(info.router_id)
                ours, theirs = (conn, other) if conn in self.outgoing else (other, conn)
                loser = theirs if local_wins else ours
            text = "Connection collision resolution"
            out += self._own(loser, self.sessions[loser].notify(6, 7, text), now, retry=False)
            if loser == conn:
                break
        return out

    def _closed(self, conn: int, act: s.Closed, now: float, retry: bool) -> list[PeerAction]:
        self.sessions.pop(conn, None)
        self.outgoing.discard(conn)
        out: list[PeerAction] = [(conn, act)]
        collision = "collision" in act.reason
        if not collision:
            self.last_error = act.text
        if conn == self.established:
            self.established = None
            self.since = now
            out.append((None, Down(act.graceful, act.text)))
        if retry and not collision:
            self._retry(now)
        return out

    def _retry(self, now: float) -> None:
        if not self.spec.passive and not self.sessions:
            self.next_connect = now + self.connect_retry
