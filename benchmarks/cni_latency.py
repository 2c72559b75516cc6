"""Benchmark: CNI ADD / DEL latency, pybgp-cni vs Debian's ptp + host-local.

Run as root: ``python -m benchmarks.cni_latency [--pods N]`` (N ≥ 50).

One topology (``pybench-<hex>-…`` namespaces): a node namespace on a fabric,
and N pod namespaces per configuration, all created before timing. A real
etcd (``pybgp.testing.etcd.EtcdServer``) is started here and reached by the
plugin over its unix socket. Configurations, run through the libcni-like
harness (``pybgp.testing.cni.Runtime``), each plugin call timed as the
runtime sees it (fork+exec to exit, ``ip netns exec`` into the node included):

- ours:     pybgp-cni + pybgp-ipam, IPAM in etcd, WorkloadEndpoint written,
            node daemon (``pybgp cni-daemon``) running;
- ours-nd:  the same without a daemon (the plugin does the work in-process);
- ref:      Debian's ptp + host-local (file-based IPAM).

Calls are interleaved pod by pod, rotating the order of the configurations,
so machine noise hits all of them alike. One warm-up ADD/DEL per
configuration is not counted. Pods 198.19.0.0/17 (ours), 198.19.128.0/20
(ref). Everything (namespaces, daemon, etcd, temp files) is removed at the
end, even on failure or SIGTERM. The last line is machine-readable:
``RESULT add_p50_ms=… add_p90_ms=… del_p50_ms=… del_p90_ms=… ref_add_p50_ms=…
ref_del_p50_ms=… add_ratio=… del_ratio=… ratio=<add_ratio>``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pybgp.testing.cni import (
    Attachment,
    CNIError,
    NetworkConfigList,
    Runtime,
    addresses,
    debian_plugins,
    make_cni_path,
)
from pybgp.testing.etcd import EtcdServer
from pybgp.testing.netns import Topology

VENV_BIN = Path(sys.executable).parent
NODE = "node1"
NODE_IP = "198.18.0.11/24"
OUR_POOL = "198.19.0.0/17"
REF_RANGE = "198.19.128.0/20"
MAX_PODS = 500


@dataclass
class Config:
    key: str
    label: str
    net: NetworkConfigList
    plugin: str  # the main plugin, whose call is timed
    pods: list[str] = field(default_factory=list)  # netns names
    add_ms: list[float] = field(default_factory=list)
    del_ms: list[float] = field(default_factory=list)


def pct(data: Sequence[float], q: float) -> float:
    if not data:
        return float("nan")
    if len(data) == 1:
        return data[0]
    cuts = statistics.quantiles(data, n=100, method="inclusive")
    return cuts[int(q) - 1]


def seed_etcd(etcd: EtcdServer) -> None:
    from pybgp.datastore.etcdv3 import EtcdClient, EtcdConfig
    from pybgp.datastore.resources import ResourceStore
    from pybgp.model import parse_resource

    store = ResourceStore(EtcdClient(EtcdConfig(endpoints=[etcd.endpoint])))
    store.create(parse_resource({"apiVersion": "projectcalico.org/v3", "kind": "IPPool",
                                 "metadata": {"name": "bench-pool"},
                                 "spec": {"cidr": OUR_POOL, "blockSize": 26}}))
    store.create(parse_resource({"apiVersion": "projectcalico.org/v3", "kind": "Node",
                                 "metadata": {"name": NODE},
                                 "spec": {"bgp": {"ipv4Address": NODE_IP}}}))


def install_plugins(bindir: Path) -> str:
    """Debian's plugins as symlinks; ours via `pybgp install-cni` if it exists."""
    make_cni_path(bindir, debian_plugins(("ptp", "host-local")))
    cli = str(VENV_BIN / "pybgp")
    probe = subprocess.run([cli, "install-cni", "--help"], capture_output=True, text=True,
                           timeout=30)
    if probe.returncode == 0 and "--bin-dir" in probe.stdout:
        proc = subprocess.run([cli, "install-cni", "--bin-dir", str(bindir)],
                              capture_output=True, text=True, timeout=60)
        if proc.returncode == 0 and (bindir / "pybgp-cni").exists() \
                and (bindir / "pybgp-ipam").exists():
            return f"fast launcher written by `pybgp install-cni --bin-dir` ({bindir})"
        print(f"install-cni failed ({proc.stderr.strip()[-300:]}); using the venv scripts",
              file=sys.stderr)
    make_cni_path(bindir, {n: VENV_BIN / n for n in ("pybgp-cni", "pybgp-ipam")})
    return f"venv console scripts ({VENV_BIN}/pybgp-cni)"


