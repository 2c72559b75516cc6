"""BIRD 1.6 control-socket protocol, pure: command parsing and reply text.

Owns: the grammar of the commands pybgp answers on its BIRD-compatible
socket (``show status``, ``show protocols [all] [NAME|"PATTERN"]``,
``show route [all] [PREFIX|for ADDR] [protocol P] [count|stats]``, with
unique-prefix abbreviations such as ``sh proto``), and the byte-exact reply
lines BIRD 1.6.8 prints (codes, ``-`` continuation, a lone space when the
code repeats, the closing ``0000``), as read from BIRD's nest/proto.c,
nest/rt-table.c, nest/cmds.c, proto/bgp/*.c and nest/cli.c. Calico's
``calicoctl node status`` and prometheus-bird-exporter parse these lines.

Must never: open sockets, read the clock (times arrive preformatted, see
``bird_time``), or know where the data came from.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

VERSION = "1.6.8"
WELCOME = f"0001 BIRD {VERSION} ready.\n"


def bird_time(ts: float, now: float, *, base: bool = False) -> str:
    """BIRD 1.6 default time formats: protocols/routes show ``%T`` within
    20 hours and ``%F`` beyond; ``show status`` (base) uses ``%F %T``."""
    tm = time.localtime(ts)
    if base:
        return time.strftime("%Y-%m-%d %H:%M:%S", tm)
    return time.strftime("%H:%M:%S" if now - ts < 20 * 3600 else "%Y-%m-%d", tm)


# -- reply framing -----------------------------------------------------------
def reply(lines: Iterable[tuple[int, str]], final: tuple[int, str] = (0, "")) -> str:
    """Frame ``(code, text)`` lines as BIRD does: ``NNNN-text`` for the
    first line of a code, `` text`` while the code repeats, ``NNNN text``
    for the final line."""
    out: list[str] = []
    last = None
    for code, text in lines:
        out.append((" " if code == last else f"{code:04d}-") + text)
        last = code
    out.append(f"{final[0]:04d} {final[1]}")
    return "\n".join(out) + "\n"


def error(code: int, text: str) -> str:
    return reply((), (code, text))


SYNTAX_ERROR = error(9001, "syntax error")


# -- commands ----------------------------------------------------------------
@dataclass(frozen=True)
class ShowStatus:
    pass


@dataclass(frozen=True)
class ShowProtocols:
    all: bool = False
    name: str | None = None  # a protocol name
    pattern: str | None = None  # a quoted shell pattern


@dataclass(frozen=True)
class ShowRoute:
    all: bool = False
    prefix: str | None = None  # exact network
    for_addr: str | None = None  # longest match for an address or prefix
    protocol: str | None = None
    count: bool = False  # "count": only the 0014 summary
    stats: bool = False  # "stats": rows and the 0014 summary
    primary: bool = False


@dataclass(frozen=True)
class ParseError:
    """An ill-formed command; ``reply`` is the full error reply text."""

    reply: str


Command = ShowStatus | ShowProtocols | ShowRoute

#: Command words at each level as BIRD 1.6's command table knows them, so
#: that abbreviations resolve (or are ambiguous) as birdc's cmd_expand does
#: (a unique prefix; ``roa`` and ``rip`` lose ties, so ``sh ro`` is ``show
#: route``). BIRD expands in the client; accepting them here is a superset.
#: Arguments of ``show route`` are grammar keywords and must be spelt out.
_TOP = ("show", "configure", "down", "disable", "enable", "restart", "reload", "debug",
        "dump", "echo", "mrtdump", "graceful", "help", "quit", "exit")
_SHOW = ("status", "memory", "protocols", "interfaces", "ospf", "static", "route", "roa",
         "symbols", "rip", "babel", "bfd")
_LOW_PRIORITY = ("roa", "rip")


def _expand(word: str, choices: Sequence[str]) -> str | None:
    if word in choices:
        return word
    hits = [c for c in choices if c.startswith(word)]
    if len(hits) > 1:
        hits = [c for c in hits if c not in _LOW_PRIORITY]
    return hits[0] if len(hits) == 1 else None


def _tokens(line: str) -> list[str] | None:
    out: list[str] = []
    i = 0
    while i < len(line):
        c = line[i]
        if c.isspace():
            i += 1
        elif c == '"':
            j = line.find('"', i + 1)
            if j < 0:
                return None
            out.append(line[i:j + 1])
            i = j + 1
        else:
            j = i
            while j < len(line) and not line[j].isspace() and line[j] != '"':
                j += 1
            out.append(line[i:j])
            i = j
    return out


def parse_command(line: str) -> Command | ParseError | None:
    """Parse one control-socket line; ``None`` for an empty line."""
    toks = _tokens(line.strip())
    if toks is None:
        return ParseError(error(9001, "Unterminated string"))
    if not toks:
        return None
    if _expand(toks[0], _TOP) != "show" or len(toks) < 2:
        return ParseError(SYNTAX_ERROR)
    sub = _expand(toks[1], _SHOW)
    rest = toks[2:]
    if sub == "status" and not rest:
        return ShowStatus()
    if sub == "protocols":
        return _parse_protocols(rest)
    if sub == "route":
        return _parse_route(rest)
    return ParseError(SYNTAX_ERROR)


def _parse_protocols(rest: list[str]) -> ShowProtocols | ParseError:
    verbose = False
    if rest and _expand(rest[0], ("all",)) == "all":
        verbose, rest = True, rest[1:]
    if not rest:
        return ShowProtocols(verbose)
    if len(rest) > 1:
        return ParseError(SYNTAX_ERROR)
    if rest[0].startswith('"'):
        return ShowProtocols(verbose, pattern=rest[0].strip('"'))
    if not _is_symbol(rest[0]):
        return ParseError(SYNTAX_ERROR)
    return ShowProtocols(verbose, name=rest[0])


def _is_symbol(word: str) -> bool:
    return (word[:1].isalpha() or word[:1] == "_") and all(
        c.isalnum() or c == "_" for c in word)


def _parse_route(rest: list[str]) -> ShowRoute | ParseError:
    opts: dict[str, object] = {}
    i = 0
    while i < len(rest):
        tok = rest[i]
        if _is_network(tok):
            if "prefix" in opts or "for_addr" in opts:
                return ParseError(SYNTAX_ERROR)
            opts["prefix"] = _normalize(tok)
            i += 1
            continue
        word = tok
        if word in ("all", "count", "stats", "primary"):
            opts[word] = True
            i += 1
        elif word == "for" and i + 1 < len(rest) and _is_network(rest[i + 1]):
            if "prefix" in opts or "for_addr" in opts:
                return ParseError(SYNTAX_ERROR)
            opts["for_addr"] = rest[i + 1]
            i += 2
        elif word == "protocol" and i + 1 < len(rest) and _is_symbol(rest[i + 1]):
            opts["protocol"] = rest[i + 1]
            i += 2
        else:
            return ParseError(SYNTAX_ERROR)
    return ShowRoute(**opts)  # type: ignore[arg-type]


def _is_network(tok: str) -> bool:
    try:
        ipaddress.ip_network(tok, strict=False)
    except ValueError:
        return False
    return tok[:1].isdigit() or ":" in tok


def _normalize(tok: str) -> str:
    return str(ipaddress.ip_network(tok, strict=False))


# -- show status -------------------------------------------------------------
def render_status(router_id: str, server_time: str, last_reboot: str,
                  last_reconfiguration: str, *, state: str = "Daemon is up and running"
                  ) -> str:
    return reply([
        (1000, f"BIRD {VERSION}"),
        (1011, f"Router ID is {router_id}"),
        (1011, f"Current server time is {server_time}"),
        (1011, f"Last reboot on {last_reboot}"),
        (1011, f"Last reconfiguration on {last_reconfiguration}"),
    ], (13, state))


# -- show protocols ----------------------------------------------------------
@dataclass(frozen=True)
class RouteStats:
    """Counters of ``Routes:`` and ``Route change stats:`` (BIRD order:
    received, rejected, filtered, ignored, accepted)."""

    imported: int = 0
    exported: int = 0
    preferred: int = 0
    filtered: int | None = None  # shown only with "import keep filtered"
    import_updates: tuple[int, int, int, int, int] = (0, 0, 0, 0, 0)
    import_withdraws: tuple[int, int, int, int] = (0, 0, 0, 0)  # recv rej ign acc
    export_updates: tuple[int, int, int, int] = (0, 0, 0, 0)  # recv rej filt acc
    export_withdraws: tuple[int, int] = (0, 0)  # recv acc


@dataclass(frozen=True)
class BgpStatus:
    """BGP-specific details for ``show protocols all``.

    ``state``: Idle, Connect, Active, OpenSent, OpenConfirm, Established,
    Passive or Down. ``last_error``: class and text, e.g.
    ``"Socket: Connection refused"`` or ``"Received: Hold timer expired"``.
    """

    state: str
    neighbor_address: str
    neighbor_as: int
    neighbor_id: str | None = None
    neighbor_caps: tuple[str, ...] = ()  # e.g. ("refresh", "restart-able", "AS4")
    session: tuple[str, ...] = ("internal",)  # e.g. ("external", "AS4")
    source_address: str | None = None
    hold_timer: tuple[int, int] | None = None  # (remaining, configured)
    keepalive_timer: tuple[int, int] | None = None
    last_error: str = ""
    gr_active: bool = False
    restart_timer: int | None = None
    connect_delay: tuple[int, int] | None = None


@dataclass(frozen=True)
class ProtocolInfo:
    name: str
    proto: str  # BGP | Kernel | Static | Device | Direct
    state: str  # up | start | down | stop | flush | wait | feed
    since: str  # preformatted with bird_time
    table: str = "master"
    info: str | None = None  # None: derived from ``bgp`` for BGP protocols
    description: str | None = None
    preference: int = 100
    input_filter: str = "ACCEPT"
    output_filter: str = "REJECT"
    stats: RouteStats | None = field(default_factory=RouteStats)
    bgp: BgpStatus | None = None

    def info_text(self) -> str:
        if self.info is not None:
            return self.info
        if self.bgp is None:
            return ""
        if self.state == "down":
            return self.bgp.last_error
        return f"{self.bgp.state:<14}{self.bgp.last_error}"


def protocol_row(p: ProtocolInfo) -> str:
    return f"{p.name:<8} {p.proto:<8} {p.table:<8} {p.state:<5}  {p.since:<10}  {p.info_text()}"


def _details(p: ProtocolInfo) -> list[str]:
    out: list[str] = []
    if p.description:
        out.append(f"  Description:    {p.description}")
    out += [f"  Preference:     {p.preference}",
            f"  Input filter:   {p.input_filter}",
            f"  Output filter:  {p.output_filter}"]
    s = p.stats
    if s is not None and p.state != "down":
        if s.filtered is not None:
            out.append(f"  Routes:         {s.imported} imported, {s.filtered} filtered, "
                       f"{s.exported} exported, {s.preferred} preferred")
        else:
            out.append(f"  Routes:         {s.imported} imported, {s.exported} exported, "
                       f"{s.preferred} preferred")
        iu, iw, eu, ew = s.import_updates, s.import_withdraws, s.export_updates, s.export_withdraws
        out += ["  Route change stats:     received   rejected   filtered    ignored   accepted",
                "    Import updates:     " + " ".join(f"{v:10d}" for v in iu),
                f"    Import withdraws:   {iw[0]:10d} {iw[1]:10d}        --- {iw[2]:10d} "
                f"{iw[3]:10d}",
                f"    Export updates:     {eu[0]:10d} {eu[1]:10d} {eu[2]:10d}        --- "
                f"{eu[3]:10d}",
                f"    Export withdraws:   {ew[0]:10d}        ---        ---        --- "
                f"{ew[1]:10d}"]
    b = p.bgp
    if b is not None:
        out += [f"  BGP state:          {b.state}",
                f"    Neighbor address: {b.neighbor_address}",
                f"    Neighbor AS:      {b.neighbor_as}"]
        if b.gr_active:
            out.append("    Neighbor graceful restart active")
            if b.restart_timer is not None:
                out.append(f"    {'Restart timer:':<15}   {b.restart_timer}/-")
        if p.state == "start" and b.connect_delay is not None:
            out.append(f"    Connect delay:    {b.connect_delay[0]}/{b.connect_delay[1]}")
        if p.state == "up":
            out.append(f"    Neighbor ID:      {b.neighbor_id or '0.0.0.0'}")
            out.append("    Neighbor caps:   " + "".join(f" {c}" for c in b.neighbor_caps))
            out.append(f"    Session:          {' '.join(b.session)}")
            out.append(f"    Source address:   {b.source_address or '0.0.0.0'}")
            if b.hold_timer is not None:
                out.append(f"    Hold timer:       {b.hold_timer[0]}/{b.hold_timer[1]}")
            if b.keepalive_timer is not None:
                out.append(f"    Keepalive timer:  {b.keepalive_timer[0]}/"
                           f"{b.keepalive_timer[1]}")
        if b.last_error:
            out.append(f"    Last error:       {b.last_error}")
    out.append("")
    return out


def render_protocols(protocols: Sequence[ProtocolInfo], cmd: ShowProtocols) -> str:
    """The reply to ``show protocols [all] [NAME|"PATTERN"]``."""
    if cmd.name is not None:
        chosen = [p for p in protocols if p.name == cmd.name]
        if not chosen:  # BIRD: an unknown symbol is not a protocol
            return error(9002, f"{cmd.name} is not a protocol")
    elif cmd.pattern is not None:
        chosen = [p for p in protocols if fnmatch.fnmatchcase(p.name, cmd.pattern)]
    else:
        chosen = list(protocols)
    if not chosen:
        return error(8003, "No protocols match")
    lines: list[tuple[int, str]] = [(2002, "name     proto    table    state  since       info")]
    for p in chosen:
        lines.append((1002, protocol_row(p)))
        if cmd.all:
            lines += [(1006, d) for d in _details(p)]
    return reply(lines)
