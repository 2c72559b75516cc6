"""The demo behind ``./scripts/setup.sh --demo``.

1. Resources: a throw-away etcd on 127.0.0.1 (private port, temporary data
   dir); every example in ``configs/examples/`` applied with the real
   ``pybgp`` CLI, read back, and a bad input refused.
2. A two-node cluster in network namespaces (node addresses 198.18.0.0/16,
   pods 198.19.0.0/16): a ``pybgp speaker`` per node, a pod per node made by
   the real ``pybgp-cni``, the routes each node learned over BGP, and a ping
   from one pod to the other. Everything is removed at the end.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "configs" / "examples"
KINDS = ["ippool", "bgpconfiguration", "bgppeer", "node", "felixconfiguration",
         "profile", "globalnetworkpolicy"]
NAMESPACED = ["workloadendpoint", "networkpolicy"]


def _run(env: dict[str, str], *argv: str, check: bool = True) -> int:
    print("$ pybgp " + " ".join(argv), flush=True)
    cli = Path(sys.executable).with_name("pybgp")
    rc = subprocess.run([str(cli), *argv], env=env).returncode
    if check and rc != 0:
        raise SystemExit(f"demo: 'pybgp {' '.join(argv)}' failed with status {rc}")
    print(flush=True)
    return rc


def main() -> int:
    from pybgp.testing.etcd import EtcdServer

    with EtcdServer(name="pybgp-demo") as etcd:
        env = dict(os.environ, ETCD_ENDPOINTS=etcd.endpoint)
        print(f"== a throw-away etcd is listening on {etcd.endpoint}\n")
        for path in sorted(EXAMPLES.glob("*.yaml")):
            _run(env, "apply", "-f", os.path.relpath(path))
        for kind in KINDS:
            _run(env, "get", kind, "-o", "wide")
        for kind in NAMESPACED:
            _run(env, "get", kind, "-A")
        _run(env, "get", "ippool", "-o", "yaml")
        print("== a bad pool is refused and nothing is written:")
        with tempfile.TemporaryDirectory() as tmp:
            bad = Path(tmp) / "bad-pool.yaml"
            bad.write_text(
                "apiVersion: projectcalico.org/v3\nkind: IPPool\n"
                "metadata: {name: bad-pool}\nspec: {cidr: 198.19.0.0/33}\n"
            )
            _run(env, "apply", "-f", str(bad), check=False)
        _run(env, "get", "ippool")
    cluster_demo()
    print("== demo finished; etcd, namespaces and daemons removed")
    return 0


def cluster_demo() -> None:
    import ipaddress

    from pybgp.testing.cluster import Cluster
    from pybgp.testing.etcd import EtcdServer
    from pybgp.testing.netns import Topology

    print("\n== a two-node cluster in network namespaces")
    with EtcdServer(name="pybgp-demo-cluster") as etcd, Topology("demo") as topo, \
            tempfile.TemporaryDirectory() as tmp:
        cluster = Cluster(topo, etcd, workdir=tmp)
        for i, name in enumerate(("node-1", "node-2")):
            cluster.add_node(name, f"198.18.0.{11 + i}/24")
            cluster.start_speaker(name)
        pods = {name: cluster.add_pod(name, f"web-{name[-1]}", cni=True)
                for name in cluster.nodes}
        for name, pod in pods.items():
            print(f"pod {pod.name} on {name}: {pod.ip} (host side {pod.host_iface})")
        for name in cluster.nodes:
            cluster.wait_established(name, 1)
        for name, other in (("node-1", "node-2"), ("node-2", "node-1")):
            block = ipaddress.ip_network(f"{pods[other].ip}/26", strict=False)
            cluster.wait_route(name, str(block))
        print("\n$ birdcl -s <node-1's socket> show protocols")
        print(cluster.birdcl("node-1", "show", "protocols"))
        print("$ birdcl -s <node-1's socket> show route")
        print(cluster.birdcl("node-1", "show", "route"))
        print("$ ip route   (inside node-1)")
        print(cluster.routes("node-1"))
        src, dst = pods["node-1"], pods["node-2"]
        out = topo.exec(src, "ping", "-c", "3", "-i", "0.2", "-W", "1", str(dst.ip),
                        check=False)
        print(f"$ ping {dst.ip}   (from {src.name} on node-1 to {dst.name} on node-2)")
        print(out.stdout)
        cluster.close()


if __name__ == "__main__":
    sys.exit(main())
