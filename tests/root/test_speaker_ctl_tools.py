"""Real clients against the speaker's control sockets (a fake view served from
tmp_path): Debian's ``birdcl``/``birdc`` (BIRD 2.0.12, talking to our BIRD
1.6-format server), ``prometheus-bird-exporter`` (1.4, v1 format) and the
``pybgp show|status`` executables, including ``-o json`` and the error when
the speaker is not running.

Quirks of birdcl 2.x seen here: it prints the welcome text ("BIRD 1.6.8
ready.") before the reply, exits 1 when the reply is an error (code >= 8000),
and rejects words it does not know ("No such command") without sending them.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from pybgp.speaker import ctl
from pybgp.speaker.birdfmt import BgpStatus, ProtocolInfo, RouteStats, bird_time
from pybgp.speaker.birdroutes import BgpAttrs, RouteLine

NOW = time.time()
SINCE = bird_time(NOW - 300, NOW)
PYBGP = str(Path(sys.executable).parent / "pybgp")

PROTOCOLS = [
    ProtocolInfo(
        name="Mesh_198_18_0_12", proto="BGP", state="up", since=SINCE,
        description="Connection to BGP peer", output_filter="packet_bgp",
        stats=RouteStats(imported=1, exported=2, preferred=1),
        bgp=BgpStatus(state="Established", neighbor_address="198.18.0.12", neighbor_as=64512,
                      neighbor_id="198.18.0.12", neighbor_caps=("refresh", "restart-able", "AS4"),
                      session=("internal", "multihop", "AS4"), source_address="198.18.0.11",
                      hold_timer=(215, 240), keepalive_timer=(43, 80))),
    ProtocolInfo(
        name="Global_198_18_0_1", proto="BGP", state="start", since=SINCE,
        bgp=BgpStatus(state="Active", neighbor_address="198.18.0.1", neighbor_as=64513,
                      last_error="Socket: Connection refused", connect_delay=(3, 5))),
    ProtocolInfo(
        name="Node_198_18_0_40", proto="BGP", state="up", since=SINCE,
        bgp=BgpStatus(state="Established", neighbor_address="198.18.0.40", neighbor_as=64600,
                      session=("external", "AS4"))),
    *(ProtocolInfo(name=n, proto=t, state="up", since=SINCE,
                   stats=RouteStats(imported=k, preferred=k))
      for n, t, k in (("kernel1", "Kernel", 1), ("static1", "Static", 1),
                      ("device1", "Device", 0), ("direct1", "Direct", 0))),
]
ROUTES = [
    RouteLine("198.19.1.64/26", "Mesh_198_18_0_12", SINCE, "via", "198.18.0.12", "eth0",
              bgp=BgpAttrs(next_hop="198.18.0.12")),
    RouteLine("198.19.0.0/26", "static1", SINCE, "blackhole", preference=200, source="static"),
    RouteLine("198.19.0.7/32", "kernel1", SINCE, "dev", iface="cali4712b101c8e",
              preference=10, source="inherit"),
]


class View:
    def status(self) -> ctl.StatusInfo:
        return ctl.StatusInfo("198.18.0.11", NOW - 600, NOW - 60, version="0.1.0")

    def protocols(self) -> list[ProtocolInfo]:
        return list(PROTOCOLS)

    def routes(self) -> list[RouteLine]:
        return list(ROUTES)


@pytest.fixture
def sockets(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """The BIRD and JSON sockets served on an event loop in a thread."""
    bird = str(tmp_path / "calico" / "bird.ctl")
    js = str(tmp_path / "pybgp" / "speaker.sock")
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start() -> list[asyncio.Server]:
        return [await ctl.serve_bird(bird, View()), await ctl.serve_json(js, View())]

    servers = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    try:
        yield bird, js
    finally:
        async def stop() -> None:
            await ctl.stop(servers[0], bird)
            await ctl.stop(servers[1], js)

        asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def run(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=20,
                          stdin=subprocess.DEVNULL, env=env)


def need(binary: str, package: str) -> str:
    path = shutil.which(binary)
    if path is None:
        pytest.fail(f"{binary} not found: install the Debian package {package}", pytrace=False)
    return path


PROTO_TABLE = (
    "name     proto    table    state  since       info\n"
    f"Mesh_198_18_0_12 BGP      master   up     {SINCE}    Established   \n"
    f"Global_198_18_0_1 BGP      master   start  {SINCE}    Active        "
    "Socket: Connection refused\n"
    f"Node_198_18_0_40 BGP      master   up     {SINCE}    Established   \n"
    f"kernel1  Kernel   master   up     {SINCE}    \n"
    f"static1  Static   master   up     {SINCE}    \n"
    f"device1  Device   master   up     {SINCE}    \n"
    f"direct1  Direct   master   up     {SINCE}    \n")
ROUTE_TABLE = (
    f"198.19.1.64/26     via 198.18.0.12 on eth0 [Mesh_198_18_0_12 {SINCE}] * (100/0) [i]\n"
    f"198.19.0.0/26      blackhole [static1 {SINCE}] * (200)\n"
    f"198.19.0.7/32      dev cali4712b101c8e [kernel1 {SINCE}] * (10)\n")
HELLO = "BIRD 1.6.8 ready.\n"


def test_birdcl(sockets: tuple[str, str]) -> None:
    birdcl = need("birdcl", "bird2")
    bird, _ = sockets

    def cl(*words: str) -> subprocess.CompletedProcess[str]:
        return run(birdcl, "-s", bird, *words)

    r = cl("show", "protocols")
    assert (r.returncode, r.stdout, r.stderr) == (0, HELLO + PROTO_TABLE, "")
    r = cl("show", "protocols", "all", "Mesh_198_18_0_12")
    assert r.returncode == 0
    assert r.stdout.splitlines()[1:3] == [PROTO_TABLE.splitlines()[0],
                                          PROTO_TABLE.splitlines()[1]]
    assert "  Routes:         1 imported, 2 exported, 1 preferred\n" in r.stdout
    assert "  BGP state:          Established\n    Neighbor address: 198.18.0.12\n" in r.stdout
    assert "    Hold timer:       215/240\n    Keepalive timer:  43/80\n\n" in r.stdout
    r = cl("show", "route")
    assert (r.returncode, r.stdout) == (0, HELLO + ROUTE_TABLE)
    r = cl("show", "route", "count")
    assert (r.returncode, r.stdout) == (0, HELLO + "3 of 3 routes for 3 networks\n")
    r = cl("show", "status")
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    assert lines[:3] == ["BIRD 1.6.8 ready.", "BIRD 1.6.8", "Router ID is 198.18.0.11"]
    assert lines[3].startswith("Current server time is ")
    assert lines[4] == f"Last reboot on {bird_time(NOW - 600, NOW, base=True)}"
    assert lines[-1] == "Daemon is up and running"
    r = cl("sh", "pro")  # birdcl expands abbreviations itself
    assert (r.returncode, r.stdout) == (0, HELLO + PROTO_TABLE)
    r = cl("show", "route", "for", "198.19.0.9")
    assert r.stdout == HELLO + ROUTE_TABLE.splitlines(True)[1]  # the /26 blackhole
    r = cl("show", "protocols", "Nope")  # an error reply: birdcl prints it and exits 1
    assert (r.returncode, r.stdout) == (1, HELLO + "Nope is not a protocol\n")
    r = run(need("birdc", "bird2"), "-s", bird, "show", "route", "count")
    assert (r.returncode, r.stdout) == (0, HELLO + "3 of 3 routes for 3 networks\n")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_prometheus_bird_exporter(sockets: tuple[str, str], tmp_path: Path) -> None:
    exporter = need("prometheus-bird-exporter", "prometheus-bird-exporter")
    bird, _ = sockets
    port = free_port()
    log = (tmp_path / "exporter.log").open("w")
    proc = subprocess.Popen(
        [exporter, "-bird.socket", bird, "-bird.ipv6=false",
         "-web.listen-address", f"127.0.0.1:{port}"],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as rsp:
                    body = rsp.read().decode()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.1)
    finally:
        proc.kill()
        proc.wait(10)
        log.close()
    metrics = {line.rsplit(" ", 1)[0]: line.rsplit(" ", 1)[1]
               for line in body.splitlines() if line.startswith("bird_")}
    labels = 'export_filter="packet_bgp",import_filter="ACCEPT",ip_version="4"'
    mesh = f'{labels},name="Mesh_198_18_0_12",proto="BGP"'
    assert metrics[f'bird_protocol_up{{{mesh},state="Established"}}'] == "1"
    assert metrics[f"bird_protocol_prefix_import_count{{{mesh}}}"] == "1"
    assert metrics[f"bird_protocol_prefix_export_count{{{mesh}}}"] == "2"
    assert metrics[f"bird_protocol_prefix_preferred_count{{{mesh}}}"] == "1"
    # quirk (the same with BIRD 1.6): a since of HH:MM:SS is read as a duration
    h, m, sec = (int(x) for x in SINCE.split(":"))
    assert metrics[f"bird_protocol_uptime{{{mesh}}}"] == str(h * 3600 + m * 60 + sec)
    down = [k for k in metrics if k.startswith("bird_protocol_up{")
            and 'name="Global_198_18_0_1"' in k]
    assert len(down) == 1 and metrics[down[0]] == "0"
    assert any('name="kernel1",proto="Kernel"' in k for k in metrics)


def test_pybgp_show_and_status(sockets: tuple[str, str], tmp_path: Path) -> None:
    bird, js = sockets
    env = {**os.environ, "PYBGP_BIRD_SOCKET": bird, "PYBGP_SPEAKER_SOCKET": js}
    r = run(PYBGP, "show", "routes", env=env)
    assert (r.returncode, r.stdout, r.stderr) == (0, ROUTE_TABLE, "")
    r = run(PYBGP, "show", "routes", "--socket", bird, "for", "198.19.1.70")
    assert (r.returncode, r.stdout) == (0, ROUTE_TABLE.splitlines(True)[0])
    r = run(PYBGP, "show", "routes", "all", env=env)
    assert r.returncode == 0 and "\tBGP.next_hop: 198.18.0.12\n" in r.stdout
    r = run(PYBGP, "show", "routes", "count", env=env)
    assert r.stdout == "3 of 3 routes for 3 networks\n"
    r = run(PYBGP, "show", "routes", "-o", "json", "protocol", "static1", env=env)
    assert r.returncode == 0
    routes = json.loads(r.stdout)
    assert [(x["prefix"], x["dest"]) for x in routes] == [("198.19.0.0/26", "blackhole")]

    r = run(PYBGP, "show", "protocols", env=env)
    assert (r.returncode, r.stdout) == (0, PROTO_TABLE)
    r = run(PYBGP, "show", "protocols", "Mesh*", env=env)
    assert r.stdout == "".join(PROTO_TABLE.splitlines(True)[:2])
    r = run(PYBGP, "show", "protocols", "Nope", env=env)
    assert (r.returncode, r.stdout, r.stderr) == (1, "", "error: Nope is not a protocol\n")
    r = run(PYBGP, "show", "protocols", "-o", "json", "Mesh_198_18_0_12", env=env)
    [mesh] = json.loads(r.stdout)
    assert mesh["bgp"]["state"] == "Established" and mesh["info"].strip() == "Established"

    r = run(PYBGP, "status", env=env)
    assert r.returncode == 0
    assert r.stdout.startswith("Calico process is running.\n\nIPv4 BGP status\n")
    table = r.stdout.splitlines()[3:]
    assert table[1].split("|")[1:-1] == [
        " PEER ADDRESS ", "     PEER TYPE     ", " STATE ", "  SINCE   ",
        "              INFO              "]
    assert [c.strip() for c in table[3].split("|")[1:-1]] == [
        "198.18.0.12", "node-to-node mesh", "up", SINCE, "Established"]
    assert [c.strip() for c in table[4].split("|")[1:4]] == ["198.18.0.1", "global", "start"]
    assert [c.strip() for c in table[6].split("|")[1:3]] == ["198.18.0.40", "node specific"]
    r = run(PYBGP, "status", "-o", "json", "--json-socket", js)
    peers = json.loads(r.stdout)
    assert peers[0] == {"peer_address": "198.18.0.12", "peer_type": "node-to-node mesh",
                        "state": "up", "since": SINCE, "info": "Established"}
    assert [p["peer_type"] for p in peers] == ["node-to-node mesh", "global", "node specific"]


def test_pybgp_speaker_not_running(tmp_path: Path) -> None:
    env = {**os.environ, "PYBGP_BIRD_SOCKET": str(tmp_path / "bird.ctl"),
           "PYBGP_SPEAKER_SOCKET": str(tmp_path / "speaker.sock")}
    for argv in (("show", "routes"), ("show", "protocols", "-o", "json"), ("status",)):
        r = run(PYBGP, *argv, env=env)
        sock = tmp_path / ("bird.ctl" if argv[-1] in ("routes", "protocols")
                           else "speaker.sock")
        assert (r.returncode, r.stdout) == (1, "")
        assert r.stderr == f"error: pybgp speaker is not running (no socket at {sock})\n"
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(tmp_path / "bird.ctl"))  # a dead speaker's socket file
    dead.close()
    r = run(PYBGP, "show", "routes", env=env)
    assert (r.returncode, r.stderr) == (
        1, f"error: pybgp speaker is not running (nobody listening on {tmp_path}/bird.ctl)\n")
