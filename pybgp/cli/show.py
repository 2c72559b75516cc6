"""``pybgp show routes|protocols`` and ``pybgp status``: what the speaker thinks.

(``pybgp show endpoints|policy``, what the agent applies, live in
``pybgp.cli.policy_view``.)

Text output is what ``birdc`` prints for the same command, read from the
speaker's BIRD socket (reply codes stripped as birdc strips them); ``-o json``
reads pybgp's JSON socket. ``pybgp status`` is ``calicoctl node status``.
A speaker that is not running is one line on stderr and exit status 1.

Must never: format BIRD replies itself (``birdfmt`` and the speaker do), or
write anything to the speaker.
"""

from __future__ import annotations

import argparse
import fnmatch
import ipaddress
import json
import os
import socket
import sys
from collections.abc import Iterator
from typing import Any

from pybgp.errors import PybgpError

BIRD_SOCKET = "/var/run/calico/bird.ctl"  # = pybgp.speaker.ctl.BIRD_SOCKET
JSON_SOCKET = "/var/run/pybgp/speaker.sock"  # = pybgp.speaker.ctl.JSON_SOCKET
TIMEOUT = 10.0
MAX_REPLY = 64 << 20


class SpeakerNotRunning(PybgpError):
    pass


class SpeakerError(PybgpError):
    """The speaker answered with an error (BIRD code >= 8000 or JSON error)."""


def register(sub: argparse._SubParsersAction) -> None:
    show = sub.add_parser("show", help="show the speaker's routes and BGP protocols, or the "
                                       "agent's endpoints and policy")
    what = show.add_subparsers(dest="what", metavar="WHAT", required=True)

    p = what.add_parser("routes", aliases=["route"], help="routes in the speaker's table")
    p.add_argument("args", nargs="*", metavar="ARG",
                   help="BIRD 'show route' arguments: all, for ADDR, PREFIX, protocol P, "
                        "count, primary")
    _common(p)
    p.set_defaults(func=run_routes)

    p = what.add_parser("protocols", aliases=["protocol"], help="BGP sessions and protocols")
    p.add_argument("args", nargs="*", metavar="ARG",
                   help='[all] [NAME | "PATTERN"] as for BIRD\'s show protocols')
    _common(p)
    p.set_defaults(func=run_protocols)

    from pybgp.cli.policy_view import register_show

    register_show(what)

    p = sub.add_parser("status", help="calicoctl node status: is the speaker up, its BGP peers")
    _common(p)
    p.set_defaults(func=run_status)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")
    p.add_argument("--socket", default=os.environ.get("PYBGP_BIRD_SOCKET", BIRD_SOCKET),
                   help="speaker's BIRD control socket (env PYBGP_BIRD_SOCKET, default "
                        f"{BIRD_SOCKET})")
    p.add_argument("--json-socket",
                   default=os.environ.get("PYBGP_SPEAKER_SOCKET", JSON_SOCKET),
                   help="speaker's JSON socket (env PYBGP_SPEAKER_SOCKET, default "
                        f"{JSON_SOCKET})")


# -- clients -----------------------------------------------------------------
def _connect(path: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(TIMEOUT)
    try:
        s.connect(path)
    except FileNotFoundError:
        s.close()
        raise SpeakerNotRunning(f"pybgp speaker is not running (no socket at {path})") from None
    except ConnectionRefusedError:
        s.close()
        raise SpeakerNotRunning(
            f"pybgp speaker is not running (nobody listening on {path})") from None
    except OSError as exc:
        s.close()
        raise PybgpError(f"cannot connect to {path}: {exc.strerror or exc}") from None
    return s


def _lines(s: socket.socket, path: str) -> Iterator[str]:
    buf = b""
    total = 0
    while True:
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            yield line.decode("utf-8", "replace")
        try:
            chunk = s.recv(65536)
        except TimeoutError:
            raise PybgpError(f"no answer from the speaker on {path} in {TIMEOUT:g}s") from None
        total += len(chunk)
        if not chunk or total > MAX_REPLY:
            raise PybgpError(f"the speaker on {path} closed the connection mid-reply")
        buf += chunk


def bird_query(path: str, command: str) -> list[tuple[int, str]]:
    """Send one command on a BIRD socket; the reply as ``(code, text)``
    lines, continuation lines carrying the code they continue."""
    with _connect(path) as s:
        lines = _lines(s, path)
        welcome = next(lines)
        if not welcome.startswith("0001 "):
            raise PybgpError(f"{path} is not a BIRD control socket (got {welcome[:40]!r})")
        s.sendall(command.encode() + b"\n")
        out: list[tuple[int, str]] = []
        code = 0
        for line in lines:
            if line.startswith(" "):
                out.append((code, line[1:]))
                continue
            if len(line) < 5 or not line[:4].isdigit() or line[4] not in " -":
                raise PybgpError(f"unexpected line from {path}: {line[:60]!r}")
            code = int(line[:4])
            out.append((code, line[5:]))
            if line[4] == " ":
                return out
    raise AssertionError("unreachable")


def birdc_text(reply: list[tuple[int, str]]) -> str:
    """The reply as birdc prints it (code 0 lines are not printed). An error
    reply (a final code >= 8000) raises ``SpeakerError``."""
    if reply and reply[-1][0] >= 8000:
        raise SpeakerError(reply[-1][1])
    return "".join(text + "\n" for code, text in reply if code)


def json_query(path: str, what: str) -> Any:
    with _connect(path) as s:
        s.sendall(json.dumps({"get": what}).encode() + b"\n")
        answer = json.loads(next(_lines(s, path)))
    if "error" in answer:
        raise SpeakerError(answer["error"])
    return answer["result"]


# -- commands ----------------------------------------------------------------
def _print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2)
    sys.stdout.write("\n")


