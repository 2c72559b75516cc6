"""Benchmark: learning N routes over eBGP into the kernel, pybgp speaker vs BIRD 2.

Run as root: ``python -m benchmarks.fib_learn [--routes 10000,100000] [--reps 3]``.

One topology (``pbfib-<hex>-…`` namespaces) on a fabric bridge:

- ``feeder`` (198.18.0.254, AS 64513): BIRD 2 originating N static blackhole
  /32s counted up from 198.18.1.0 (inside 198.18.0.0/15, clear of the fabric
  /24), exported over eBGP (next hop itself) to two sessions, each disabled
  until its turn;
- ``pyb`` (198.18.0.11, AS 64512): a Calico Node with ``pybgp speaker``
  (ExaBGP 5 + its API helper), peering with the feeder through a global BGPPeer;
- ``birdn`` (198.18.0.12, AS 64512): BIRD 2 configured as Calico's confd
  configures BIRD (kernel protocol: learn, persist, scan time 2, graceful
  restart, merge paths; ``bgp_template`` session options).

Per repetition and receiver, from an empty kernel: the receiver is started
fresh and left to settle for 3 s (BIRD's kernel protocol has done its first
scan, the speaker has read etcd and started ExaBGP), then the feeder's
session is enabled; the clock starts when the feeder's session is
Established (BIRD's own 'since' time, ms) and stops when the receiver's main
FIB holds all N more prefixes (``fib_triestat`` read every 10 ms from inside
the namespace); then the count of ``proto bird`` routes is checked (= N) and
the peak RSS (VmHWM) taken: pybgp = speaker + ExaBGP + its helper, BIRD = the
receiver's bird. The receivers alternate, so machine noise
hits both alike. Every transfer is bounded by ``--timeout``.

The last line is machine-readable, for the largest N:
``RESULT routes=N time_s=… bird_time_s=… ratio=<time/bird_time> rss_mib=…
bird_rss_mib=… rss_ratio=…`` (medians over the repetitions).

``--profile DIR`` records the speaker and its children with py-spy during the
first pybgp transfer of the largest N (``DIR/*.txt``: collapsed stacks).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks._bird import (
    BgpNeighbor,
    Bird,
    BirdCtl,
    FibCounter,
    calico_config,
    feeder_config,
    feeder_prefixes,
    median,
    start_bird,
    stop_process_group,
    tree_hwm,
    wait_bgp_established,
)
from pybgp.testing.cluster import Cluster, resource
from pybgp.testing.etcd import EtcdServer
from pybgp.testing.netns import Node, Topology

FEEDER_IP, FEEDER_AS = "198.18.0.254", 64513
PYB_IP, BIRD_IP, NODE_AS = "198.18.0.11", "198.18.0.12", 64512
POOL = "198.19.192.0/18"  # the cluster's pod pool: clear of the fed routes
TO_PYB, TO_BIRD = "to_pyb", "to_bird"
SETTLE = 3.0  # seconds a receiver runs before the feeder's session is enabled


@dataclass
class Run:
    n: int
    who: str
    time_s: float | None  # None: timed out
    rss_kib: dict[str, int] = field(default_factory=dict)
    t99_s: float | None = None  # when 99 % of the routes were in the kernel

    @property
    def rss_mib(self) -> float:
        return sum(self.rss_kib.values()) / 1024


def sh(*args: str, timeout: float = 120) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True,
                          timeout=timeout).stdout


def proto_bird_count(ns: str) -> int:
    out = sh("ip", "-n", ns, "route", "show", "proto", "bird")
    return sum(1 for line in out.splitlines() if line.strip())


def flush_bird_routes(ns: str) -> None:
    subprocess.run(["ip", "-n", ns, "route", "flush", "proto", "bird"], check=False,
                   capture_output=True, timeout=120)


class Bench:
    def __init__(self, topo: Topology, cluster: Cluster, workdir: Path, timeout: float,
                 profile: Path | None) -> None:
        self.topo, self.cluster, self.workdir = topo, cluster, workdir
        self.timeout = timeout
        self.profile = profile
        self.settle = SETTLE
        self.feeder_node: Node = topo.add_external_router("feeder", f"{FEEDER_IP}/24")
        self.pyb = cluster.add_node("pyb", f"{PYB_IP}/24")
        cluster.store.apply([resource("BGPPeer", "feeder",
                                      {"peerIP": FEEDER_IP, "asNumber": FEEDER_AS})])
        self.birdn: Node = topo.add_node("birdn", f"{BIRD_IP}/24")
        self.fib = {self.pyb.node.ns: FibCounter(self.pyb.node.ns),
                    self.birdn.ns: FibCounter(self.birdn.ns)}
        self.feeder: Bird | None = None

    def close(self) -> None:
        if self.feeder is not None:
            self.feeder.stop()
        for f in self.fib.values():
            f.close()

    def start_feeder(self, n: int) -> None:
        if self.feeder is not None:
            self.feeder.stop()
            self.feeder = None
        conf = feeder_config(FEEDER_IP, FEEDER_AS,
                             [BgpNeighbor(TO_PYB, PYB_IP, NODE_AS),
                              BgpNeighbor(TO_BIRD, BIRD_IP, NODE_AS)],
                             feeder_prefixes(n))
        self.feeder = start_bird(self.topo, self.feeder_node, self.workdir, f"feeder-{n}", conf)
        deadline = time.monotonic() + 120
        want = f"{n} of {n} routes"
        while want not in self.feeder.ctl.cmd("show route count"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"feeder did not load {n} routes")
            time.sleep(0.2)

    def _transfer(self, n: int, ns: str, session: str, start: Any, who: str,
                  profile: bool = False) -> Run:
        """Enable the feeder's session, start the receiver, time the transfer."""
        assert self.feeder is not None
        flush_bird_routes(ns)
        fib = self.fib[ns]
        base = fib.count()
        proc: subprocess.Popen[bytes] | None = None
        spy: list[subprocess.Popen[bytes]] = []
        try:
            # The receiver starts first and settles (a fresh BIRD's kernel
            # protocol writes nothing before its first scan; the speaker reads
            # etcd and starts ExaBGP): what is timed is learning, not start-up.
            proc, stop = start()
            time.sleep(self.settle)
            self.feeder.ctl.cmd(f"enable {session}")
            t_est = wait_bgp_established(self.feeder.ctl, session, 120)
            if profile:
                spy = self._start_profiler(proc.pid, n)
            t_99, t_done = fib.wait_marks([base + (n * 99) // 100, base + n], self.timeout)
            rss = tree_hwm(proc.pid)
            elapsed = None if t_done is None else t_done - t_est
            t99 = None if t_99 is None else t_99 - t_est
            if t_done is not None:
                got = proto_bird_count(ns)
                if got != n:
                    raise RuntimeError(f"{who}: {got} proto bird routes, expected {n}")
            return Run(n, who, elapsed, rss, t99)
        finally:
            for p in spy:  # SIGINT: py-spy writes its profile and exits
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(signal.SIGINT)
            for p in spy:
                try:
                    p.wait(60)
                except subprocess.TimeoutExpired:
                    stop_process_group(p, 5)
            if proc is not None:
                stop()
            self.feeder.ctl.cmd(f"disable {session}")
            flush_bird_routes(ns)

    def run_pybgp(self, n: int, profile: bool = False) -> Run:
        def start() -> tuple[subprocess.Popen[bytes], Any]:
            proc = self.cluster.start_speaker("pyb", startup_hold=5.0)
            ctl = BirdCtl(self.pyb.bird_socket)
            try:  # up: the datastore is read and the session configured
                deadline = time.monotonic() + 60
                while True:
                    with contextlib.suppress(OSError, ConnectionError):
                        if "Global_" in ctl.cmd("show protocols"):
                            break
                    if proc.poll() is not None or time.monotonic() > deadline:
                        stop_process_group(proc, 10)
                        raise RuntimeError("pybgp speaker did not come up")
                    time.sleep(0.1)
            finally:
                ctl.close()
            return proc, lambda: stop_process_group(proc, 10)

        return self._transfer(n, self.pyb.node.ns, TO_PYB, start, "pybgp", profile)

    def run_bird(self, n: int, rep: int) -> Run:
        conf = calico_config(BIRD_IP, NODE_AS,
                             [BgpNeighbor("Global_" + FEEDER_IP.replace(".", "_"),
                                          FEEDER_IP, FEEDER_AS)], pools=[POOL])

        def start() -> tuple[subprocess.Popen[bytes], Any]:
            bird = start_bird(self.topo, self.birdn, self.workdir, f"recv-{n}-{rep}", conf)
            return bird.proc, bird.stop

        return self._transfer(n, self.birdn.ns, TO_BIRD, start, "bird")

    def _start_profiler(self, pid: int, n: int) -> list[subprocess.Popen[bytes]]:
        spy_bin = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not os.path.exists(spy_bin):
            print("fib_learn: py-spy not found, not profiling", file=sys.stderr)
            return []
        assert self.profile is not None
        self.profile.mkdir(parents=True, exist_ok=True)
        out = []
        dur = str(int(min(self.timeout, 120)))
        for p in [pid, *_descendants(pid)]:
            name = _role(p)
            cmd = [spy_bin, "record", "--nonblocking", "--rate", "100", "--format", "raw",
                   "--duration", dur, "-p", str(p),
                   "-o", str(self.profile / f"{name}-{n}.txt")]
            out.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, start_new_session=True))
        return out


