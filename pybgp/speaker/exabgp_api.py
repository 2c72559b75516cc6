"""ExaBGP 5.0 API codec, sans-IO: JSON lines in, typed events out; commands
and configuration text out.

Owns: the shape of ExaBGP 5's JSON encoder output (verified against lines
captured from exabgp 5.0.15, see tests/unit/golden/exabgp/), the text grammar
of the API commands we send, and the rendering of the ExaBGP configuration
file. Facts worth knowing when driving it:

- With an explicit ``as-path`` ExaBGP sends the path verbatim, also to eBGP
  peers (it does not prepend the local AS); with no ``as-path`` it sends
  ``[local-as]`` to eBGP peers and an empty path to iBGP peers. An empty
  AS_PATH is absent from the received JSON.
- Confederation segments are labelled ``as-sequence`` by ExaBGP's JSON.
- Each command is answered ``done`` or ``error`` on the helper's stdin.
- Incoming connections are accepted only where a ``listen`` port is set on
  the neighbor (or ``exabgp.tcp.bind`` in the environment); ``connect`` sets
  the peer's port for outgoing connections.

Must never: read or write pipes, files or sockets, run ExaBGP, or keep state
between calls (the caller passes what it knows, e.g. peer router ids).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pybgp.speaker.rib import Path

#: Prefixes per ``nlri`` command line; ~20 bytes each keeps a line < 4 KiB.
DEFAULT_CHUNK = 200


# -- events ------------------------------------------------------------------
@dataclass(frozen=True)
class PeerState:
    peer: str
    state: str  # "up" | "down" | "connected"
    reason: str = ""
    local_address: str = ""
    local_as: int = 0
    peer_as: int = 0


@dataclass(frozen=True)
class Update:
    """One UPDATE. ``groups``: (attributes, prefixes) per next hop, the
    attributes a ``Path`` with an empty prefix shared by all those prefixes
    (the RIB stores it once for all of them)."""

    peer: str
    groups: list[tuple[Path, list[str]]] = field(default_factory=list)
    withdraws: list[str] = field(default_factory=list)

    @property
    def announces(self) -> list[Path]:
        """Each announced prefix as a whole ``Path``."""
        return [dataclasses.replace(shared, prefix=prefix)
                for shared, prefixes in self.groups for prefix in prefixes]


@dataclass(frozen=True)
class EndOfRib:
    peer: str
    afi: str
    safi: str


@dataclass(frozen=True)
class Open:
    """A received OPEN (needs ``receive { open; }``): the peer's identity."""

    peer: str
    router_id: str
    asn: int
    hold_time: int
    capabilities: tuple[str, ...] = ()
    graceful_restart_time: int | None = None


@dataclass(frozen=True)
class Notification:
    peer: str
    direction: str
    code: int
    subcode: int
    message: str = ""


@dataclass(frozen=True)
class Shutdown:
    """ExaBGP itself is exiting."""


@dataclass(frozen=True)
class Ack:
    ok: bool


@dataclass(frozen=True)
class Unknown:
    line: str
    error: str = ""


Event = PeerState | Update | EndOfRib | Open | Notification | Shutdown | Ack | Unknown


def parse_message(line: str, router_ids: Mapping[str, str] | None = None) -> Event:
    """Turn one line from ExaBGP into an event; never raises.

    ``router_ids`` maps peer address → BGP identifier (from ``Open`` events);
    without an entry the peer address stands in as its router id.
    """
    text = line.strip()
    if text in ("done", "error"):
        return Ack(text == "done")
    try:
        msg = json.loads(text)
    except ValueError as exc:
        return Unknown(line, f"not JSON: {exc}")
    if not isinstance(msg, dict):
        return Unknown(line, "not a JSON object")
    try:
        return _parse(msg, line, router_ids or {})
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        return Unknown(line, f"unexpected shape: {exc!r}")