def run_routes(args: argparse.Namespace) -> int:
    words = " ".join(args.args)
    if args.output == "text":
        sys.stdout.write(birdc_text(bird_query(args.socket, f"show route {words}".strip())))
        return 0
    from pybgp.speaker.birdfmt import ParseError, ShowRoute, parse_command

    cmd = parse_command(f"show route {words}")
    if isinstance(cmd, ParseError) or not isinstance(cmd, ShowRoute):
        raise PybgpError(f"bad route arguments: {words!r}")
    routes = filter_routes(json_query(args.json_socket, "routes"), cmd)
    _print_json({"count": len(routes)} if cmd.count else routes)
    return 0


def filter_routes(routes: list[dict[str, Any]], cmd: Any) -> list[dict[str, Any]]:
    """Select JSON routes as ``show route`` would (exact prefix, ``for``
    longest match, ``protocol``, ``primary``)."""
    def net(p: str) -> Any:
        return ipaddress.ip_network(p, strict=False)

    if cmd.prefix is not None:
        routes = [r for r in routes if net(r["prefix"]) == net(cmd.prefix)]
    elif cmd.for_addr is not None:
        target = net(cmd.for_addr)
        covering = [r for r in routes if net(r["prefix"]).version == target.version
                    and target.subnet_of(net(r["prefix"]))]
        longest = max((net(r["prefix"]).prefixlen for r in covering), default=-1)
        routes = [r for r in covering if net(r["prefix"]).prefixlen == longest]
    if cmd.primary:
        routes = [r for r in routes if r.get("primary")]
    if cmd.protocol is not None:
        routes = [r for r in routes if r["protocol"] == cmd.protocol]
    return routes


def run_protocols(args: argparse.Namespace) -> int:
    if args.output == "text":
        words = " ".join(f'"{w}"' if any(c in w for c in "*?[") and not w.startswith('"')
                         else w for w in args.args)
        reply = bird_query(args.socket, f"show protocols {words}".strip())
        sys.stdout.write(birdc_text(reply))
        return 0
    names = [w.strip('"') for w in args.args if w != "all"]
    protocols = json_query(args.json_socket, "protocols")
    if names:
        protocols = [p for p in protocols if fnmatch.fnmatchcase(p["name"], names[0])]
        if not protocols:
            raise SpeakerError(f"{names[0]}: no protocols match")
    _print_json(protocols)
    return 0


def run_status(args: argparse.Namespace) -> int:
    from pybgp.speaker.calicoctl_status import HEADERS, calicoctl_status_table, peer_rows
    from pybgp.speaker.ctl import protocol_from_json

    protocols = [protocol_from_json(p) for p in json_query(args.json_socket, "protocols")]
    if args.output == "json":
        keys = [h.lower().replace(" ", "_") for h in HEADERS]
        _print_json([dict(zip(keys, row, strict=True)) for row in peer_rows(protocols)])
        return 0
    sys.stdout.write("Calico process is running.\n\nIPv4 BGP status\n")
    sys.stdout.write(calicoctl_status_table(protocols, 4))
    return 0
