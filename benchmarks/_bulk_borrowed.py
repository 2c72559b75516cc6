"""Burst of workload routes → routes on a peer (a diagnostic, not a benchmark).

``python -m benchmarks._bulk_borrowed [N]`` (root): two nodes running
``pybgp speaker`` in namespaces; N /32 routes inside the pool but outside
node A's blocks (borrowed addresses, which A advertises one by one) are added
to a ``cali`` interface in A's namespace with one ``ip -batch``; prints the
time until node B's kernel holds all N. It exercises the speaker's handling
of a burst of kernel events (docs/benchmarks.md).
"""

from __future__ import annotations

import sys
import tempfile
import time

from pybgp.testing.cluster import Cluster
from pybgp.testing.etcd import EtcdServer
from pybgp.testing.netns import Topology

TIMEOUT = 60.0


def main(argv: list[str]) -> int:
    n = int(argv[0]) if argv else 1000
    if not 0 < n <= 12500:
        raise SystemExit("N must be 1..12500 (198.19.200.0-198.19.249.255)")
    with EtcdServer() as etcd, Topology() as topo, \
            tempfile.TemporaryDirectory(prefix="pybgp-bulk-") as work:
        cluster = Cluster(topo, etcd, workdir=work)
        a = cluster.add_node("node-a", "198.18.0.11/24")
        b = cluster.add_node("node-b", "198.18.0.12/24")
        try:
            for name in ("node-a", "node-b"):
                cluster.start_speaker(name, startup_hold=1)
            for name in ("node-a", "node-b"):
                cluster.wait_established(name, 1)
            topo.exec(a.node, "ip", "link", "add", "calibulk0", "type", "veth",
                      "peer", "name", "bulkpeer0")
            for dev in ("calibulk0", "bulkpeer0"):
                topo.exec(a.node, "ip", "link", "set", dev, "up")
            time.sleep(2)
            batch = "".join(f"route add 198.19.{200 + i // 250}.{i % 250 + 1}/32 dev calibulk0\n"
                            for i in range(n))
            t0 = time.monotonic()
            topo.exec(a.node, "ip", "-batch", "-", input=batch)
            while True:
                have = topo.exec(b.node, "ip", "route", "show", "proto", "bird").stdout.count("\n")
                elapsed = time.monotonic() - t0
                if have >= n or elapsed > TIMEOUT:
                    break
                time.sleep(0.02)
        finally:
            cluster.close()
    print(f"{have} of {n} routes on node-b after {elapsed:.2f} s")
    return 0 if have >= n else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
