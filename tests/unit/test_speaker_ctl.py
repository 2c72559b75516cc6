"""The control sockets over a fake view: exact BIRD replies on the line
protocol, errors, abbreviations, concurrent and misbehaving clients, socket
modes, the JSON socket and the CLI's clients (``pybgp.cli.show``)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from speaker_samples import GLOBAL_DOWN, MESH, OTHERS

from pybgp.cli import show
from pybgp.speaker import ctl
from pybgp.speaker.birdfmt import WELCOME, BgpStatus, ProtocolInfo
from pybgp.speaker.birdroutes import BgpAttrs, RouteLine
from pybgp.speaker.ctl import StatusInfo, answer, protocol_from_json, route_from_json

T0 = 1_800_000_000.0

MESH2 = ProtocolInfo(
    name="Mesh_198_18_0_13", proto="BGP", state="start", since="05:12:09",
    bgp=BgpStatus(state="Connect", neighbor_address="198.18.0.13", neighbor_as=64512))
ROUTES = [
    RouteLine("198.19.1.64/26", "Mesh_198_18_0_12", "05:12:02", "via", "198.18.0.12", "eth0",
              bgp=BgpAttrs(next_hop="198.18.0.12")),
    RouteLine("198.19.0.0/26", "static1", "2017-07-25", "blackhole", preference=200,
              source="static"),
    RouteLine("198.19.0.7/32", "kernel1", "2017-08-05", "dev", iface="cali4712b101c8e",
              preference=10, source="inherit"),
]


class FakeView:
    def __init__(self) -> None:
        self.fail = False

    def status(self) -> StatusInfo:
        return StatusInfo("198.18.0.11", T0 - 3600, T0 - 60, version="0.1.0")

    def protocols(self) -> list[ProtocolInfo]:
        if self.fail:
            raise RuntimeError("boom")
        return [MESH, MESH2, GLOBAL_DOWN, *OTHERS]

    def routes(self) -> list[RouteLine]:
        return list(ROUTES)


VIEW = FakeView()
ROUTE_TEXT = (
    "1007-198.19.1.64/26     via 198.18.0.12 on eth0 [Mesh_198_18_0_12 05:12:02] * (100/0) [i]\n"
    " 198.19.0.0/26      blackhole [static1 2017-07-25] * (200)\n"
    " 198.19.0.7/32      dev cali4712b101c8e [kernel1 2017-08-05] * (10)\n"
    "0000 \n")


def test_view_satisfies_protocol() -> None:
    view: ctl.SpeakerView = FakeView()  # mypy checks the structural match
    assert view.status().router_id == "198.18.0.11"


@pytest.mark.parametrize("line, expected", [
    ("show route", ROUTE_TEXT),
    ("sh ro", ROUTE_TEXT),
    ("show route count", "0014 3 of 3 routes for 3 networks\n"),
    ("show route for 198.19.0.7", ROUTE_TEXT.splitlines(True)[2].replace(" ", "1007-", 1)
     + "0000 \n"),
    ("show route for 198.20.0.1", "8001 Network not in table\n"),
    ("show route protocol nope", "9001 nope is not a protocol\n"),
    ("show route protocol static1",
     "1007-198.19.0.0/26      blackhole [static1 2017-07-25] * (200)\n0000 \n"),
    ("show protocols Nope", "9002 Nope is not a protocol\n"),
    ('show protocols "Node_*"', "8003 No protocols match\n"),
    ("bogus", "9001 syntax error\n"),
    ("show interfaces", "9001 syntax error\n"),
    ("", "9001 syntax error\n"),
    ('show protocols "Mesh', "9001 Unterminated string\n"),
])
def test_answers(line: str, expected: str) -> None:
    assert answer(line, VIEW) == expected


def test_status_uses_view_times() -> None:
    text = answer("show status", VIEW, now=T0)
    lines = text.splitlines()
    assert lines[0] == "1000-BIRD 1.6.8"
    assert lines[1] == "1011-Router ID is 198.18.0.11"
    assert lines[-1] == "0013 Daemon is up and running"
    assert ctl.bird_time(T0 - 3600, T0, base=True) in lines[3]


def test_protocols_abbreviated() -> None:
    text = answer("sh pro", VIEW)
    assert text.startswith("2002-name     proto    table    state  since       info\n")
    assert "1002-Mesh_198_18_0_12 BGP      master   up     05:12:02    Established   \n" in text
    assert text.endswith("0000 \n")
    assert answer("sh pro a Mesh_198_18_0_12", VIEW) == answer(
        "show protocols all Mesh_198_18_0_12", VIEW)


# -- over real unix sockets ----------------------------------------------------
Client = Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


def run_with_server(tmp_path: Path, body: Callable[[str, Client], Awaitable[None]],
                    view: Any = VIEW, json_socket: bool = False) -> None:
    path = str(tmp_path / "run" / ("speaker.sock" if json_socket else "bird.ctl"))

    async def main() -> None:
        serve = ctl.serve_json if json_socket else ctl.serve_bird
        server = await serve(path, view)
        writers: list[asyncio.StreamWriter] = []

        async def client() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
            r, w = await asyncio.open_unix_connection(path)
            writers.append(w)
            return r, w
        try:
            await asyncio.wait_for(body(path, client), 20)
        finally:
            for w in writers:
                w.close()
            await ctl.stop(server, path)
        assert not os.path.exists(path)

    asyncio.run(main())


async def read_reply(r: asyncio.StreamReader) -> str:
    out = ""
    while True:
        line = (await r.readline()).decode()
        assert line, f"EOF mid-reply after {out!r}"
        out += line
        if line[:4].isdigit() and line[4] == " ":
            return out


async def ask(r: asyncio.StreamReader, w: asyncio.StreamWriter, line: str) -> str:
    w.write(line.encode() + b"\n")
    await w.drain()
    return await read_reply(r)


def test_session(tmp_path: Path) -> None:
    async def body(path: str, client: Client) -> None:
        r, w = await client()
        assert (await r.readline()).decode() == WELCOME
        assert await ask(r, w, "show route") == ROUTE_TEXT
        assert await ask(r, w, "show protocols all Mesh_198_18_0_12") == answer(
            "show protocols all Mesh_198_18_0_12", VIEW)
        assert (await ask(r, w, "show status")).endswith("0013 Daemon is up and running\n")
        assert await ask(r, w, "bogus") == "9001 syntax error\n"
        assert await ask(r, w, "\r") == "9001 syntax error\n"  # CRLF-terminated empty line
        assert await ask(r, w, "\xff\xfe nope") == "9001 syntax error\n"
        w.write(b"show route count\nshow route protocol static1 count\n")  # pipelined
        assert await read_reply(r) == "0014 3 of 3 routes for 3 networks\n"
        assert await read_reply(r) == "0014 1 of 3 routes for 3 networks\n"
        w.write(b"quit\n")
        assert await r.read() == b""

    run_with_server(tmp_path, body)


def test_oversized_and_eof_mid_line(tmp_path: Path) -> None:
    async def body(path: str, client: Client) -> None:
        r, w = await client()
        await r.readline()
        w.write(b"x" * (ctl.MAX_LINE * 5) + b"\n")
        assert await read_reply(r) == "9000 Command too long\n"
        w.write(b"show " + b"y" * (ctl.MAX_LINE + 10))  # too long, newline comes later
        await w.drain()
        await asyncio.sleep(0.05)
        assert await ask(r, w, "") == "9000 Command too long\n"
        assert await ask(r, w, "show route count") == "0014 3 of 3 routes for 3 networks\n"
        w.write(b"show route")  # no newline: never run
        w.write_eof()
        assert await r.read() == b""
        r2, w2 = await client()  # the server lives on
        assert (await r2.readline()).decode() == WELCOME

    run_with_server(tmp_path, body)


def test_concurrent_clients(tmp_path: Path) -> None:
    async def one(client: Client, i: int) -> None:
        r, w = await client()
        await r.readline()
        for _ in range(20):
            assert await ask(r, w, "show route" if i % 2 else "sh ro count") == (
                ROUTE_TEXT if i % 2 else "0014 3 of 3 routes for 3 networks\n")

    async def body(path: str, client: Client) -> None:
        # one idle client must not hold the others up
        idle_r, _ = await client()
        await idle_r.readline()
        await asyncio.gather(*(one(client, i) for i in range(12)))

    run_with_server(tmp_path, body)


def test_view_failure_is_an_error_reply(tmp_path: Path) -> None:
    view = FakeView()
    view.fail = True

    async def body(path: str, client: Client) -> None:
        r, w = await client()
        await r.readline()
        assert await ask(r, w, "show protocols") == "8008 Internal error\n"
        assert (await ask(r, w, "show status")).startswith("1000-")

    run_with_server(tmp_path, body, view=view)


def test_socket_modes_and_stale_replacement(tmp_path: Path) -> None:
    bird = tmp_path / "calico" / "bird.ctl"
    bird.parent.mkdir()
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(bird))  # bound, never listening: a dead daemon's socket
    stale.close()

    async def main() -> None:
        b = await ctl.serve_bird(str(bird), VIEW)
        j = await ctl.serve_json(str(tmp_path / "pybgp" / "speaker.sock"), VIEW)
        try:
            assert stat.S_IMODE(os.stat(bird).st_mode) == 0o660
            assert stat.S_IMODE(os.stat(tmp_path / "pybgp" / "speaker.sock").st_mode) == 0o600
            assert stat.S_IMODE(os.stat(tmp_path / "pybgp").st_mode) & 0o022 == 0
            assert sorted(os.listdir(bird.parent)) == ["bird.ctl"]  # no temp dir left
            with pytest.raises(ctl.SocketInUse, match="another process is listening"):
                await ctl.serve_bird(str(bird), VIEW)
        finally:
            await ctl.stop(b, str(bird))
            await ctl.stop(j, str(tmp_path / "pybgp" / "speaker.sock"))

    asyncio.run(main())
    assert not bird.exists()
    bird.write_text("not a socket")
    with pytest.raises(ctl.SocketInUse, match="not a socket"):
        asyncio.run(ctl.serve_bird(str(bird), VIEW))
    assert bird.read_text() == "not a socket"


def test_json_socket_round_trip(tmp_path: Path) -> None:
    async def body(path: str, client: Client) -> None:
        r, w = await client()

        async def get(req: bytes) -> Any:
            w.write(req + b"\n")
            await w.drain()
            return json.loads(await r.readline())

        st = (await get(b'{"get": "status"}'))["result"]
        assert st["router_id"] == "198.18.0.11" and st["started_at"] == T0 - 3600
        protos = (await get(b'{"get": "protocols"}'))["result"]
        assert [protocol_from_json(p) for p in protos][0] == ctl.dataclasses.replace(
            MESH, info="Established   ")
        assert protos[2]["info"] == "Active        Socket: Connection refused"
        routes = (await get(b'{"get":"routes"}'))["result"]
        assert [route_from_json(x) for x in routes] == ROUTES
        assert "error" in await get(b"not json")
        assert "error" in await get(b'{"get": "secrets"}')
        assert "error" in await get(b'["get"]')
        assert "error" in await get(b'{"get": ["status"]}')
        assert "too long" in (await get(b"{" * (ctl.MAX_LINE + 1)))["error"]

    run_with_server(tmp_path, body, json_socket=True)


# -- the CLI's clients -----------------------------------------------------------
def test_cli_clients(tmp_path: Path) -> None:
    async def body(path: str, client: Client) -> None:
        reply = await asyncio.to_thread(show.bird_query, path, "show route")
        assert show.birdc_text(reply) == "".join(
            ln[5:] if ln[4:5] in ("-", " ") and ln[:4].isdigit() else ln[1:]
            for ln in ROUTE_TEXT.splitlines(True) if not ln.startswith("0000"))
        count = await asyncio.to_thread(show.bird_query, path, "show route count")
        assert show.birdc_text(count) == "3 of 3 routes for 3 networks\n"
        err = await asyncio.to_thread(show.bird_query, path, "show protocols Nope")
        with pytest.raises(show.SpeakerError, match="Nope is not a protocol"):
            show.birdc_text(err)

    run_with_server(tmp_path, body)
    with pytest.raises(show.SpeakerNotRunning, match="no socket at"):
        show.bird_query(str(tmp_path / "nothing.ctl"), "show status")


def test_filter_json_routes() -> None:
    routes = ctl.to_jsonable(ROUTES)
    parsed = ctl.parse_command("show route for 198.19.0.7")
    assert [r["prefix"] for r in show.filter_routes(routes, parsed)] == ["198.19.0.7/32"]
    parsed = ctl.parse_command("show route protocol static1")
    assert [r["prefix"] for r in show.filter_routes(routes, parsed)] == ["198.19.0.0/26"]
    parsed = ctl.parse_command("show route 198.19.1.64/26")
    assert len(show.filter_routes(routes, parsed)) == 1
