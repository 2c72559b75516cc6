"""Helpers of the agent's root tests: real packets between namespaces, bounded.

Every probe runs ``pybgp.testing.probe`` (or ``ping``) inside a namespace of
the test's topology; a denied TCP connection is one that times out (policy
drops, it never rejects), so the probe timeout bounds every cell.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

from pybgp.testing.cluster import Cluster, resource, wait_until
from pybgp.testing.netns import Node, Pod, Topology

PROBE = (sys.executable, "-m", "pybgp.testing.probe")


@contextlib.contextmanager
def fresh_cluster(etcd_server: Any, run_id: str, workdir: str) -> Iterator[Cluster]:
    """An empty etcd and a new topology for one test module; removed afterwards."""
    if not etcd_server.running:
        etcd_server.start()
    etcd_server.wipe()
    topo = Topology(prefix=f"pbt{run_id}")
    cluster = Cluster(topo, etcd_server, workdir=workdir)
    try:
        yield cluster
    finally:
        cluster.close()
        topo.close()


def serve(topo: Topology, where: Pod | Node, *ports: int) -> subprocess.Popen[Any]:
    """A TCP listener on ``ports`` inside ``where`` (killed when the topology closes)."""
    proc = topo.popen(where, *PROBE, "serve", *map(str, ports), stdout=subprocess.PIPE,
                      stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # "ready" once every port listens
    assert line.strip() == "ready", f"probe server in {where.name} did not start"
    return proc


def tcp(topo: Topology, src: Pod | Node, *targets: str, timeout: float = 1.0) -> dict[str, str]:
    """target → the source address the server saw ("" = no connection)."""
    out = topo.exec(src, *PROBE, "check", "--timeout", str(timeout), *targets,
                    timeout=timeout + 20)
    return {r["target"]: r["seen"] if r["ok"] else "" for r in json.loads(out.stdout)}


def reach(topo: Topology, src: Pod | Node, dst: Pod | str, port: int) -> bool:
    addr = dst if isinstance(dst, str) else dst.addr
    return bool(tcp(topo, src, f"{addr}:{port}")[f"{addr}:{port}"])


def ping(topo: Topology, src: Pod | Node, dst: Pod | str) -> bool:
    return topo.ping(src, dst if isinstance(dst, str) else dst.addr, count=1, timeout=1)


def http_get(topo: Topology, node: Node, port: int, path: str) -> tuple[int, str]:
    """GET from inside the node's namespace with Python's http.client (no curl)."""
    code = ("import http.client, sys\n"
            f"c = http.client.HTTPConnection('127.0.0.1', {port}, timeout=5)\n"
            f"c.request('GET', {path!r})\n"
            "r = c.getresponse()\n"
            "sys.stdout.write(str(r.status) + '\\n' + r.read().decode())\n")
    out = topo.exec(node, sys.executable, "-c", code, check=False)
    if out.returncode != 0:
        return 0, out.stderr
    status, _, body = out.stdout.partition("\n")
    return int(status), body


def wait_ready(cluster: Cluster, name: str, timeout: float = 30.0) -> None:
    node = cluster.nodes[name].node

    def ready() -> bool:
        proc = cluster.nodes[name].agent
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"agent on {name} exited {proc.returncode}:\n"
                                 f"{cluster.agent_log(name)[-3000:]}")
        return http_get(cluster.topo, node, 9099, "/readiness")[0] == 200

    wait_until(ready, timeout, f"the agent on {name} to be ready")


def settle(check: Any, timeout: float = 10.0, what: str = "the dataplane") -> Any:
    """Poll ``check`` until true (policy changes take a moment to apply)."""
    return wait_until(check, timeout, what, step=0.2)


def apply(cluster: Cluster, kind: str, name: str, spec: dict[str, Any], **meta: Any) -> None:
    cluster.store.apply([resource(kind, name, spec, **meta)])


def delete(cluster: Cluster, kind: str, name: str, namespace: str | None = None) -> None:
    cluster.store.delete(kind, name, namespace)


def cali_rules(topo: Topology, node: Node) -> set[str]:
    """Every rule of the agent's (a ``cali:`` hash) in ``iptables-save``."""
    return cali_rules_in(topo.exec(node, "iptables-save").stdout)


def cali_rules_in(save: str) -> set[str]:
    return {line for line in save.splitlines() if line.startswith("-A ") and "cali:" in line}


@contextlib.contextmanager
def sampling(topo: Topology, node: Node, every: float = 0.05) -> Iterator[list[set[str]]]:
    """Take ``cali_rules`` samples in a thread while the block runs."""
    import threading

    samples: list[set[str]] = []
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            samples.append(cali_rules(topo, node))
            time.sleep(every)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        yield samples
    finally:
        stop.set()
        t.join(30)
