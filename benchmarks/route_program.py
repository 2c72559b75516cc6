"""Benchmark: programming N kernel routes, pybgp's RouteWriter vs references.

Run as root: ``python -m benchmarks.route_program [--routes N]``.

Everything happens in a throwaway network namespace (``pybgp-bench-<hex>``)
that is removed by name at the end, even on failure. Routes are /32s in
198.19.0.0/16 via 198.18.0.2 on a veth with 198.18.0.1/24, protocol 12.
Methods, each starting from an empty table:

- ours: :class:`pybgp.kernel_sync.RouteWriter`, batched netlink, one socket;
- pyroute2: ``IPRoute().route("add", ...)``, one call per route;
- ip -batch: iproute2 reading the same routes from a file (one process).

The last line is machine-readable:
``RESULT routes=N ours_rps=… pyroute2_rps=… ipbatch_rps=… ratio=<ours/ipbatch>``.
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

from pybgp.kernel_sync import KernelSync, RouteWriter
from pybgp.kernel_sync.desired import KRoute, Plan, via

PROTO = 12
GATEWAY = "198.18.0.2"


def sh(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


def count_routes(ns: str) -> int:
    out = sh("ip", "-n", ns, "route", "show", "proto", str(PROTO))
    return sum(1 for line in out.splitlines() if line.strip())


def host(i: int) -> str:
    return f"198.19.{i >> 8}.{i & 255}"


def make_netns() -> str:
    ns = f"pybgp-bench-{secrets.token_hex(4)}"
    sh("ip", "netns", "add", ns)
    try:
        sh("ip", "-n", ns, "link", "add", "bench0", "type", "veth", "peer", "name", "bench1")
        for dev in ("lo", "bench0", "bench1"):
            sh("ip", "-n", ns, "link", "set", dev, "up")
        sh("ip", "-n", ns, "addr", "add", "198.18.0.1/24", "dev", "bench0")
    except BaseException:
        sh("ip", "netns", "del", ns)
        raise
    return ns


def flush(ns: str) -> None:
    sh("ip", "-n", ns, "route", "flush", "proto", str(PROTO))


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bench_ours(ns: str, routes: list[KRoute], chunk: int) -> tuple[float, float, float]:
    with RouteWriter(ns, chunk=chunk) as writer:
        res = writer.apply(Plan(add=routes[:10]))  # warm-up: interface cache, code paths
        if res.errors:
            raise RuntimeError(f"{len(res.errors)} errors, first: {res.errors[0]}")
        flush(ns)
        t0 = time.perf_counter()
        res = writer.apply(Plan(add=routes))
        t_add = time.perf_counter() - t0
        if res.errors:
            raise RuntimeError(f"{len(res.errors)} errors, first: {res.errors[0]}")
        got = count_routes(ns)
        if got != len(routes):
            raise RuntimeError(f"ours: {got} routes in the kernel, expected {len(routes)}")
        # A restart: dump our routes, diff against the same desired set, write nothing.
        ks = KernelSync(writer, protocol=PROTO)
        ks.set_desired(routes)
        before = writer.writes
        t_resync = timed(ks.resync)
        if writer.writes != before:
            raise RuntimeError("resync with nothing to do wrote to the kernel")
        t_del = timed(lambda: writer.apply(Plan(delete=routes)))
    return t_add, t_del, t_resync


def bench_pyroute2(ns: str, n: int) -> float:
    from pyroute2 import IPRoute  # imported here: only the reference needs it

    with IPRoute(netns=ns, flags=0) as ipr:  # flags=0: never create the netns

        def run() -> None:
            for i in range(n):
                ipr.route("add", dst=f"{host(i)}/32", gateway=GATEWAY, proto=PROTO)

        t = timed(run)
    got = count_routes(ns)
    if got != n:
        raise RuntimeError(f"pyroute2: {got} routes in the kernel, expected {n}")
    return t


def bench_ipbatch(ns: str, n: int) -> float:
    with tempfile.NamedTemporaryFile("w", prefix="pybgp-bench-", suffix=".ip") as f:
        for i in range(n):
            f.write(f"route add {host(i)}/32 via {GATEWAY} proto {PROTO}\n")
        f.flush()
        t = timed(lambda: sh("ip", "-n", ns, "-batch", f.name))
    got = count_routes(ns)
    if got != n:
        raise RuntimeError(f"ip -batch: {got} routes in the kernel, expected {n}")
    return t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--routes", type=int, default=10_000, help="routes to program (≤ 65536)")
    ap.add_argument("--chunk", type=int, default=1000, help="RouteWriter requests in flight")
    ap.add_argument("--skip-pyroute2", action="store_true", help="skip the slow reference")
    args = ap.parse_args(argv)
    n = args.routes
    if not 1 <= n <= 65536:
        ap.error("--routes must be 1..65536")
    if os.geteuid() != 0:
        print("route_program: must run as root (it creates a network namespace)", file=sys.stderr)
        return 2
    routes = [via(f"{host(i)}/32", GATEWAY, protocol=PROTO) for i in range(n)]
    ns = make_netns()
    try:
        t_ours, t_ours_del, t_resync = bench_ours(ns, routes, args.chunk)
        flush(ns)
        t_pyr = float("nan") if args.skip_pyroute2 else bench_pyroute2(ns, n)
        flush(ns)
        t_ipb = bench_ipbatch(ns, n)
        flush(ns)
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
    rows = [
        ("pybgp RouteWriter add", t_ours),
        ("pybgp RouteWriter delete", t_ours_del),
        ("pybgp KernelSync.resync, all right (0 writes)", t_resync),
        ("pyroute2 IPRoute.route('add') per route", t_pyr),
        ("ip -batch add", t_ipb),
    ]
    print(f"{'method':<46} {'seconds':>9} {'routes/s':>10}")
    for name, t in rows:
        print(f"{name:<46} {t:>9.3f} {n / t:>10.0f}")
    ours, pyr, ipb = n / t_ours, n / t_pyr, n / t_ipb
    print(
        f"RESULT routes={n} ours_rps={ours:.0f} pyroute2_rps={pyr:.0f} "
        f"ipbatch_rps={ipb:.0f} ratio={ours / ipb:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