def _parse(msg: dict[str, Any], line: str, router_ids: Mapping[str, str]) -> Event:
    kind = msg.get("type")
    if kind == "notification" and msg.get("notification") == "shutdown":
        return Shutdown()
    neighbor = msg.get("neighbor")
    if not isinstance(neighbor, dict):
        return Unknown(line, f"no neighbor in {kind!r} message")
    peer = neighbor["address"]["peer"]
    asn = neighbor.get("asn", {})
    if kind == "state":
        return PeerState(
            peer=peer,
            state=neighbor["state"],
            reason=neighbor.get("reason", ""),
            local_address=neighbor["address"].get("local", ""),
            local_as=int(asn.get("local", 0)),
            peer_as=int(asn.get("peer", 0)),
        )
    if kind == "open" and neighbor.get("direction") == "receive":
        return _parse_open(peer, neighbor["open"])
    if kind == "notification":
        n = neighbor["notification"]
        return Notification(
            peer, neighbor.get("direction", ""), int(n["code"]), int(n["subcode"]),
            n.get("message", ""),
        )
    if kind == "update":
        message = neighbor["message"]
        if "eor" in message:
            return EndOfRib(peer, message["eor"]["afi"], message["eor"]["safi"])
        ibgp = int(asn.get("local", 0)) == int(asn.get("peer", -1))
        return _parse_update(peer, ibgp, router_ids.get(peer, peer), message["update"],
                             float(msg.get("time", 0.0)))
    return Unknown(line, f"unhandled type {kind!r}")


def _parse_open(peer: str, body: dict[str, Any]) -> Open:
    names: list[str] = []
    gr_time = None
    for cap in body.get("capabilities", {}).values():
        name = cap.get("name", "")
        names.append(name)
        if name == "graceful restart":
            gr_time = int(cap.get("time", 0))
    return Open(peer, body["router_id"], int(body["asn"]), int(body["hold_time"]),
                tuple(names), gr_time)


def parse_as_path(value: Any) -> tuple[tuple[int, ...], tuple[tuple[int, ...], ...]]:
    """ExaBGP 5 AS_PATH (dict of numbered segments) → (sequence, sets).

    Also accepts 4.x's flat list. Sequence members are concatenated in
    segment order; each AS_SET is kept apart (it counts as one AS).
    """
    if value is None:
        return (), ()
    if isinstance(value, list):
        return tuple(int(a) for a in value), ()
    seq: list[int] = []
    sets: list[tuple[int, ...]] = []
    for key in sorted(value, key=int):
        segment = value[key]
        members = tuple(int(a) for a in segment["value"])
        if segment["element"] in ("as-set", "confed-set"):
            sets.append(members)
        else:
            seq.extend(members)
    return tuple(seq), tuple(sets)


def _parse_update(peer: str, ibgp: bool, router_id: str, body: dict[str, Any],
                  received_at: float) -> Update:
    attrs = body.get("attribute", {})
    as_path, as_sets = parse_as_path(attrs.get("as-path"))
    common: dict[str, Any] = dict(
        peer=peer,
        local_pref=attrs.get("local-preference"),
        as_path=as_path,
        as_sets=as_sets,
        origin=attrs.get("origin", "igp"),
        med=attrs.get("med"),
        ibgp=ibgp,
        peer_router_id=router_id,
        originator_id=attrs.get("originator-id"),
        cluster_list=tuple(attrs.get("cluster-list", ())),
        communities=tuple((int(a), int(b)) for a, b in attrs.get("community", ())),
        large_communities=tuple(
            (int(a), int(b), int(c)) for a, b, c in attrs.get("large-community", ())
        ),
        received_at=received_at,
    )
    groups: list[tuple[Path, list[str]]] = []
    for family, by_nh in body.get("announce", {}).items():
        if family != "ipv4 unicast" and family != "ipv6 unicast":
            continue
        for next_hop, nlris in by_nh.items():
            groups.append((Path(prefix="", next_hop=next_hop, **common), _prefixes(nlris)))
    withdraws: list[str] = []
    for family, nlris in body.get("withdraw", {}).items():
        if family != "ipv4 unicast" and family != "ipv6 unicast":
            continue
        withdraws.extend(_prefixes(nlris))
    return Update(peer, groups, withdraws)


