"""The speaker's control sockets (thin asyncio shell over ``birdfmt``).

Owns: the ``SpeakerView`` the daemon implements (status, protocols, routes as
``birdfmt``/``birdroutes`` values), and two unix stream servers over it:

* ``serve_bird`` — BIRD 1.6's control socket (``/var/run/calico/bird.ctl``)
  for ``birdcl``/``birdc``, prometheus-bird-exporter and Calico's parsers:
  ``0001`` welcome on connect, then one command per line, one framed reply
  per command (``answer``). Lines are bounded (``MAX_LINE``, BIRD's
  ``CLI_RX_BUF_SIZE``): a longer one gets ``9000 Command too long`` and the
  connection goes on, as in BIRD 1.6. An empty line is a syntax error, as in
  BIRD (it answers every line). ``quit``/``exit`` or EOF ends a session.
  Socket mode 0660, as BIRD's.
* ``serve_json`` — pybgp's own socket (``/var/run/pybgp/speaker.sock``,
  mode 0600): each request line ``{"get": "status"|"protocols"|"routes"}``
  gets one line ``{"result": ...}`` or ``{"error": "..."}``.

Sockets are bound inside a private (0700) directory, chmod-ed, then renamed
into place, so no other user can connect before the mode is right; a stale
socket (nobody listening) is replaced; a live one or a non-socket file at the
path is an error, never removed.

Must never: decide anything about routes or peers (the view does), block the
loop (view calls are synchronous and cheap), or let one client's junk reach
another client or stop the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import socket
import stat
import tempfile
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from pybgp.errors import PybgpError
from pybgp.speaker.birdfmt import (
    SYNTAX_ERROR,
    WELCOME,
    BgpStatus,
    ParseError,
    ProtocolInfo,
    RouteStats,
    ShowProtocols,
    ShowRoute,
    ShowStatus,
    bird_time,
    error,
    parse_command,
    render_protocols,
    render_status,
)
from pybgp.speaker.birdroutes import BgpAttrs, RouteLine, render_routes

log = logging.getLogger(__name__)

BIRD_SOCKET = "/var/run/calico/bird.ctl"
JSON_SOCKET = "/var/run/pybgp/speaker.sock"
MAX_LINE = 4096  # BIRD 1.6 CLI_RX_BUF_SIZE
TOO_LONG = error(9000, "Command too long")
INTERNAL_ERROR = error(8008, "Internal error")  # a run-time error class of BIRD's
QUIT = ("quit", "exit")


@dataclass(frozen=True)
class StatusInfo:
    """What ``show status`` reports. Times are epoch seconds."""

    router_id: str
    started_at: float
    reconfigured_at: float
    state: str = "Daemon is up and running"
    version: str = ""  # pybgp's own version, shown by ``pybgp status -o json``


class SpeakerView(Protocol):
    """The speaker's state as the control sockets show it (daemon implements)."""

    def status(self) -> StatusInfo: ...

    def protocols(self) -> list[ProtocolInfo]:
        """``Mesh_*``/``Node_*``/``Global_*`` BGP sessions, then ``kernel1``,
        ``static1``, ``device1``, ``direct1``."""
        ...

    def routes(self) -> list[RouteLine]:
        """Every route of the table, grouped by network, primary first
        (learned, static blackholes, kernel ``cali*`` /32s)."""
        ...


# -- the BIRD line protocol ---------------------------------------------------
def answer(line: str, view: SpeakerView, now: float | None = None) -> str:
    """The full framed reply to one command line."""
    cmd = parse_command(line)
    if cmd is None:
        return SYNTAX_ERROR
    if isinstance(cmd, ParseError):
        return cmd.reply
    if isinstance(cmd, ShowStatus):
        st = view.status()
        t = time.time() if now is None else now
        return render_status(st.router_id, bird_time(t, t, base=True),
                             bird_time(st.started_at, t, base=True),
                             bird_time(st.reconfigured_at, t, base=True), state=st.state)
    if isinstance(cmd, ShowProtocols):
        return render_protocols(view.protocols(), cmd)
    assert isinstance(cmd, ShowRoute)
    return render_routes(view.routes(), cmd, [p.name for p in view.protocols()])


class _LineTooLong(Exception):
    """A line over ``MAX_LINE``; its rest has been read and dropped."""


async def _read_line(reader: asyncio.StreamReader) -> bytes | None:
    """One line without its newline, ``None`` at EOF; raises ``_LineTooLong``."""
    try:
        return (await reader.readuntil(b"\n")).rstrip(b"\r\n")
    except asyncio.IncompleteReadError:
        return None  # EOF, possibly mid-line: BIRD runs only complete lines
    except asyncio.LimitOverrunError as exc:
        consumed = exc.consumed
    while True:  # drop through the next newline, never buffering more than the limit
        await reader.read(max(consumed, 1))
        try:
            await reader.readuntil(b"\n")
        except asyncio.IncompleteReadError:
            return None
        except asyncio.LimitOverrunError as exc:
            consumed = exc.consumed
            continue
        raise _LineTooLong


async def _bird_session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                        view: SpeakerView) -> None:
    writer.write(WELCOME.encode())
    await writer.drain()
    while True:
        try:
            raw = await _read_line(reader)
        except _LineTooLong:
            out = TOO_LONG
        else:
            if raw is None:
                return
            line = raw.decode("utf-8", "replace")
            if line.strip() in QUIT:
                return
            try:
                out = answer(line, view)
            except Exception:
                log.exception("control socket: answering %r failed", line[:80])
                out = INTERNAL_ERROR
        writer.write(out.encode())
        await writer.drain()


