"""End to end: the issue's second lab — 3 nodes × 3 pods, one ``pybgp
reflector``, the node-to-node mesh off — run as a user runs it (the real CLI
in subprocesses), with a GoBGP router beside it (``--peer`` keeps working).

Every pod pings every other (72 pairs) through routes only the reflector
carried; no node has a ``Mesh_`` session, each has its session to the
reflector Established (both ends say so); ``status``, ``exec`` and the SVG
show the reflector; killed, it is named in ``status`` while the nodes keep
its routes (graceful restart); ``down`` leaves nothing. An ``up`` killed
just after its reflector started is cleaned up by ``down`` too (the
reflector is journaled).
"""

from __future__ import annotations

import json
import signal
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
from lab_cli import LabCLI, assert_gone, recorded_processes

from pybgp.testing.cluster import wait_until
from pybgp.testing.procs import ProcessRecord

NODES = {"node-1": "198.18.0.11", "node-2": "198.18.0.12", "node-3": "198.18.0.13"}
RR = "198.18.0.241"
SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def rr_lab(tmp_path_factory: pytest.TempPathFactory, prefix: str, shm_before: set[str]
           ) -> Iterator[LabCLI]:
    base = tmp_path_factory.mktemp("rrlab")
    cli = LabCLI(base / "r", base / "tmp-r", prefix)
    try:
        out = cli.up("--nodes", "3", "--pods-per-node", "3", "--reflectors", "1",
                     "--peer", "gobgp").stdout
        assert "1 reflector (mesh off), peer gobgp" in out.splitlines()[0], out
        assert "✓ reflectors 1 ready at 198.18.0.241" in out and "mesh off" in out, out
        assert "6/6 sessions established (each reflector's 3/3 too)" in out, out
        yield cli
    finally:
        cli.run("down", check=False)


def test_all_pairs_ping_through_the_reflector_with_the_mesh_off(rr_lab: LabCLI) -> None:
    doc = rr_lab.status()
    assert doc["healthy"] and doc["mesh"] is False, json.dumps(doc, indent=1)
    for n in doc["nodes"]:  # the reflector and the router: nothing else, no Mesh_
        assert n["sessions"] == {f"Global_{RR.replace('.', '_')}": "Established",
                                 "Global_198_18_0_254": "Established"}, n
        assert n["expected_sessions"] == 2 and len(n["learned"]) == 3  # 2 blocks + router's
    [rr] = doc["reflectors"]
    assert (rr["name"], rr["address"], rr["expected_sessions"]) == ("rr-1", RR, 3)
    assert rr["sessions"] == {ip: "Established" for ip in NODES.values()}  # its own view
    # it holds each node's block once and reflects each to the two other nodes
    assert (rr["prefixes"], rr["paths"], rr["reflected"]) == (3, 3, 6)
    assert set(doc["peer"]["sessions"].values()) == {"Established"}
    matrix = doc["matrix"]
    assert matrix["pairs"] == 72 and matrix["ok"] == 72 and matrix["failed"] == []

    text = rr_lab.run("status").stdout
    assert "1 reflector (mesh off)" in text.splitlines()[0]
    rows = {line.split()[0]: line.split() for line in text.splitlines() if line.strip()}
    assert rows["rr-1"][:6] == ["rr-1", RR, "3/3", "3", "3", "6"]
    assert "NODE \\ REFLECTOR" in text and "72/72 pairs answer" in text and "✗" not in text


def test_exec_in_the_reflector_and_in_a_node(rr_lab: LabCLI) -> None:
    protocols = rr_lab.run("exec", "rr-1", "--", "pybgp", "show", "protocols").stdout
    for ip in NODES.values():
        row = next(line for line in protocols.splitlines()
                   if line.startswith(f"Node_{ip.replace('.', '_')} "))
        assert "Established" in row, protocols
    # BIRD's own client on the reflector's socket, from the environment exec sets
    birdcl = rr_lab.run("exec", "rr-1", "--", "sh", "-c",
                        'birdcl -s "$PYBGP_BIRD_SOCKET" show route').stdout
    assert birdcl.count(" via 198.18.0.1") == 3, birdcl
    node = rr_lab.run("exec", "node-1", "--", "pybgp", "show", "protocols").stdout
    assert "Mesh_" not in node and "Global_198_18_0_241" in node
    # reflected, next hop unchanged: straight to the node that owns the block
    kernel = rr_lab.run("exec", "node-1", "--", "ip", "route").stdout
    assert " via 198.18.0.12 dev eth0 proto bird" in kernel
    assert " via 198.18.0.13 dev eth0 proto bird" in kernel
    assert " via 198.18.0.241" not in kernel


def test_svg_draws_the_reflector_and_no_mesh(rr_lab: LabCLI, tmp_path: Path) -> None:
    svg = tmp_path / "rr.svg"
    rr_lab.run("status", "--no-ping", "--svg", str(svg))
    root = ET.parse(svg).getroot()
    ids = {g.get("id") for g in root.iter(f"{SVG}g")}
    assert ids == {"node-node-1", "node-node-2", "node-node-3", "reflector-rr-1", "peer-peer"}
    lines = {p.find(f"{SVG}title").text.split(":")[0]: p.get("stroke")
             for p in root.iter(f"{SVG}path")}
    assert lines == {f"{n} — {end}": "#2e7d32" for n in NODES for end in ("peer", "rr-1")}


def test_y_a_dead_reflector_is_named_and_its_routes_kept(rr_lab: LabCLI) -> None:
    """The reflector crashes (kill -9, a VM lost): status names it, with its
    log, and every pair still answers — the nodes keep its routes for the
    graceful-restart time."""
    record = ProcessRecord.from_dict(rr_lab.journal()["cluster"]["reflectors"]["rr-1"]
                                     ["reflector"])
    assert record.signal(signal.SIGKILL, group=False)
    wait_until(lambda: not record.alive(), 10, "the reflector gone")
    doc = rr_lab.status()
    assert not doc["healthy"]
    [rr] = doc["reflectors"]
    assert rr["error"].startswith("reflector on rr-1 exited") and "reflector.log" in rr["error"]
    for n in doc["nodes"]:
        assert n["sessions"]["Global_198_18_0_241"] != "Established"
        assert len(n["learned"]) == 3  # kept: graceful restart
    assert doc["matrix"]["ok"] == 72


def test_zz_down_leaves_nothing(rr_lab: LabCLI, shm_before: set[str]) -> None:
    journal = rr_lab.journal()
    assert set(journal["cluster"]["reflectors"]) == {"rr-1"}
    # etcd, GoBGP, three speakers, three agents (the reflector was killed above)
    assert len([r for r in recorded_processes(journal) if r.alive()]) == 8
    rr_lab.run("down")
    assert_gone(rr_lab, journal, shm_before)
    assert "nothing to remove" in rr_lab.run("down").stdout


def test_down_after_an_up_killed_with_its_reflector_running(tmp_path: Path, prefix: str,
                                                           shm_before: set[str]) -> None:
    cli = LabCLI(tmp_path / "k", tmp_path / "tmp-k", prefix)
    proc = cli.start_up("--nodes", "1", "--pods-per-node", "0", "--reflectors", "2")
    try:  # killed once the first reflector is journaled as running
        cli.wait_journal(proc, lambda j: any(
            r.get("reflector") for r in j.get("cluster", {}).get("reflectors", {}).values()))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    journal = cli.journal()
    assert journal["lab"]["state"] == "building"
    assert [r for r in recorded_processes(journal) if r.alive()], journal  # etcd, rr-1…
    cli.run("down")
    assert_gone(cli, journal, shm_before)