def start_daemon(topo: Topology, node: Any, sock: Path, log: Path, timeout: float = 30) -> None:
    fh = open(log, "wb")  # noqa: SIM115 - the child keeps its own copy
    try:
        proc = topo.popen(node, str(VENV_BIN / "pybgp"), "cni-daemon", "--socket", str(sock),
                          stdout=fh, stderr=subprocess.STDOUT)
    finally:
        fh.close()
    end = time.monotonic() + timeout
    while not sock.exists():
        if proc.poll() is not None or time.monotonic() > end:
            tail = log.read_text(errors="replace")[-1500:]
            raise RuntimeError(f"pybgp cni-daemon did not start (rc={proc.poll()}):\n{tail}")
        time.sleep(0.05)


def make_configs(etcd: EtcdServer, tmp: Path, sock: Path, which: Sequence[str]) -> list[Config]:
    def ours(socket: str, **extra: str) -> list[dict[str, Any]]:
        return [{"type": "pybgp-cni", "etcd_endpoints": etcd.unix_endpoint, "nodename": NODE,
                 "daemon_socket": socket, "ipam": {"type": "pybgp-ipam"}, **extra}]

    ref = [{"type": "ptp", "ipMasq": False,
            "ipam": {"type": "host-local", "dataDir": str(tmp / "host-local"),
                     "ranges": [[{"subnet": REF_RANGE}]], "routes": [{"dst": "0.0.0.0/0"}]}}]
    all_configs = {
        "ours": Config("ours", "pybgp-cni + daemon",
                       # debug: the daemon logs each request's own time ("took X ms")
                       NetworkConfigList.build("bench-ours", "1.0.0",
                                               ours(str(sock), log_level="debug")),
                       "pybgp-cni"),
        "ours-nd": Config("ours-nd", "pybgp-cni, no daemon",
                          NetworkConfigList.build("bench-nd", "1.0.0",
                                                  ours(str(tmp / "nodaemon" / "none.sock"))),
                          "pybgp-cni"),
        "ref": Config("ref", "ptp + host-local (Debian)",
                      NetworkConfigList.build("bench-ref", "1.0.0", ref), "ptp"),
    }
    return [all_configs[k] for k in which]


def attachment(cfg: Config, i: int, ns: str) -> Attachment:
    cid = f"bench-{cfg.key}-{i:04d}"
    return Attachment(cid, f"/var/run/netns/{ns}", "eth0",
                      {"IgnoreUnknown": "1", "K8S_POD_NAMESPACE": "bench",
                       "K8S_POD_NAME": f"{cfg.key}-{i:04d}", "K8S_POD_INFRA_CONTAINER_ID": cid})


def timed_call(rt: Runtime, cfg: Config, phase: str, att: Attachment) -> float:
    """One ADD or DEL; the main plugin's execution time in ms."""
    start = len(rt.calls)
    if phase == "ADD":
        rt.add(cfg.net, att)
    else:
        rt.delete(cfg.net, att)
    mine = [c for c in rt.calls[start:] if c.plugin == cfg.plugin]
    return mine[0].elapsed * 1000.0


def netns_exec_overhead(topo: Topology, node: Any, n: int = 20) -> float:
    true = shutil.which("true") or "/bin/true"
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run(["ip", "netns", "exec", node.ns, true], check=True, timeout=10)
        times.append((time.perf_counter() - t0) * 1000.0)
    return statistics.median(times)


def run(args: argparse.Namespace) -> int:
    deadline = time.monotonic() + args.max_seconds
    tmp = Path(tempfile.mkdtemp(prefix="pybgp-cnibench-"))
    topo: Topology | None = None
    etcd: EtcdServer | None = None
    try:
        topo = Topology(prefix="pybench")
        node = topo.add_node(NODE, NODE_IP)
        etcd = EtcdServer(name=f"pybgp-cnibench-{os.getpid()}")
        seed_etcd(etcd)
        bindir = tmp / "bin"
        launcher = install_plugins(bindir)
        sock = tmp / "daemon" / "cni.sock"
        which = args.configs.split(",")
        configs = make_configs(etcd, tmp, sock, which)
        if any(c.key == "ours" for c in configs):
            start_daemon(topo, node, sock, tmp / "daemon.log")
        rt = Runtime([bindir], host_netns=node.ns, timeout=60)
        for cfg in configs:  # pods exist before timing; one warm-up pod per config
            cfg.pods = [topo.add_namespace(f"{cfg.key}-{i:03d}") for i in range(args.pods + 1)]
        overhead = netns_exec_overhead(topo, node)
        for cfg in configs:  # warm-up (not counted) and a sanity ping
            att = attachment(cfg, 9999, cfg.pods[-1])
            res = rt.add(cfg.net, att)
            if not topo.wait_ping(cfg.pods[-1], node.addr, within=5):
                raise RuntimeError(f"{cfg.label}: pod {addresses(res)} cannot ping the node")
            rt.delete(cfg.net, att)
        for phase in ("ADD", "DEL"):
            for i in range(args.pods):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"time limit of {args.max_seconds:g}s reached")
                k = i % len(configs)
                for cfg in configs[k:] + configs[:k]:  # rotate who goes first
                    ms = timed_call(rt, cfg, phase, attachment(cfg, i, cfg.pods[i]))
                    (cfg.add_ms if phase == "ADD" else cfg.del_ms).append(ms)
        daemon_log = tmp / "daemon.log" if any(c.key == "ours" for c in configs) else None
        report(configs, args.pods, launcher, overhead, daemon_log)
        return 0
    except CNIError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if topo is not None:
            try:
                topo.close()
            except RuntimeError as exc:
                print(f"clean-up: {exc}", file=sys.stderr)
        if etcd is not None:
            etcd.close()
        shutil.rmtree(tmp, ignore_errors=True)