# -- the JSON socket ----------------------------------------------------------
def to_jsonable(obj: Any) -> Any:
    """Dataclasses → dicts (tuples → lists); ``ProtocolInfo`` also gets its
    computed ``info`` text (what the protocols table shows)."""
    if isinstance(obj, ProtocolInfo):
        d = dataclasses.asdict(obj)
        d["info"] = obj.info_text()
        return d
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, list | tuple):
        return [to_jsonable(x) for x in obj]
    return obj


def _from_dict(cls: Any, d: dict[str, Any]) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: _tuples(v) for k, v in d.items() if k in names})


def _tuples(v: Any) -> Any:
    return tuple(_tuples(x) for x in v) if isinstance(v, list) else v


def protocol_from_json(d: dict[str, Any]) -> ProtocolInfo:
    """Inverse of ``to_jsonable`` for one protocol (unknown keys ignored)."""
    p = _from_dict(ProtocolInfo, {k: v for k, v in d.items() if k not in ("stats", "bgp")})
    stats = _from_dict(RouteStats, d["stats"]) if d.get("stats") else None
    bgp = _from_dict(BgpStatus, d["bgp"]) if d.get("bgp") else None
    return dataclasses.replace(p, stats=stats, bgp=bgp)


def route_from_json(d: dict[str, Any]) -> RouteLine:
    r = _from_dict(RouteLine, {k: v for k, v in d.items() if k != "bgp"})
    return dataclasses.replace(r, bgp=_from_dict(BgpAttrs, d["bgp"]) if d.get("bgp") else None)


def json_answer(line: bytes, view: SpeakerView) -> dict[str, Any]:
    try:
        req = json.loads(line)
    except ValueError:
        return {"error": "request is not JSON"}
    what = req.get("get") if isinstance(req, dict) else None
    getters: dict[str, Callable[[], Any]] = {
        "status": view.status, "protocols": view.protocols, "routes": view.routes}
    if not isinstance(what, str) or what not in getters:
        return {"error": 'expected {"get": "status"|"protocols"|"routes"}'}
    return {"result": to_jsonable(getters[what]())}


async def _json_session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                        view: SpeakerView) -> None:
    while True:
        try:
            raw = await _read_line(reader)
        except _LineTooLong:
            out = json.dumps({"error": "request too long"})
        else:
            if raw is None:
                return
            if not raw.strip():
                continue
            try:
                out = json.dumps(json_answer(raw, view))
            except Exception:
                log.exception("json socket: request %r failed", raw[:80])
                out = json.dumps({"error": "internal error"})
        writer.write(out.encode() + b"\n")
        await writer.drain()


# -- servers -----------------------------------------------------------------
Session = Callable[[asyncio.StreamReader, asyncio.StreamWriter, SpeakerView], Awaitable[None]]
_writers: weakref.WeakKeyDictionary[asyncio.AbstractServer, set[asyncio.StreamWriter]] = (
    weakref.WeakKeyDictionary())


class SocketInUse(PybgpError):
    """Another process listens on the socket path, or it is not a socket."""


def _clear_stale(path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise SocketInUse(f"{path} exists and is not a socket; not replacing it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        return  # stale: nobody listens; the rename below replaces it
    except OSError as exc:
        raise SocketInUse(f"cannot probe {path}: {exc.strerror}") from exc
    finally:
        probe.close()
    raise SocketInUse(f"another process is listening on {path}")


def bind_unix(path: str, mode: int) -> socket.socket:
    """A listening unix socket at ``path`` with ``mode``, never reachable with
    a wider mode (bound in a private directory, then renamed into place)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, mode=0o755, exist_ok=True)
    _clear_stale(path)
    private = tempfile.mkdtemp(prefix=".ctl-", dir=directory)  # mode 0700
    tmp = os.path.join(private, "s")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(tmp)
        os.chmod(tmp, mode)
        sock.listen(64)
        os.rename(tmp, path)
    except BaseException:
        sock.close()
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    finally:
        with contextlib.suppress(OSError):
            os.rmdir(private)
    sock.setblocking(False)
    return sock


async def _serve(path: str, mode: int, view: SpeakerView, session: Session) -> asyncio.Server:
    writers: set[asyncio.StreamWriter] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.add(writer)
        try:
            await session(reader, writer, view)
        except ConnectionError:
            pass
        except Exception:
            log.exception("control socket %s: session failed", path)
        finally:
            writers.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    server = await asyncio.start_unix_server(handle, sock=bind_unix(path, mode), limit=MAX_LINE)
    _writers[server] = writers
    return server


async def serve_bird(path: str, view: SpeakerView) -> asyncio.Server:
    """BIRD 1.6's control socket at ``path`` (mode 0660), serving ``view``."""
    return await _serve(path, 0o660, view, _bird_session)


async def serve_json(path: str, view: SpeakerView) -> asyncio.Server:
    """pybgp's JSON socket at ``path`` (mode 0600), serving ``view``."""
    return await _serve(path, 0o600, view, _json_session)


async def serve_both(bird_path: str, json_path: str, view: SpeakerView) -> list[asyncio.Server]:
    """BIRD's control socket and pybgp's JSON socket over one view."""
    return [await serve_bird(bird_path, view), await serve_json(json_path, view)]


async def stop(server: asyncio.Server, path: str) -> None:
    """Stop listening, end open sessions, and remove the socket file unless
    another process is listening on ``path`` by now."""
    server.close()
    for w in list(_writers.get(server, ())):
        w.close()
    await server.wait_closed()
    with contextlib.suppress(OSError, SocketInUse):
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            _clear_stale(path)
            os.unlink(path)
