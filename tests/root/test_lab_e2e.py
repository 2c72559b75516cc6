"""End to end: ``pybgp lab`` run as a user runs it, as subprocesses of the real CLI.

One 3 nodes × 3 pods lab (full mesh, a BIRD 2 router, an agent per node) is
shared by the module: every pod pings every other pod, ``exec`` shows the
seed document's routes, pods come and go through the CNI plugin, a
NetworkPolicy applied with ``pybgp apply -f`` inside a node turns exactly
the cells it denies red (and a pod added meanwhile gets its policy), and
deleting it turns them green again; a second lab (GoBGP) runs beside it
without touching it, and ``down`` leaves nothing: no namespace, no process,
no file outside the lab dir. A SIGKILLed ``up`` and an ``up`` whose router
fails are cleaned up by ``down`` too.

Namespaces carry this test session's prefix, so the session's final sweep
would catch anything a failed test left.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
from lab_cli import PYBGP, LabCLI, assert_gone, lab_processes, recorded_processes

from pybgp.testing.cluster import wait_until
from pybgp.testing.names import cali_name
from pybgp.testing.netns import list_namespaces
from pybgp.testing.procs import ProcessRecord

SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, prefix: str, shm_before: set[str]
        ) -> Iterator[LabCLI]:
    if os.geteuid() != 0:
        pytest.fail("pybgp lab needs root", pytrace=False)
    base = tmp_path_factory.mktemp("lab")
    cli = LabCLI(base / "a", base / "tmp-a", prefix)
    try:
        cli.up("--nodes", "3", "--pods-per-node", "3", "--peer", "bird")
        yield cli
    finally:
        cli.run("down", check=False)


# ----- the lab up and all green -------------------------------------------------------------
def test_up_reports_each_step_and_everything_is_green(lab: LabCLI) -> None:
    out = lab.journal()
    assert out["lab"]["state"] == "up"
    doc = lab.status()
    assert doc["healthy"], json.dumps(doc, indent=1)
    assert [n["name"] for n in doc["nodes"]] == ["node-1", "node-2", "node-3"]
    for n in doc["nodes"]:
        assert n["expected_sessions"] == 3 and set(n["sessions"].values()) == {"Established"}
        assert len(n["blocks"]) == 1 and len(n["local_routes"]) == 3
        agent = n["agent"]  # asked from inside the node: /readiness and /metrics
        assert agent["ready"] and agent["settled"], agent
        assert (agent["endpoints"], agent["policies"]) == (3, 0)
    matrix = doc["matrix"]
    assert matrix["pairs"] == 9 * 8 and matrix["ok"] == 72 and matrix["failed"] == []
    assert set(doc["peer"]["sessions"]) == {"198.18.0.11", "198.18.0.12", "198.18.0.13"}
    assert set(doc["peer"]["sessions"].values()) == {"Established"}

    text = lab.run("status").stdout
    assert "72/72 pairs answer" in text and "✗" not in text and text.count("✓") == 72
    rows = [line.split() for line in text.splitlines() if line.startswith("node-")]
    assert [r[6:9] for r in rows] == [["ready", "3/3", "0/0"]] * 3  # AGENT ENDPOINTS POLICIES
    for node in ("node-1", "node-2", "node-3"):
        log = lab.dir / node / "agent.log"
        assert "dataplane programmed" in log.read_text(), log


def test_exec_shows_the_routes_of_the_seed_document(lab: LabCLI) -> None:
    doc = lab.status("--no-ping")
    node1 = doc["nodes"][0]
    pods = doc["pods"]["node-1"]
    out = lab.run("exec", "node-1", "--", "pybgp", "show", "routes").stdout
    rows = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    block = node1["blocks"][0]
    assert "blackhole" in rows[block]
    for p in pods:
        assert f"dev {cali_name('default', p['name'])}" in rows[f"{p['address']}/32"]
        assert ipaddress.ip_address(p["address"]) in ipaddress.ip_network(block)
    for other in doc["nodes"][1:]:
        assert f"via {other['address']} on eth0" in rows[other["blocks"][0]]
    assert "via 198.18.0.254 on eth0" in rows["198.18.100.0/24"]
    protocols = lab.run("exec", "node-1", "--", "pybgp", "show", "protocols").stdout
    for name in ("Mesh_198_18_0_12", "Mesh_198_18_0_13", "Global_198_18_0_254"):
        assert name in protocols
    assert protocols.count("Established") == 3
    # the node's environment: its own name and the lab's etcd
    env = lab.run("exec", "node-2", "--", "sh", "-c", "echo $NODENAME $ETCD_ENDPOINTS").stdout
    assert env.split()[0] == "node-2" and env.split()[1].startswith("unix://")
    # in the router nothing of a node's is set, not even what the caller had
    mine = dict(lab.env, NODENAME="elsewhere", PYBGP_BIRD_SOCKET="/run/calico/bird.ctl",
                PYBGP_CONFIG="/etc/pybgp/pybgp.cfg")
    env = lab.run("exec", "peer", "--", "sh", "-c", "echo ${NODENAME:-none} "
                  "${PYBGP_BIRD_SOCKET:-none} ${PYBGP_CONFIG:-none} $ETCD_ENDPOINTS",
                  env=mine).stdout.split()
    assert env[:3] == ["none"] * 3 and env[3].startswith("unix://"), env
    nodes = lab.run("exec", "node-2", "--", "pybgp", "get", "nodes").stdout
    assert all(n in nodes for n in ("node-1", "node-2", "node-3"))
    # exit status and output of the command itself
    assert lab.run("exec", "node-1", "--", "false", check=False).returncode == 1
    bad = lab.run("exec", "node-9", "--", "true", check=False)
    assert bad.returncode == 1 and "no node, pod, reflector or peer 'node-9'" in bad.stderr


def test_pod_add_and_del_through_the_cni_plugin(lab: LabCLI) -> None:
    added = lab.run("pod", "add", "node-2", "extra").stdout
    address = added.split(": ")[1].split()[0]
    assert lab.run("exec", "pod-1-1", "--", "ping", "-c", "1", "-W", "2", address,
                   check=False).returncode == 0
    routes = lab.run("exec", "node-2", "--", "pybgp", "show", "routes").stdout
    assert f"{address}/32" in routes
    again = lab.run("pod", "add", "node-2", "extra", check=False)
    assert again.returncode == 1 and "exists" in again.stderr
    wrong = lab.run("pod", "del", "node-1", "extra", check=False)
    assert wrong.returncode == 1 and "is on node-2" in wrong.stderr

    lab.run("pod", "del", "node-2", "extra")
    pods = lab.status("--no-ping")["pods"]["node-2"]
    assert "extra" not in [p["name"] for p in pods]
    assert not [n for n in list_namespaces() if n.endswith("-node-2-extra")]
    # the address is gone: inside node-2's block, so it is blackholed there, not answered
    assert lab.run("exec", "pod-1-1", "--", "ping", "-c", "1", "-W", "1", address,
                   check=False).returncode != 0
    ipam = lab.run("exec", "node-2", "--", "pybgp", "ipam", "show").stdout
    assert "9 (0%)" in ipam  # nine pods, the tenth address released


def test_pods_added_side_by_side_are_all_in_the_journal(lab: LabCLI) -> None:
    """Each `pod add` rewrites the whole journal: two at once take turns (the
    lab's lock), so neither writes a journal without the other's pod, and
    `down` would remove both."""
    procs = [subprocess.Popen(lab.argv("pod", "add", node, name), env=lab.env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              stdin=subprocess.DEVNULL)
             for node, name in (("node-1", "twin-a"), ("node-3", "twin-b"))]
    outs = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert {"twin-a", "twin-b"} <= set(lab.journal()["cluster"]["pods"])
    lab.run("pod", "del", "node-1", "twin-a")
    lab.run("pod", "del", "node-3", "twin-b")
    assert not {"twin-a", "twin-b"} & set(lab.journal()["cluster"]["pods"])


POLICY = """\
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: pod-2-1-from-node-1, namespace: default}
spec:
  selector: pod == 'pod-2-1'
  types: [Ingress]
  ingress:
  - action: Allow
    source: {selector: node == 'node-1'}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: pod-3-3-not-to-node-1, namespace: default}
