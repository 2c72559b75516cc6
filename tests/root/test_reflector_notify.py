"""The reflector's readiness as systemd's ``Type=notify`` sees it.

The real ``pybgp reflector`` in a namespace on the fabric, its clients the
Calico Nodes in etcd (``nodeSelector: all()``), started with a
``$NOTIFY_SOCKET`` as systemd starts it: ``READY=1`` arrives only once it
listens on :179, its control sockets answer and every selected Node is a
peer; SIGTERM — what ``systemctl stop`` sends — makes it say
``STOPPING=1`` and exit 0. A reflector whose clients are static (no
datastore) is ready as soon as it listens and serves.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from agent_net import fresh_cluster

from pybgp.testing.cluster import Cluster
from pybgp.testing.etcd import EtcdServer

PYBGP = [sys.executable, "-m", "pybgp.cli.main"]


def listens(cluster: Cluster, node: str, address: str) -> bool:
    probe = ("import socket, sys; s = socket.create_connection((sys.argv[1], 179), 2); "
             "s.close()")
    return cluster.topo.exec(cluster.nodes[node].node, sys.executable, "-c", probe, address,
                             check=False, timeout=10).returncode == 0


def test_ready_once_it_knows_its_clients_and_stopping_on_sigterm(
        etcd_server: EtcdServer, session_run_id: str, tmp_path: Path) -> None:
    with fresh_cluster(etcd_server, session_run_id, str(tmp_path)) as cluster:
        cluster.add_node("node-a", "198.18.0.11/24")
        cluster.add_node("node-b", "198.18.0.12/24")
        cluster.start_reflector("rr", "198.18.0.2/24", wait=None)
        status = cluster.wait_ready("rr", 30, daemon="reflector")
        # nothing below waits: all of it must be true the moment READY=1 arrives
        assert status == "listening on 0.0.0.0:179, 2 peers configured"
        rr = cluster.reflectors["rr"]
        protocols = subprocess.run([*PYBGP, "show", "protocols", "--socket", rr.bird_socket],
                                   capture_output=True, text=True, timeout=20).stdout
        assert "Node_198_18_0_11 " in protocols and "Node_198_18_0_12 " in protocols, protocols
        assert listens(cluster, "node-a", "198.18.0.2")
        assert "READY" not in (rr.dir / "reflector.log").read_text()  # said to systemd only

        assert cluster.terminate("rr", "reflector") == ("STOPPING=1", 0)

        # static clients only: no datastore to wait for
        static = cluster.start_reflector("rr", clients=[{"address": "198.18.0.11"}], wait=None)
        assert cluster.wait_ready("rr", 30, daemon="reflector") == \
            "listening on 0.0.0.0:179, 1 peers configured"
        static.terminate()
        assert static.wait(30) == 0
        # a configuration it refuses: it exits, never ready, and the error says why
        try:
            cluster.start_reflector("rr", clients=[{"address": "198.18.0.11"}], holdTime=1)
        except RuntimeError as exc:
            assert "exited with" in str(exc) and "holdTime" in str(exc), exc
        else:
            raise AssertionError("a reflector with holdTime 1 became ready")