def _descendants(pid: int) -> list[int]:
    from benchmarks._bird import process_tree

    return [p for p in process_tree(pid) if p != pid]


def _role(pid: int) -> str:
    from benchmarks._bird import proc_name

    return f"{proc_name(pid)}-{pid}"


def fmt_rss(r: Run) -> str:
    return " + ".join(f"{k} {v / 1024:.0f}" for k, v in sorted(r.rss_kib.items()))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--routes", default="10000,100000",
                    help="comma-separated route counts (each ≤ 130000)")
    ap.add_argument("--reps", type=int, default=5, help="repetitions per receiver and N")
    ap.add_argument("--timeout", type=float, default=180.0,
                    help="seconds allowed for one transfer before it counts as timed out")
    ap.add_argument("--profile", type=Path, default=None,
                    help="record py-spy profiles of the first pybgp run of the largest N here")
    args = ap.parse_args(argv)
    sizes = sorted({int(x) for x in args.routes.split(",") if x.strip()})
    if not sizes or not all(1 <= n <= 130_000 for n in sizes):
        ap.error("--routes: counts from 1 to 130000")
    if not 1 <= args.reps <= 10:
        ap.error("--reps: 1..10")
    if os.geteuid() != 0:
        print("fib_learn: must run as root (it creates network namespaces)", file=sys.stderr)
        return 2
    for tool in ("bird", "etcd"):
        if shutil.which(tool) is None:
            print(f"fib_learn: {tool} not found", file=sys.stderr)
            return 2

    def _terminate(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)  # unwinds through the finally blocks: clean-up

    signal.signal(signal.SIGTERM, _terminate)
    workdir = Path(tempfile.mkdtemp(prefix="pybgp-fiblearn-"))
    runs: list[Run] = []
    t_start = time.monotonic()
    try:
        with EtcdServer(name=f"pybgp-fiblearn-{os.getpid()}") as etcd, \
                Topology(prefix="pbfib") as topo:
            cluster = Cluster(topo, etcd, pool=POOL, workdir=str(workdir / "cluster"))
            bench = Bench(topo, cluster, workdir, args.timeout, args.profile)
            try:
                for n in sizes:
                    bench.start_feeder(n)
                    for rep in range(args.reps):
                        order = ("pybgp", "bird") if rep % 2 == 0 else ("bird", "pybgp")
                        for who in order:
                            if who == "pybgp":
                                prof = bool(args.profile) and n == sizes[-1] and rep == 0
                                r = bench.run_pybgp(n, profile=prof)
                            else:
                                r = bench.run_bird(n, rep)
                            runs.append(r)
                            t = "TIMEOUT" if r.time_s is None else f"{r.time_s:.3f}s"
                            t99 = "-" if r.t99_s is None else f"{r.t99_s:.3f}s"
                            print(f"  n={n} rep={rep} {who:<5} {t:>9} (99%: {t99})  "
                                  f"peak RSS {r.rss_mib:.1f} MiB ({fmt_rss(r)})", flush=True)
            finally:
                bench.close()
                cluster.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    print()
    print(f"{'routes':>7} {'receiver':<22} {'median s':>9} {'99% s':>6} {'runs (s)':<30} "
          f"{'peak RSS MiB':>12}  breakdown (MiB)")
    summary: dict[tuple[int, str], tuple[float, float]] = {}
    for n in sizes:
        for who, label in (("pybgp", "pybgp speaker+ExaBGP"), ("bird", "BIRD 2 (Calico cfg)")):
            rs = [r for r in runs if r.n == n and r.who == who]
            done = [r.time_s for r in rs if r.time_s is not None]
            t_med = median(done) if len(done) == len(rs) else float("inf")
            rss_med = median([r.rss_mib for r in rs])
            summary[(n, who)] = (t_med, rss_med)
            times = ",".join("T/O" if r.time_s is None else f"{r.time_s:.2f}" for r in rs)
            t99s = [r.t99_s for r in rs if r.t99_s is not None]
            t99_med = median(t99s) if len(t99s) == len(rs) else float("inf")
            # the breakdown of the run nearest the median total, not of the middle run
            typical = min(rs, key=lambda r: abs(r.rss_mib - rss_med))
            print(f"{n:>7} {label:<22} {t_med:>9.3f} {t99_med:>6.2f} {times:<30} "
                  f"{rss_med:>12.1f}  {fmt_rss(typical)}")
    for n in sizes:
        (t, rss), (bt, brss) = summary[(n, "pybgp")], summary[(n, "bird")]
        print(f"{n:>7} ratio pybgp/BIRD: time {t / bt:.2f}  RSS {rss / brss:.2f}")
    print(f"total wall time {time.monotonic() - t_start:.0f}s")
    n = sizes[-1]
    (t, rss), (bt, brss) = summary[(n, "pybgp")], summary[(n, "bird")]
    print(f"RESULT routes={n} time_s={t:.3f} bird_time_s={bt:.3f} ratio={t / bt:.2f} "
          f"rss_mib={rss:.1f} bird_rss_mib={brss:.1f} rss_ratio={rss / brss:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
