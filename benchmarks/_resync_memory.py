"""The speaker's memory across its periodic kernel resync (a diagnostic).

``python -m benchmarks._resync_memory [N]`` (root, ~2.5 min): the fib_learn
topology (a BIRD feeder, a pybgp node); the speaker learns N routes, then
its VmRSS and VmHWM are printed every 10 s until after its first 90 s drift
resync, which dumps every route of its own back from the kernel. fib_learn
stops before that resync, so this shows what its figure leaves out.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from benchmarks import fib_learn as fl
from benchmarks._bird import process_tree
from pybgp.speaker.daemon import RESYNC_INTERVAL
from pybgp.testing.cluster import Cluster
from pybgp.testing.etcd import EtcdServer
from pybgp.testing.netns import Topology


def _mib(pid: int) -> tuple[int, int]:
    with open(f"/proc/{pid}/status") as fh:
        status = fh.read()
    return tuple(int(status.split(f"{k}:")[1].split()[0]) // 1024  # type: ignore[return-value]
                 for k in ("VmRSS", "VmHWM"))


def main(argv: list[str]) -> int:
    n = int(argv[0]) if argv else 100_000
    with tempfile.TemporaryDirectory(prefix="pybgp-resync-") as work, EtcdServer() as etcd, \
            Topology(prefix="pbrs") as topo:
        cluster = Cluster(topo, etcd, pool=fl.POOL, workdir=str(Path(work) / "cluster"))
        bench = fl.Bench(topo, cluster, Path(work), 120, None)
        try:
            bench.start_feeder(n)
            proc = cluster.start_speaker("pyb", startup_hold=5.0)
            started = time.monotonic()
            time.sleep(fl.SETTLE)
            assert bench.feeder is not None
            bench.feeder.ctl.cmd(f"enable {fl.TO_PYB}")
            while fl.proto_bird_count(bench.pyb.node.ns) < n:
                if time.monotonic() - started > 120:
                    raise TimeoutError(f"the speaker did not learn {n} routes")
                time.sleep(0.5)
            speaker = next(p for p in process_tree(proc.pid)
                           if b"pybgp.cli.main" in Path(f"/proc/{p}/cmdline").read_bytes())
            print(f"{n} routes learned; the first resync is due {RESYNC_INTERVAL:.0f} s "
                  "after the speaker started")
            while True:
                age = time.monotonic() - started
                rss, hwm = _mib(speaker)
                print(f"  speaker at {age:5.1f} s: VmRSS {rss} MiB, VmHWM {hwm} MiB", flush=True)
                if age > RESYNC_INTERVAL + 15:
                    break
                time.sleep(10)
        finally:
            bench.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