def _prefixes(nlris: list[Any]) -> list[str]:
    """The prefixes of a JSON NLRI list: ``"P"`` (``exabgp.api.compact``, what
    the speaker asks for: a string a prefix instead of an object to decode)
    or ``{ "nlri": "P" }`` (always, with ADD-PATH's path-information)."""
    return [n if isinstance(n, str) else n["nlri"] for n in nlris]


# -- commands ----------------------------------------------------------------
@dataclass(frozen=True)
class Attributes:
    """Attributes for announcements. ``as_path=None`` lets ExaBGP choose
    (``[local-as]`` to eBGP, empty to iBGP); a tuple is sent verbatim."""

    origin: str = "igp"
    local_pref: int | None = 100
    as_path: tuple[int, ...] | None = ()
    med: int | None = None
    communities: tuple[tuple[int, int], ...] = ()
    originator_id: str | None = None
    cluster_list: tuple[str, ...] = ()

    def render(self) -> str:
        parts = [f"origin {self.origin}"]
        if self.local_pref is not None:
            parts.append(f"local-preference {self.local_pref}")
        if self.med is not None:
            parts.append(f"med {self.med}")
        if self.as_path is not None:
            parts.append("as-path [ " + "".join(f"{a} " for a in self.as_path) + "]")
        if self.communities:
            parts.append("community [ " + " ".join(f"{a}:{b}" for a, b in self.communities)
                         + " ]")
        if self.originator_id is not None:
            parts.append(f"originator-id {self.originator_id}")
        if self.cluster_list:
            parts.append("cluster-list [ " + " ".join(self.cluster_list) + " ]")
        return " ".join(parts)


def _target(neighbor: str | Sequence[str] | None) -> str:
    if neighbor is None:
        return ""
    if isinstance(neighbor, str):
        return f"neighbor {neighbor} "
    # ExaBGP separates neighbour selectors by a lone comma ("A , B"): "A, B"
    # reads as one selector "neighbor A," that matches no peer.
    return " , ".join(f"neighbor {n}" for n in neighbor) + " "


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    if size < 1:
        raise ValueError("chunk size must be positive")
    for i in range(0, len(items), size):
        yield items[i:i + size]


def announce_batch(next_hop: str, prefixes: Iterable[str], attrs: Attributes | None = None,
                   *, neighbor: str | Sequence[str] | None = None,
                   chunk: int = DEFAULT_CHUNK) -> list[str]:
    """``announce attributes next-hop N … nlri P1 P2 …`` lines (no newline)."""
    a = (attrs or Attributes()).render()
    head = f"{_target(neighbor)}announce attributes next-hop {next_hop} {a} nlri "
    return [head + " ".join(c) for c in _chunks(list(prefixes), chunk)]


def withdraw_batch(prefixes: Iterable[str], *, next_hop: str | None = None,
                   neighbor: str | Sequence[str] | None = None,
                   chunk: int = DEFAULT_CHUNK) -> list[str]:
    """``withdraw attributes [next-hop N] nlri P1 P2 …`` lines."""
    nh = f"next-hop {next_hop} " if next_hop else ""
    head = f"{_target(neighbor)}withdraw attributes {nh}nlri "
    return [head + " ".join(c) for c in _chunks(list(prefixes), chunk)]


def announce_route(prefix: str, next_hop: str, attrs: Attributes | None = None,
                   *, neighbor: str | Sequence[str] | None = None) -> str:
    a = (attrs or Attributes()).render()
    return f"{_target(neighbor)}announce route {prefix} next-hop {next_hop} {a}"