def report(configs: list[Config], pods: int, launcher: str, overhead: float,
           daemon_log: Path | None) -> None:
    print(f"CNI ADD/DEL latency, {pods} pods per configuration (interleaved), "
          "as the runtime sees it (fork+exec to exit)")
    print(f"pybgp plugin launched by: {launcher}")
    print(f"every figure includes `ip netns exec` into the node: p50 {overhead:.1f} ms; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'configuration':28} {'ADD p50':>8} {'ADD p90':>8} {'DEL p50':>8} {'DEL p90':>8}  ms")
    by = {c.key: c for c in configs}
    for c in configs:
        print(f"{c.label:28} {pct(c.add_ms, 50):8.1f} {pct(c.add_ms, 90):8.1f} "
              f"{pct(c.del_ms, 50):8.1f} {pct(c.del_ms, 90):8.1f}")
    if daemon_log is not None:
        report_daemon(daemon_log)
    ours, ref = by.get("ours") or by.get("ours-nd"), by.get("ref")
    if ours is None or ref is None:
        return
    if "ours-nd" in by and "ours" in by:
        nd = by["ours-nd"]
        print(f"no-daemon / ref ratios: add {pct(nd.add_ms, 50) / pct(ref.add_ms, 50):.2f} "
              f"del {pct(nd.del_ms, 50) / pct(ref.del_ms, 50):.2f}")
    add_ratio = pct(ours.add_ms, 50) / pct(ref.add_ms, 50)
    del_ratio = pct(ours.del_ms, 50) / pct(ref.del_ms, 50)
    print(f"RESULT add_p50_ms={pct(ours.add_ms, 50):.1f} add_p90_ms={pct(ours.add_ms, 90):.1f} "
          f"del_p50_ms={pct(ours.del_ms, 50):.1f} del_p90_ms={pct(ours.del_ms, 90):.1f} "
          f"ref_add_p50_ms={pct(ref.add_ms, 50):.1f} ref_del_p50_ms={pct(ref.del_ms, 50):.1f} "
          f"add_ratio={add_ratio:.2f} del_ratio={del_ratio:.2f} ratio={add_ratio:.2f}")


def report_daemon(log: Path) -> None:
    """The daemon's own time per request (from its debug log), to split start-up from work."""
    took: dict[str, list[float]] = {"ADD": [], "DEL": []}
    pattern = re.compile(r"\b(ADD|DEL) bench-ours-\d{4} took ([0-9.]+) ms")
    for m in pattern.finditer(log.read_text(errors="replace")):
        took[m.group(1)].append(float(m.group(2)))
    if took["ADD"] and took["DEL"]:
        print(f"inside the daemon (its own log): ADD p50 {pct(took['ADD'], 50):.1f} ms, "
              f"DEL p50 {pct(took['DEL'], 50):.1f} ms; the rest is exec, interpreter "
              "start-up and the socket round trip")


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through run()'s finally: clean-up happens


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pods", type=int, default=50, help="pods per configuration (≥ 50)")
    parser.add_argument("--configs", default="ours,ours-nd,ref",
                        help="comma-separated subset of ours,ours-nd,ref")
    parser.add_argument("--max-seconds", type=float, default=900.0,
                        help="give up (and clean up) after this long")
    parser.add_argument("--allow-few", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not (50 <= args.pods <= MAX_PODS or (args.allow_few and 1 <= args.pods <= MAX_PODS)):
        parser.error(f"--pods must be 50..{MAX_PODS}")
    bad = set(args.configs.split(",")) - {"ours", "ours-nd", "ref"}
    if bad or not args.configs:
        parser.error(f"unknown configurations: {sorted(bad)}")
    if os.geteuid() != 0:
        print("run as root: the benchmark creates network namespaces", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _terminate)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