spec:
  selector: pod == 'pod-3-3'
  types: [Egress]
  egress:
  - action: Deny
    destination: {selector: node == 'node-1'}
  - action: Allow
"""
# pod-2-1 takes only node-1's pods (same node and node-3 go red); pod-3-3 reaches
# nothing on node-1. Every other cell stays green.
RED = ({(src, "pod-2-1") for src in ("pod-2-2", "pod-2-3", "pod-3-1", "pod-3-2", "pod-3-3")}
       | {("pod-3-3", dst) for dst in ("pod-1-1", "pod-1-2", "pod-1-3")})


def test_a_network_policy_turns_chosen_cells_red(lab: LabCLI, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    applied = lab.run("exec", "node-1", "--", "pybgp", "apply", "-f", str(policy)).stdout
    try:
        assert applied.count("created") == 2, applied
        doc = lab.status()  # measured once every agent programs what etcd holds
        assert not doc["healthy"]
        agents = {n["name"]: n["agent"] for n in doc["nodes"]}
        assert {n: (a["policies"], a["settled"]) for n, a in agents.items()} == {
            "node-1": (0, True), "node-2": (1, True), "node-3": (1, True)}
        matrix = doc["matrix"]
        assert {tuple(p) for p in matrix["failed"]} == RED
        assert matrix["ok"] == 72 - len(RED) == 64

        # a pod added now is labelled (node=node-1) and programmed on its node
        # before `pod add` returns; the selectors node == 'node-1' on node-2 and
        # node-3 take its address in (their ipsets), so it gets node-1's cells
        added = lab.run("pod", "add", "node-1", "newcomer").stdout
        assert "programmed by its agent" in added
        address = added.split(": ")[1].split()[0]
        for node in ("node-2", "node-3"):
            wait_until(lambda node=node: address in lab.run(
                "exec", node, "--", "ipset", "list").stdout.split(), 30,
                f"{address} in a selector's ipset on {node}")
        pod_2_1 = next(p["address"] for p in doc["pods"]["node-2"] if p["name"] == "pod-2-1")
        for src, dst, answers in (("newcomer", pod_2_1, True), ("pod-3-3", address, False)):
            ping = lab.run("exec", src, "--", "ping", "-c", "1", "-W", "1", dst, check=False)
            assert (ping.returncode == 0) == answers, (src, dst)
        lab.run("pod", "del", "node-1", "newcomer")
    finally:
        deleted = lab.run("exec", "node-1", "--", "pybgp", "delete", "-f", str(policy),
                          check=False)
    assert deleted.returncode == 0 and deleted.stdout.count("deleted") == 2, deleted
    doc = lab.status()
    assert doc["healthy"] and doc["matrix"]["ok"] == 72, json.dumps(doc["matrix"]["failed"])
    assert {n["agent"]["policies"] for n in doc["nodes"]} == {0}


def test_svg_picture(lab: LabCLI, tmp_path: Path) -> None:
    svg = tmp_path / "lab.svg"
    out = lab.run("status", "--no-ping", "--svg", str(svg)).stdout
    assert f"wrote {svg}" in out
    root = ET.parse(svg).getroot()
    ids = {g.get("id") for g in root.iter(f"{SVG}g")}
    assert ids == {"node-node-1", "node-node-2", "node-node-3", "peer-peer"}
    strokes = [p.get("stroke") for p in root.iter(f"{SVG}path")]
    assert len(strokes) == 6 and set(strokes) == {"#2e7d32"}  # 3 mesh + 3 peer, all up


def test_a_second_lab_beside_the_first(lab: LabCLI, tmp_path: Path, prefix: str,
                                       shm_before: set[str]) -> None:
    other = LabCLI(tmp_path / "b", tmp_path / "tmp-b", prefix)
    try:
        out = other.up("--nodes", "2", "--pods-per-node", "1", "--peer", "gobgp").stdout
        assert "✓ routes" in out
        mine, theirs = lab.journal(), other.journal()
        assert mine["topology"]["run_id"] != theirs["topology"]["run_id"]
        assert not set(mine["topology"]["namespaces"]) & set(theirs["topology"]["namespaces"])
        assert mine["etcd"]["client_port"] != theirs["etcd"]["client_port"]
        doc = other.status()
        assert doc["healthy"] and doc["matrix"]["ok"] == 2, json.dumps(doc, indent=1)
        assert set(doc["peer"]["sessions"].values()) == {"Established"}
        assert lab.status("--no-ping")["healthy"]
    finally:
        journal = other.journal() if (other.dir / "lab.json").exists() else None
        other.run("down")
    assert journal is not None
    assert_gone(other, journal, shm_before)
    assert lab.status()["healthy"]  # the first lab is untouched


def test_zz_down_leaves_nothing(lab: LabCLI, shm_before: set[str]) -> None:
    """Last in the module: the shared lab goes."""
    journal = lab.journal()
    assert len(recorded_processes(journal)) == 8  # etcd, BIRD, three speakers, three agents
    assert lab_processes(lab.dir)
    out = lab.run("down").stdout
    assert "removed" in out
    assert_gone(lab, journal, shm_before)
    assert "nothing to remove" in lab.run("down").stdout  # idempotent
    status = lab.run("status", check=False)
    assert status.returncode == 1 and "no lab in" in status.stderr


# ----- failures: a killed up, a failing step -------------------------------------------------
def test_down_after_a_killed_up(tmp_path: Path, prefix: str, shm_before: set[str]) -> None:
    cli = LabCLI(tmp_path / "k", tmp_path / "tmp-k", prefix)
    proc = cli.start_up("--nodes", "2", "--pods-per-node", "3")
    try:  # kill it in the middle of the pods step: speakers and etcd run, pods half made
        cli.wait_journal(proc, lambda j: j.get("cluster", {}).get("pods"))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    journal = cli.journal()
    assert journal["lab"]["state"] == "building"
    # etcd, two speakers, two agents
    assert len([r for r in recorded_processes(journal) if r.alive()]) == 5
    cli.run("down")
    assert_gone(cli, journal, shm_before)


def test_a_failing_step_is_named_and_down_removes_the_rest(tmp_path: Path, prefix: str,
                                                           shm_before: set[str]) -> None:
    cli = LabCLI(tmp_path / "f", tmp_path / "tmp-f", prefix)
    fake = tmp_path / "fakebin"
    fake.mkdir()
    (fake / "bird").write_text("#!/bin/sh\necho 'bird: cannot start here' >&2\nexit 1\n")
    (fake / "bird").chmod(0o755)
    env = dict(cli.env, PATH=f"{fake}:{os.environ['PATH']}")
    proc = cli.up("--nodes", "2", "--pods-per-node", "1", "--peer", "bird", check=False,
                  env=env)
    assert proc.returncode == 1
    assert "✗ peer failed" in proc.stdout and "bird exited" in proc.stdout
    assert "step 'peer' failed" in proc.stderr
    assert f"pybgp lab down --dir {cli.dir}" in proc.stdout
    journal = cli.journal()
    assert journal["lab"]["state"] == "failed" and journal["lab"]["failed_step"] == "peer"
    assert len(journal["topology"]["namespaces"]) == 4  # fabric, two nodes, the router
    again = cli.up("--nodes", "1", check=False)
    assert again.returncode == 1 and "a lab already lives in" in again.stderr
    cli.run("down")
    assert_gone(cli, journal, shm_before)


def test_a_daemon_that_dies_during_up_is_named_at_once(tmp_path: Path, prefix: str,
                                                      shm_before: set[str]) -> None:
    """A daemon that exits after its READY=1 stops the wait it would hold up
    (endpoints, sessions or routes), which names it and quotes its log, rather
    than a timeout 90 s later naming only what is missing."""
    cli = LabCLI(tmp_path / "d", tmp_path / "tmp-d", prefix)
    proc = cli.start_up("--nodes", "2", "--pods-per-node", "2", output=True)
    try:  # the agents are ready once pods are being made: kill node-2's
        agent = cli.wait_journal(proc, lambda j: j.get("cluster", {}).get("pods") and
                                 j["cluster"]["nodes"]["node-2"]["agent"])
        assert agent and ProcessRecord.from_dict(agent).signal(signal.SIGKILL, group=False)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 1, out + err
    assert "agent on node-2 exited with -9" in err and "(log: " in err, err
    failed = cli.journal()["lab"]["failed_step"]
    assert failed in ("endpoints", "sessions", "routes") and f"✗ {failed} failed" in out, out
    journal = cli.journal()
    cli.run("down")
    assert_gone(cli, journal, shm_before)


def test_down_while_up_still_builds(tmp_path: Path, prefix: str,
                                    shm_before: set[str]) -> None:
    """`down` in another terminal while `up` is still at work: it stops that
    `up` first (by its recorded PID and start time), or `up` would go on
    making namespaces and processes after `down` had removed the rest."""
    cli = LabCLI(tmp_path / "w", tmp_path / "tmp-w", prefix)
    proc = cli.start_up("--nodes", "2", "--pods-per-node", "3")
    try:
        cli.wait_journal(proc, lambda j: j.get("cluster", {}).get("pods"))
        assert proc.poll() is None, "up finished before down could race it"
        journal = cli.journal()  # its run id names every namespace it makes, now or later
        # a second `up` in the same directory is refused and touches nothing
        second = cli.up("--nodes", "1", check=False)
        assert second.returncode == 1, second
        assert f"another pybgp lab command is at work in {cli.dir}" in second.stderr
        assert cli.journal()["lab"]["builder"]["pid"] == proc.pid
        out = cli.run("down").stdout
        assert proc.wait(10) != 0  # stopped, not finished
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert f"'pybgp lab up' still building it (pid {proc.pid})" in out, out
    assert_gone(cli, journal, shm_before)


def test_up_refuses_before_making_anything(tmp_path: Path) -> None:
    target = tmp_path / "nonroot"
    proc = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                           PYBGP, "lab", "up", "--dir", str(target)], capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 1 and "pybgp lab up needs root" in proc.stderr, proc
    assert not target.exists()
    # as root, a directory too long for its sockets, or one it cannot make, is
    # one line naming it, not a traceback
    deep = tmp_path / ("d" * 100)
    proc = subprocess.run([PYBGP, "lab", "up", "--dir", str(deep)], capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 1 and proc.stderr.startswith(f"error: --dir {deep}: the socket "
                                                           "path "), proc.stderr
    assert "longer than 107 bytes" in proc.stderr and not deep.exists()
    proc = subprocess.run([PYBGP, "lab", "up", "--dir", "/proc/pybgp-lab"],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 1 and proc.stderr.startswith(
        "error: cannot make the lab's directory /proc/pybgp-lab: "), proc.stderr


def test_the_readme_demo(tmp_path: Path, shm_before: set[str]) -> None:
    """`./scripts/setup.sh --demo` ends in this: the lab up, shown, and down again."""
    directory = tmp_path / "demo"
    env = dict(os.environ, TMPDIR=str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    proc = subprocess.run([sys.executable, "-m", "pybgp.demo", "--dir", str(directory)],
                          capture_output=True, text=True, timeout=300, env=env,
                          cwd=Path(__file__).resolve().parents[2], stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    routes = out.split("$ pybgp lab exec node-1 -- pybgp show routes")[1].split("$ ")[0]
    kinds = [line.split()[1] for line in routes.splitlines() if line.strip()]
    assert kinds.count("blackhole") == 1 and kinds.count("dev") == 2
    assert kinds.count("via") == 3  # two other nodes' blocks and the router's network
    assert "field spec.cidr: invalid CIDR '198.19.0.0/33'" in proc.stderr
    green, policy = out.split("== a NetworkPolicy")
    assert "30/30 pairs answer" in green and "✗" not in green
    matrix = policy.split("$ pybgp lab status")[1].split("$ ")[0]
    rows = [line.split() for line in matrix.splitlines() if line[:1].isdigit()]
    red = {(r[1], rows[i][1]) for r in rows for i, cell in enumerate(r[2:]) if cell == "✗"}
    assert red == {("pod-2-2", "pod-2-1"), ("pod-3-1", "pod-2-1"), ("pod-3-2", "pod-2-1")}
    assert "27/30 pairs answer" in matrix
    assert "NetworkPolicy default/pod-2-1-from-node-1 deleted" in policy
    assert "demo finished" in out and not directory.exists()
    assert list((tmp_path / "tmp").iterdir()) == []


def test_the_demo_piped_to_head_still_removes_its_lab(tmp_path: Path, prefix: str,
                                                      shm_before: set[str]) -> None:
    """`./scripts/demo.sh | head`: once the reader has gone, the demo's next
    line fails to print; it must still run `pybgp lab down`."""
    cli = LabCLI(tmp_path / "demo", tmp_path / "tmp", prefix)
    proc = subprocess.Popen([sys.executable, "-m", "pybgp.demo", "--dir", str(cli.dir)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=cli.env, cwd=Path(__file__).resolve().parents[2],
                            stdin=subprocess.DEVNULL)
    assert proc.stdout is not None and proc.stderr is not None
    try:
        for line in proc.stdout:  # the lab is up: its summary follows
            if line.startswith("lab up in "):
                break
        else:
            raise AssertionError(f"the demo ended before its lab was up: {proc.stderr.read()}")
        journal = cli.journal()
        proc.stdout.close()  # as `head` does once it has its lines
        err = proc.stderr.read()
        proc.wait(120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        subprocess.run([PYBGP, "lab", "down", "--dir", str(cli.dir)], capture_output=True,
                       stdin=subprocess.DEVNULL, check=False)
    assert proc.returncode == 1, err
    assert "Traceback" not in err, err
    assert_gone(cli, journal, shm_before)
