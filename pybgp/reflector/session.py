"""One BGP connection as a state machine, sans-IO (RFC 4271 §8, h11 style).

A ``Session`` is fed the bytes its TCP connection received and the clock;
it answers with actions: bytes to send, the events the reflector acts on
(``Opened``, ``Up``, ``Routes``, ``EndOfRib``, ``Refresh``) and ``Closed``,
after which the connection must be closed (once the bytes before it are
written). It owns: the FSM from OpenSent to Established, the OPEN checks
and capability negotiation (4-octet AS, multiprotocol IPv4/IPv6 unicast,
route refresh, graceful restart), the hold and keepalive timers, and
NOTIFICATIONs for every error it finds (RFC 4271 §6, RFC 6608 subcodes for
unexpected messages); UPDATEs are read by ``codec`` (RFC 7606).

A session starts once its TCP connection is up (Connect/Active, the retry
timer and collisions belong to ``peer``, which has several connections).

Must never: do I/O, read the clock itself (``now`` is given, monotonic
seconds) or raise on anything a peer sends.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pybgp.reflector import codec, wire
from pybgp.reflector.wire import IPV4_UNICAST, Caps, Family, GracefulRestart, WireError

OPEN_HOLD = 240.0  # RFC 4271 §8: the hold timer while waiting for the OPEN
STATES = ("Connect", "OpenSent", "OpenConfirm", "Established", "Idle")


@dataclass(frozen=True)
class LocalSettings:
    """What we say in our OPEN, and what we require of the peer's."""

    asn: int
    router_id: str
    peer_as: int
    hold_time: int = 90
    families: tuple[Family, ...] = (IPV4_UNICAST,)
    restart_time: int | None = 120  # our graceful-restart capability; None: none
    restarting: bool = False  # the Restart State bit (we have just restarted)

    def caps(self) -> Caps:
        gr = None
        if self.restart_time is not None:
            gr = GracefulRestart(self.restart_time, self.restarting,
                                 forwarding=frozenset(self.families), families=self.families)
        return Caps(families=self.families, asn4=self.asn, route_refresh=True,
                    graceful_restart=gr)


@dataclass(frozen=True)
class PeerInfo:
    """What the peer's OPEN said and what was negotiated."""

    router_id: str
    asn: int
    hold_time: int  # negotiated; 0 = no keepalives
    families: tuple[Family, ...]  # in common
    asn4: bool
    route_refresh: bool
    graceful_restart: GracefulRestart | None  # the peer's capability
    caps: Caps = field(default_factory=Caps)

    @property
    def keepalive(self) -> float:
        return self.hold_time / 3

    def cap_names(self) -> tuple[str, ...]:
        """As BIRD 1.6 lists them in ``Neighbor caps``."""
        out = []
        if self.caps.route_refresh:
            out.append("refresh")
        if self.caps.enhanced_refresh:
            out.append("enhanced-refresh")
        if self.caps.graceful_restart is not None:
            out.append("restart-aware" if not self.caps.graceful_restart.forwarding
                       else "restart-able")
        if self.asn4:
            out.append("AS4")
        if self.caps.add_path:
            out.append("add-path")
        return tuple(out)


# -- actions -------------------------------------------------------------------
@dataclass(frozen=True)
class Send:
    data: bytes


@dataclass(frozen=True)
class Opened:
    """The peer's OPEN was accepted (now OpenConfirm): collisions are
    resolved here, with the peer's BGP identifier known."""

    info: PeerInfo


@dataclass(frozen=True)
class Up:
    info: PeerInfo


@dataclass(frozen=True)
class Routes:
    update: codec.Update


@dataclass(frozen=True)
class EndOfRib:
    family: Family


@dataclass(frozen=True)
class Refresh:
    family: Family


@dataclass(frozen=True)
class Closed:
    """The session is over. ``kind``: ``Received`` (the peer's NOTIFICATION),
    ``Error`` (ours), ``Socket`` (the connection failed); ``graceful``: no
    NOTIFICATION either way, so a graceful-restart helper keeps the routes."""

    kind: str
    reason: str
    graceful: bool = False

    @property
    def text(self) -> str:
        return f"{self.kind}: {self.reason}"


Action = Send | Opened | Up | Routes | EndOfRib | Refresh | Closed