def withdraw_route(prefix: str, *, next_hop: str | None = None,
                   neighbor: str | Sequence[str] | None = None) -> str:
    nh = f" next-hop {next_hop}" if next_hop else ""
    return f"{_target(neighbor)}withdraw route {prefix}{nh}"


def teardown(neighbor: str, code: int = 3) -> str:
    """Close an established session (it reconnects). ExaBGP sends no NOTIFICATION
    where graceful restart was negotiated."""
    return f"neighbor {neighbor} teardown {code}"


def announce_eor(*, neighbor: str | Sequence[str] | None = None) -> str:
    return f"{_target(neighbor)}announce eor ipv4 unicast"


# -- configuration -----------------------------------------------------------
@dataclass(frozen=True)
class NeighborConfig:
    """One ``neighbor`` block. ``port`` is the peer's port (``connect``),
    ``listen_port`` the port we accept on (``listen``, on ``local_address``)."""

    address: str
    local_address: str
    router_id: str
    local_as: int
    peer_as: int
    passive: bool = False
    md5_password: str | None = None
    graceful_restart: int | None = 120
    port: int = 179
    listen_port: int | None = 179
    hold_time: int | None = None
    description: str | None = None


def _quote(value: str) -> str:
    if any(c in value for c in "\"\\\n;{}"):
        raise ValueError(f"cannot put {value!r} into an ExaBGP configuration")
    return f'"{value}"'


def render_config(neighbors: Iterable[NeighborConfig], run: Sequence[str],
                  *, process: str = "pybgp", receive_open: bool = True,
                  manual_eor: bool = False, adj_rib_in: bool | None = None) -> str:
    """An ExaBGP 5 configuration: one helper process, one block per peer.

    With ``manual_eor`` ExaBGP does not send End-of-RIB by itself: the helper
    sends it after its routes (``announce eor``), so a peer in
    graceful-restart helper mode never sweeps before our routes are back.

    ``adj_rib_in=False`` stops ExaBGP keeping its own copy of every received
    route (on by default in ExaBGP 5): pybgp holds the RIB; at 100k routes
    the copy costs ExaBGP about a tenth of its CPU and tens of MiB.
    """
    out = [f"process {process} {{",
           "    run " + " ".join(_shell_word(w) for w in run) + ";",
           "    encoder json;",
           "}", ""]
    receive = "parsed; update; open; notification;" if receive_open else "parsed; update;"
    for n in neighbors:
        out.append(f"neighbor {n.address} {{")
        if n.description:
            out.append(f"    description {_quote(n.description)};")
        out += [f"    router-id {n.router_id};",
                f"    local-address {n.local_address};",
                f"    local-as {n.local_as};",
                f"    peer-as {n.peer_as};"]
        if n.hold_time is not None:
            out.append(f"    hold-time {n.hold_time};")
        if n.passive:
            out.append("    passive;")
        if n.listen_port is not None:
            out.append(f"    listen {n.listen_port};")
        if n.port != 179 or not n.passive:
            out.append(f"    connect {n.port};")
        if n.md5_password:
            out.append(f"    md5-password {_quote(n.md5_password)};")
        if manual_eor:
            out.append("    manual-eor true;")
        if adj_rib_in is not None:
            out.append(f"    adj-rib-in {'true' if adj_rib_in else 'false'};")
        if n.graceful_restart:
            out.append(f"    capability {{ graceful-restart {n.graceful_restart}; }}")
        out += ["    family { ipv4 unicast; }",
                f"    api {{ processes [ {process} ]; receive {{ {receive} }} "
                "neighbor-changes; }",
                "}", ""]
    return "\n".join(out)


def _shell_word(word: str) -> str:
    if not word or any(c in word for c in " \t;,{}[]\"'\\\n"):
        raise ValueError(f"process argument {word!r} needs quoting ExaBGP cannot do")
    return word
