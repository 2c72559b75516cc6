"""The lab's external BGP router: a real BIRD 2 or GoBGP in a namespace of its own.

The router peers (eBGP, AS 64513) with every node, originates
``198.18.100.0/24`` (``198.18.100.1`` is on its loopback), and — BIRD only —
installs what it learns into its namespace's kernel. Configuration texts are
pure functions (unit-tested); ``start`` runs the daemon in the foreground
under the topology, which records it by PID and start time.

Must never: bind anything outside the router's namespace (GoBGP's gRPC API
listens on that namespace's own loopback), or write outside the lab's
``peer/`` directory.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pybgp.lab.plan import AS_NUMBER, PEER_ADDRESS, PEER_AS, PEER_HOST, PEER_NET
from pybgp.testing.netns import Node, Topology

GOBGP_API = "127.0.0.1:50051"  # inside the router's namespace only


def bird_config(neighbors: Sequence[str], *, router: str = PEER_ADDRESS,
                local_as: int = PEER_AS, peer_as: int = AS_NUMBER) -> str:
    protocols = "".join(
        f"protocol bgp node_{ip.replace('.', '_')} {{\n"
        f"  local {router} as {local_as};\n"
        f"  neighbor {ip} as {peer_as};\n"
        "  connect retry time 1;\n"
        "  error wait time 1, 5;\n"
        "  ipv4 { import all; export all; };\n"
        "}\n" for ip in neighbors)
    return (f"router id {router};\n"
            "protocol device { scan time 10; }\n"
            "protocol kernel { ipv4 { export where source = RTS_BGP; }; }\n"
            f"protocol static {{ ipv4; route {PEER_NET} blackhole; }}\n" + protocols)


def gobgp_config(neighbors: Sequence[str], *, router: str = PEER_ADDRESS,
                 local_as: int = PEER_AS, peer_as: int = AS_NUMBER) -> str:
    text = ("[global.config]\n"
            f"  as = {local_as}\n"
            f'  router-id = "{router}"\n'
            f'  local-address-list = ["{router}"]\n')
    for ip in neighbors:
        text += ("[[neighbors]]\n"
                 "  [neighbors.config]\n"
                 f'    neighbor-address = "{ip}"\n'
                 f"    peer-as = {peer_as}\n"
                 "  [neighbors.timers.config]\n"
                 "    connect-retry = 1\n")
    return text


def start(kind: str, topo: Topology, router: Node, workdir: Path,
          neighbors: Sequence[str], timeout: float = 20.0) -> dict[str, Any]:
    """Start the router's daemon; returns what ``sessions`` needs later."""
    workdir.mkdir(parents=True, exist_ok=True)
    topo.ip(router, "addr", "add", f"{PEER_HOST}/32", "dev", "lo")
    log_path = workdir / f"{kind}.log"
    if kind == "bird":
        conf, sock = workdir / "bird.conf", workdir / "bird.ctl"
        conf.write_text(bird_config(neighbors))
        argv = ["bird", "-f", "-c", str(conf), "-s", str(sock), "-P", str(workdir / "bird.pid")]
    elif kind == "gobgp":
        conf = workdir / "gobgpd.toml"
        conf.write_text(gobgp_config(neighbors))
        argv = ["gobgpd", "-f", str(conf), "-p", "--pprof-disable", f"--api-hosts={GOBGP_API}"]
    else:
        raise ValueError(f"unknown peer kind {kind!r}")
    with open(log_path, "ab") as log:
        proc = topo.popen(router, *argv, stdout=log, stderr=subprocess.STDOUT)
    info = {"kind": kind, "ns": router.ns, "dir": str(workdir), "log": str(log_path)}
    end = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{kind} exited with {proc.returncode}: "
                               f"{log_path.read_text(errors='replace')[-1500:]}")
        if kind == "bird" and sessions(info, topo) is not None:
            break
        if kind == "gobgp" and sessions(info, topo) is not None:
            _gobgp(info, topo, "global", "rib", "add", PEER_NET, "-a", "ipv4")
            break
        if time.monotonic() > end:
            raise TimeoutError(f"{kind} did not answer on its API within {timeout:g}s "
                               f"(log: {log_path})")
        time.sleep(0.1)
    return info


def _gobgp(info: dict[str, Any], topo: Topology, *args: str) -> subprocess.CompletedProcess[str]:
    host, port = GOBGP_API.split(":")
    return topo.exec(info["ns"], "gobgp", "-u", host, "-p", port, *args, check=False,
                     timeout=10)


def sessions(info: dict[str, Any], topo: Topology) -> dict[str, str] | None:
    """Neighbor address → session state as the router reports it (None: not answering)."""
    if info["kind"] == "bird":
        out = subprocess.run(["birdcl", "-s", str(Path(info["dir"]) / "bird.ctl"),
                              "show", "protocols"], capture_output=True, text=True, timeout=10)
        if out.returncode != 0 or "BIRD" not in out.stdout:
            return None
        states = {}
        for line in out.stdout.splitlines():
            words = line.split()
            if words and words[0].startswith("node_") and len(words) >= 2:
                ip = words[0][len("node_"):].replace("_", ".")
                states[ip] = "Established" if "Established" in line else \
                    (words[5] if len(words) > 5 else words[3])
        return states
    proc = _gobgp(info, topo, "neighbor")
    if proc.returncode != 0:
        return None
    states = {}
    for line in proc.stdout.splitlines()[1:]:
        words = line.split()
        if len(words) >= 4 and words[0].count(".") == 3:
            states[words[0]] = "Established" if words[3].startswith("Establ") else words[3]
    return states