class Session:
    def __init__(self, local: LocalSettings, peer_address: str, now: float):
        self.local = local
        self.peer_address = peer_address
        self.state = "Connect"
        self.info: PeerInfo | None = None
        self.decoder: codec.UpdateDecoder | None = None
        self._framer = wire.Framer()
        self._hold_deadline: float | None = None
        self._next_keepalive: float | None = None
        self.created = now
        self.messages_in = 0
        self.updates_in = 0

    # -- inputs ----------------------------------------------------------------
    def start(self, now: float) -> list[Action]:
        """The TCP connection is up: send our OPEN."""
        if self.state != "Connect":
            return []
        self.state = "OpenSent"
        self._hold_deadline = now + OPEN_HOLD
        lo = self.local
        return [Send(wire.encode_open(lo.asn, lo.hold_time, lo.router_id, lo.caps()))]

    def feed(self, data: bytes, now: float) -> list[Action]:
        """Bytes from the peer."""
        if self.state in ("Idle", "Connect"):
            return []
        try:
            messages = self._framer.feed(data)
        except WireError as exc:
            return self._fail(exc)
        out: list[Action] = []
        for kind, body in messages:
            self.messages_in += 1
            try:
                out += self._message(kind, body, now)
            except WireError as exc:
                out += self._fail(exc)
            if self.state == "Idle":
                break
        return out

    def tick(self, now: float) -> list[Action]:
        """Timers: the hold timer expiring, a keepalive due."""
        if self.state in ("Idle", "Connect"):
            return []
        if self._hold_deadline is not None and now >= self._hold_deadline:
            return self._fail(WireError(4, 0, b"", "Hold timer expired"))
        if self._next_keepalive is not None and now >= self._next_keepalive:
            assert self.info is not None
            self._next_keepalive = now + self.info.keepalive
            return [Send(wire.KEEPALIVE_MESSAGE)]
        return []

    def next_deadline(self) -> float | None:
        times = [t for t in (self._hold_deadline, self._next_keepalive) if t is not None]
        return min(times) if times else None

    def connection_lost(self, reason: str) -> list[Action]:
        if self.state == "Idle":
            return []
        self.state = "Idle"
        return [Closed("Socket", reason or "Connection closed", graceful=True)]

    def notify(self, code: int, subcode: int, text: str = "") -> list[Action]:
        """Close it ourselves with a NOTIFICATION (e.g. Cease 6/2, 6/7)."""
        if self.state == "Idle":
            return []
        return self._fail(WireError(code, subcode, b"", text))

    # -- internals ---------------------------------------------------------------
    def _fail(self, exc: WireError) -> list[Action]:
        was = self.state
        self.state = "Idle"
        out: list[Action] = []
        if was != "Connect":
            out.append(Send(wire.encode_notification(exc.code, exc.subcode, exc.data)))
        return out + [Closed("Error", exc.text)]

    def _message(self, kind: int, body: bytes, now: float) -> list[Action]:
        if kind == wire.NOTIFICATION:
            code, sub, _data = wire.decode_notification(body)
            self.state = "Idle"
            return [Closed("Received", wire.error_text(code, sub))]
        if self.info is not None and self.info.hold_time:
            self._hold_deadline = now + self.info.hold_time
        if self.state == "OpenSent":
            if kind != wire.OPEN:
                raise WireError(5, 1)
            return self._open(body, now)
        if self.state == "OpenConfirm":
            if kind != wire.KEEPALIVE:
                raise WireError(5, 2)
            self.state = "Established"
            assert self.info is not None
            return [Up(self.info)]
        # Established
        if kind == wire.KEEPALIVE:
            return []
        if kind == wire.UPDATE:
            self.updates_in += 1
            assert self.decoder is not None
            upd = self.decoder.decode(body)
            if upd.eor is not None:
                return [EndOfRib(upd.eor)]
            return [Routes(upd)]
        if kind == wire.ROUTE_REFRESH:
            family = wire.decode_route_refresh(body)
            assert self.info is not None
            if family in self.info.families:
                return [Refresh(family)]
            return []  # RFC 2918 §4: a family not negotiated is ignored
        raise WireError(5, 3)

    def _open(self, body: bytes, now: float) -> list[Action]:
        msg = wire.decode_open(body)
        lo = self.local
        if msg.asn != lo.peer_as:
            raise WireError(2, 2, b"", f"Bad peer AS: {msg.asn}, expected {lo.peer_as}")
        if msg.hold_time in (1, 2):
            raise WireError(2, 6)
        if msg.router_id == "0.0.0.0" or (msg.asn == lo.asn and msg.router_id == lo.router_id):
            raise WireError(2, 3, b"", f"Bad BGP identifier {msg.router_id}")
        caps = msg.caps
        common = tuple(f for f in lo.families if f in caps.families)
        if not common:
            raise WireError(2, 7, b"", "no address family in common")
        hold = min(lo.hold_time, msg.hold_time)
        self.info = PeerInfo(
            router_id=msg.router_id, asn=msg.asn, hold_time=hold, families=common,
            asn4=caps.asn4 is not None, route_refresh=caps.route_refresh,
            graceful_restart=caps.graceful_restart, caps=caps)
        self.decoder = codec.UpdateDecoder(
            self.peer_address, msg.router_id, asn4=caps.asn4 is not None, families=common,
            ibgp=msg.asn == lo.asn)
        self.state = "OpenConfirm"
        self._hold_deadline = now + hold if hold else None
        self._next_keepalive = now + self.info.keepalive if hold else None
        return [Opened(self.info), Send(wire.KEEPALIVE_MESSAGE)]
