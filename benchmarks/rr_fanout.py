"""Benchmark: one route reflector, C clients, R routes: pybgp vs BIRD 2 vs GoBGP.

Run as root: ``python -m benchmarks.rr_fanout [--clients 100,500] [--routes 20000]
[--reps 3] [--profile DIR]``.

One topology (``pbrrf-<hex>-…`` namespaces) on a fabric bridge:

- ``rr`` (198.18.0.2, AS 64512, cluster id 198.18.0.100): the reflector
  under test, one at a time — ``pybgp reflector`` (clients: a range), BIRD 2
  (one passive ``rr client`` protocol per client, as a BIRD reflector VM is
  configured), GoBGP (one passive ``route-reflector-client`` neighbour per
  client) — and, as the floor, ``benchmarks._raw_reflector``, which fans
  pre-encoded bytes out and does nothing else;
- ``clients`` (198.18.0.10): the swarm (``pybgp.testing.bgp_clients``, the
  same for every reflector): C counting clients and one injector, their
  addresses 198.18.8.1… (a local route for 198.18.8.0/21 on the loopback,
  reached from ``rr`` by one route: one neighbour entry, not C).

Per repetition and reflector, fresh: the reflector starts, all C+1
sessions come up, 1 s settles, the injector sends R /32s (198.19.0.0/16,
~800 to an UPDATE, one write); the clock (the swarm's) runs from that write
until every client has counted all R announced routes (each checked for
next hop, ORIGINATOR_ID = the injector and the cluster id first in
CLUSTER_LIST). Then the reflector's peak RSS (VmHWM) is read and it is
stopped. The reflectors take turns, in a different order each repetition.
The swarm reports its own CPU time, so the table shows what the tool cost.

The last line, for the largest C: ``RESULT clients=C routes=R time_s=…
bird_time_s=… ratio=<time/bird> gobgp_time_s=… rss_mib=… bird_rss_mib=…
rss_ratio=… gobgp_rss_mib=… floor_time_s=…`` (medians).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from benchmarks._bird import median, start_bird, stop_process_group, vm_hwm_kib
from pybgp.testing.bgp_clients import host_addresses
from pybgp.testing.netns import Node, Topology

RR_IP, CLIENTS_IP, ASN, CLUSTER_ID = "198.18.0.2", "198.18.0.10", 64512, "198.18.0.100"
CLIENT_NET, CLIENT_BASE = "198.18.8.0/21", "198.18.8.1"
WHO = ("pybgp", "bird", "gobgp", "floor")
LABEL = {"pybgp": "pybgp reflector", "bird": "BIRD 2", "gobgp": "GoBGP",
         "floor": "raw fan-out (floor)"}


@dataclass
class Run:
    who: str
    scenario: str
    clients: int
    time_s: float | None
    median_client_s: float | None
    rss_kib: int
    tool_cpu_s: float
    setup_s: float
    cpu_s: float = 0.0  # the reflector's CPU time during the transfer
    error: str = ""

    @property
    def rss_mib(self) -> float:
        return self.rss_kib / 1024


def _lines(proc: subprocess.Popen[str], timeout: float, what: str) -> dict[str, Any]:
    """The next JSON line from ``proc`` (bounded)."""
    import selectors

    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                raise TimeoutError(f"no {what} in {timeout:.0f}s")
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"{what}: the swarm exited ({proc.wait()})")
            line = line.strip()
            if line.startswith("{"):
                return json.loads(line)
    finally:
        sel.close()


class Bench:
    def __init__(self, topo: Topology, workdir: Path, routes: int, timeout: float,
                 profile: Path | None):
        self.topo, self.workdir, self.routes, self.timeout = topo, workdir, routes, timeout
        self.profile = profile
        self.rr: Node = topo.add_node("rr", f"{RR_IP}/24")
        self.cl: Node = topo.add_node("clients", f"{CLIENTS_IP}/24")
        topo.ip(self.cl, "route", "add", "local", CLIENT_NET, "dev", "lo")
        topo.route(self.rr, CLIENT_NET, via=CLIENTS_IP)
        # the reflector's side of 500 sessions: let its accept queue hold them
        topo.sysctl(self.rr, {"net.core.somaxconn": 4096, "net.ipv4.tcp_max_syn_backlog": 4096})

    # -- reflectors --------------------------------------------------------------------
    def _start(self, who: str, clients: int) -> tuple[subprocess.Popen[Any], Any]:
        d = self.workdir / f"{who}-{clients}"
        d.mkdir(parents=True, exist_ok=True)
        addrs = host_addresses(CLIENT_BASE, clients + 1)
        if who == "pybgp":
            conf = d / "reflector.yaml"
            conf.write_text(f"routerId: {RR_IP}\nclusterId: {CLUSTER_ID}\nasNumber: {ASN}\n"
                            f"holdTime: 240\nstartupHold: 0\n"
                            f"clients:\n  - range: {CLIENT_NET}\n")
            log = open(d / "reflector.log", "ab")  # noqa: SIM115 - the child owns it
            try:
                proc = self.topo.popen(
                    self.rr, sys.executable, "-m", "pybgp.cli.main", "reflector",
                    "--config", str(conf), "--bird-socket", str(d / "rr.ctl"),
                    "--json-socket", str(d / "rr.sock"), stdout=log, stderr=subprocess.STDOUT)
            finally:
                log.close()
            _wait_path(d / "rr.ctl", proc, 30)
            return proc, lambda: stop_process_group(proc, 10)
        if who == "bird":
            conf = [f"router id {RR_IP};", "protocol device { scan time 10; }",
                    "template bgp rrc {", f"  local {RR_IP} as {ASN};", "  rr client;",
                    f"  rr cluster id {CLUSTER_ID};", "  passive on;", "  hold time 240;",
                    "  ipv4 { import all; export all; };", "}"]
            conf += [f"protocol bgp c{i} from rrc {{ neighbor {a} as {ASN}; }}"
                     for i, a in enumerate(addrs)]
            bird = start_bird(self.topo, self.rr, d, "bird", "\n".join(conf) + "\n")
            return bird.proc, bird.stop
        if who == "gobgp":
            port = "50051"
            conf = ["[global.config]", f"  as = {ASN}", f'  router-id = "{RR_IP}"',
                    f'  local-address-list = ["{RR_IP}"]']
            for a in addrs:
                conf += ["[[neighbors]]", "  [neighbors.config]",
                         f'    neighbor-address = "{a}"', f"    peer-as = {ASN}",
                         "  [neighbors.timers.config]", "    hold-time = 240",
                         "  [neighbors.transport.config]", "    passive-mode = true",
                         "  [neighbors.route-reflector.config]",
                         "    route-reflector-client = true",
                         f'    route-reflector-cluster-id = "{CLUSTER_ID}"']
            (d / "gobgpd.toml").write_text("\n".join(conf) + "\n")
            log = open(d / "gobgpd.log", "ab")  # noqa: SIM115
            try:
                proc = self.topo.popen(self.rr, "gobgpd", "-f", str(d / "gobgpd.toml"), "-p",
                                       "--pprof-disable", f"--api-hosts=127.0.0.1:{port}",
                                       "-l", "warn", stdout=log, stderr=subprocess.STDOUT)
            finally:
                log.close()
            deadline = time.monotonic() + 60
            while self.topo.exec(self.rr, "gobgp", "-u", "127.0.0.1", "-p", port, "global",
                                 check=False, timeout=10).returncode != 0:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"gobgpd did not start: see {d / 'gobgpd.log'}")
                time.sleep(0.2)
            return proc, lambda: stop_process_group(proc, 10)
        proc = self.topo.popen(
            self.rr, sys.executable, "-m", "benchmarks._raw_reflector", "--listen", RR_IP,
            "--injector", addrs[0], "--routes", str(self.routes), "--cluster-id", CLUSTER_ID,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the raw reflector did not start")
        return proc, lambda: stop_process_group(proc, 10)

    # -- one run -----------------------------------------------------------------------
    def run(self, who: str, clients: int, scenario: str = "fanout") -> Run:
        proc, stop = self._start(who, clients)
        swarm: subprocess.Popen[str] | None = None
        spy: subprocess.Popen[bytes] | None = None
        try:
            swarm = self.topo.popen(
                self.cl, sys.executable, "-m", "pybgp.testing.bgp_clients",
                "--reflector", RR_IP, "--base", CLIENT_BASE, "--clients", str(clients),
                "--routes", str(self.routes), "--cluster-id", CLUSTER_ID,
                "--timeout", str(self.timeout), *(["--storm"] if scenario == "storm" else []),
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            ready = _lines(swarm, self.timeout, "sessions established")
            time.sleep(1.0)
            if self.profile is not None and who == "pybgp":
                spy = _py_spy(proc.pid, self.profile / f"reflector-{clients}.txt")
            cpu0 = cpu_seconds(proc.pid)
            _say(swarm.stdin, "go")
            result = _lines(swarm, self.timeout + 30, "the transfer")
            cpu = cpu_seconds(proc.pid) - cpu0
            rss = vm_hwm_kib(proc.pid)
            if proc.poll() is not None:
                raise RuntimeError(f"{who} exited during the run ({proc.returncode})")
            err = ""
            back = result["injector_received"] if scenario == "fanout" else 0
            if result["bad"] or result["wrong_attributes"] or back:
                err = (f"bad={result['bad']} wrong attributes={result['wrong_attributes']!r} "
                       f"sent back to the injector={back}")
            return Run(who, scenario, clients, result["time_s"], result["median_client_s"], rss,
                       result["tool_cpu_s"], ready["setup_s"], cpu, err)
        finally:
            if spy is not None:
                with contextlib.suppress(ProcessLookupError):
                    spy.send_signal(signal.SIGINT)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    spy.wait(60)
            if swarm is not None:
                with contextlib.suppress(OSError):
                    _say(swarm.stdin, "quit")
                stop_process_group(swarm, 10)
            stop()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (and its threads), seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _say(pipe: IO[str] | None, line: str) -> None:
    assert pipe is not None
    pipe.write(line + "\n")
    pipe.flush()


def _wait_path(path: Path, proc: subprocess.Popen[Any], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"reflector did not come up ({path})")
        time.sleep(0.05)


def _py_spy(pid: int, out: Path) -> subprocess.Popen[bytes] | None:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not os.path.exists(spy):
        print("rr_fanout: py-spy not found, not profiling", file=sys.stderr)
        return None
    out.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([spy, "record", "--nonblocking", "--rate", "250", "--format", "raw",
                             "--duration", "60", "-p", str(pid), "-o", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--clients", default="100,500", help="comma-separated client counts")
    ap.add_argument("--routes", type=int, default=20000, help="routes injected (≤ 65536)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--gobgp-reps", type=int, default=1,
                    help="repetitions for GoBGP (it sends one prefix per UPDATE: minutes)")
    ap.add_argument("--only", default=",".join(WHO), help="reflectors to run")
    ap.add_argument("--scenarios", default="fanout,storm",
                    help="fanout: one client injects every route; storm: every client "
                         "announces its share at once (a reflector restart's reconnect storm)")
    ap.add_argument("--timeout", type=float, default=900.0,
                    help="seconds allowed for sessions to come up, and for one transfer")
    ap.add_argument("--profile", type=Path, default=None,
                    help="record py-spy profiles of pybgp's reflector here")
    args = ap.parse_args(argv)
    sizes = sorted({int(x) for x in args.clients.split(",") if x.strip()})
    who = [w for w in WHO if w in args.only.split(",")]
    scenarios = [x for x in ("fanout", "storm") if x in args.scenarios.split(",")]
    if not sizes or not all(1 <= c <= 2000 for c in sizes):
        ap.error("--clients: counts from 1 to 2000")
    if not 1 <= args.routes <= 65536 or not 1 <= args.reps <= 10:
        ap.error("--routes 1..65536, --reps 1..10")
    if os.geteuid() != 0:
        print("rr_fanout: must run as root (it creates network namespaces)", file=sys.stderr)
        return 2
    for tool in ("bird", "gobgpd", "gobgp"):
        if shutil.which(tool) is None:
            print(f"rr_fanout: {tool} not found", file=sys.stderr)
            return 2

    def _terminate(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _terminate)
    workdir = Path(tempfile.mkdtemp(prefix="pybgp-rrfanout-"))
    runs: list[Run] = []
    t_start = time.monotonic()
    try:
        with Topology(prefix="pbrrf") as topo:
            bench = Bench(topo, workdir, args.routes, args.timeout, args.profile)
            for scenario, clients, rep in [(x, c, r) for x in scenarios for c in sizes
                                           for r in range(args.reps)]:
                order = who[rep % len(who):] + who[:rep % len(who)]
                for w in order:
                    # GoBGP sends a prefix an UPDATE: minutes a run; the floor
                    # only fans out one injector's routes
                    if w == "gobgp" and (rep >= args.gobgp_reps or scenario == "storm"):
                        continue
                    if w == "floor" and scenario == "storm":
                        continue
                    r = bench.run(w, clients, scenario)
                    runs.append(r)
                    t = "TIMEOUT" if r.time_s is None else f"{r.time_s:.3f}s"
                    print(f"  {scenario} clients={clients} rep={rep} {w:<6} {t:>9}  "
                          f"median client {r.median_client_s or float('nan'):.3f}s  "
                          f"peak RSS {r.rss_mib:.1f} MiB  CPU {r.cpu_s:.2f}s, "
                          f"swarm {r.tool_cpu_s:.2f}s"
                          f"  (sessions up in {r.setup_s:.1f}s)"
                          f"{'  ' + r.error if r.error else ''}", flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    print()
    print(f"{'scenario':<8} {'clients':>7} {'reflector':<22} {'median s':>9} {'runs (s)':<26} "
          f"{'peak RSS MiB':>12} {'CPU s':>7} {'swarm CPU s':>11}")
    summary: dict[tuple[str, int, str], tuple[float, float]] = {}
    for scenario, clients, w in [(x, c, w) for x in scenarios for c in sizes for w in who]:
        rs = [r for r in runs if r.clients == clients and r.who == w
              and r.scenario == scenario]
        if not rs:
            continue
        done = [r.time_s for r in rs if r.time_s is not None and not r.error]
        t_med = median(done) if len(done) == len(rs) else float("inf")
        rss = median([r.rss_mib for r in rs])
        summary[(scenario, clients, w)] = (t_med, rss)
        times = ",".join("T/O" if r.time_s is None else f"{r.time_s:.2f}" for r in rs)
        cpu = median([r.tool_cpu_s for r in rs])
        own = median([r.cpu_s for r in rs])
        print(f"{scenario:<8} {clients:>7} {LABEL[w]:<22} {t_med:>9.3f} {times:<26} "
              f"{rss:>12.1f} {own:>7.2f} {cpu:>11.2f}")
    nan = (float("nan"), float("nan"))
    for scenario, clients in [(x, c) for x in scenarios for c in sizes]:
        (t, rss) = summary.get((scenario, clients, "pybgp"), nan)
        (bt, brss) = summary.get((scenario, clients, "bird"), nan)
        print(f"{scenario:<8} {clients:>7} ratio pybgp/BIRD: time {t / bt:.2f}  "
              f"RSS {rss / brss:.2f}")
    print(f"total wall time {time.monotonic() - t_start:.0f}s")
    c = sizes[-1]

    def get(w: str, scenario: str = "fanout") -> tuple[float, float]:
        return summary.get((scenario, c, w), nan)

    (t, rss), (bt, brss), (gt, grss), (ft, _f) = get("pybgp"), get("bird"), get("gobgp"), \
        get("floor")
    (st, _s), (sbt, _sb) = get("pybgp", "storm"), get("bird", "storm")
    print(f"RESULT clients={c} routes={args.routes} time_s={t:.3f} bird_time_s={bt:.3f} "
          f"ratio={t / bt:.2f} gobgp_time_s={gt:.3f} rss_mib={rss:.1f} bird_rss_mib={brss:.1f} "
          f"rss_ratio={rss / brss:.2f} gobgp_rss_mib={grss:.1f} floor_time_s={ft:.3f} "
          f"storm_time_s={st:.3f} storm_bird_time_s={sbt:.3f} storm_ratio={st / sbt:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
