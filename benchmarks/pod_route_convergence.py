"""Benchmark: a node claims a new IPAM block; how soon does another node route it?

Run as root: ``python -m benchmarks.pod_route_convergence [--blocks 5]``.

One topology (``pbconv-<hex>-…`` namespaces) on a fabric bridge, two pairs
of nodes of the same shape, iBGP full mesh (AS 64512), side by side:

- ours: ``pyb-a`` (198.18.0.11) and ``pyb-b`` (198.18.0.12), Calico Nodes
  running ``pybgp speaker`` (mesh from the datastore, etcd over its unix
  socket). A pod address is taken on A through ``pybgp.ipam.IPAM`` exactly
  as the CNI plugin takes it; when A's current block is full (it is filled
  first, without a new claim) the allocation claims a NEW block: pending
  affinity, block, *confirmed* affinity. t0 = the moment the confirming
  transaction is acknowledged by etcd (a proxy over the IPAM's store
  timestamps it). The speaker on A sees the confirmed affinity, installs the
  blackhole and advertises the block; the speaker on B installs the route.
- reference: ``bird-a`` (198.18.0.21) and ``bird-b`` (198.18.0.22), BIRD 2
  configured as Calico's confd configures BIRD (kernel protocol: learn,
  persist, scan time 2, graceful restart, merge paths; ``Mesh_…`` sessions
  from ``bgp_template``, the higher address passive-side rule). There is no
  confd here, so the harness plays its part: t0 = the moment it writes
  ``blackhole <block>`` into A's kernel (netlink, acknowledged); BIRD's
  kernel protocol learns it, exports it to B, and B's BIRD installs it.

A third side, for context: the same BIRD pair with confd's part played by a
minimal etcd watcher (the speaker's own ``Syncer``): IPAM claims blocks for
a node "bird-a", the watcher writes the blackhole into A's kernel when it
sees the confirmed affinity; t0 = the confirm, as for ours. (Real confd also
renders a template and reloads BIRD; this lower-bounds it.)

t1 = when B's kernel announces the route (a netlink socket subscribed to
RTNLGRP_IPV4_ROUTE inside B's namespace, read by a thread, timestamped on
receipt). Latency = t1 - t0. Each side claims ``--blocks`` new blocks, the
two alternating with a jittered pause between claims (so BIRD's 2 s scan
timer is not hit at a fixed phase); every wait is bounded by ``--timeout``.

The last line is machine-readable:
``RESULT ours_ms=<median> bird_ms=<median> ratio=<ours/bird>``.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks._bird import (
    BgpNeighbor,
    Bird,
    RouteWatch,
    calico_config,
    median,
    mesh_name,
    percentile,
    start_bird,
    wait_bgp_established,
)
from pybgp.datastore.etcdv3 import EtcdClient, EtcdConfig
from pybgp.datastore.kv import Put
from pybgp.datastore.syncer import Syncer, Update
from pybgp.ipam import IPAM, Pool
from pybgp.ipam.keys import affinities_prefix, parse_affinity_key
from pybgp.ipam.records import Affinity
from pybgp.kernel_sync.desired import RTPROT_STATIC, Plan, blackhole
from pybgp.kernel_sync.netlink import RouteWriter
from pybgp.testing.cluster import Cluster
from pybgp.testing.etcd import EtcdServer
from pybgp.testing.netns import Topology

NODE_AS = 64512
OUR_POOL = "198.19.0.0/17"  # IPAM allocates here (ours)
REF_BLOCKS = "198.19.128.0/18"  # the reference's blocks, written by the harness
REF_WATCHED = "198.19.192.0/18"  # IPAM pool of the reference with a watcher as confd
OURS = {"pyb-a": "198.18.0.11", "pyb-b": "198.18.0.12"}
REF = {"bird-a": "198.18.0.21", "bird-b": "198.18.0.22"}


class ConfirmClock:
    """A KVStore proxy that timestamps each transaction confirming an affinity of
    ``node`` (when etcd acknowledged it); everything else passes through."""

    def __init__(self, kv: Any, node: str) -> None:
        self.kv = kv
        self.prefix = affinities_prefix(node)
        self.confirmed: list[tuple[str, float]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.kv, name)

    def txn(self, checks: Sequence[Any], ops: Sequence[Any]) -> int:
        rev = self.kv.txn(checks, ops)
        now = time.time()
        for op in ops:
            if isinstance(op, Put) and op.key.startswith(self.prefix):
                try:
                    state = json.loads(op.value).get("state")
                except ValueError:
                    continue
                if state == "confirmed":
                    self.confirmed.append((op.key, now))
        return int(rev)


class Bench:
    def __init__(self, topo: Topology, cluster: Cluster, workdir: Path, timeout: float) -> None:
        self.topo, self.cluster, self.timeout = topo, cluster, timeout
        for name, ip in OURS.items():
            cluster.add_node(name, f"{ip}/24")
        for name in OURS:
            cluster.start_speaker(name, startup_hold=5.0)
        self.birds: dict[str, Bird] = {}
        for name, ip in REF.items():
            node = topo.add_node(name, f"{ip}/24")
            peers = [BgpNeighbor(mesh_name(oip), oip, NODE_AS,
                                 passive=ipaddress.ip_address(oip) > ipaddress.ip_address(ip))
                     for other, oip in REF.items() if other != name]
            conf = calico_config(ip, NODE_AS, peers, pools=["198.19.0.0/16"])
            self.birds[name] = start_bird(topo, node, workdir, name, conf)
        for name in OURS:
            cluster.wait_established(name, 1, timeout=60)
        for name in REF:
            other = next(oip for o, oip in REF.items() if o != name)
            wait_bgp_established(self.birds[name].ctl, mesh_name(other), 60, step=0.1)
        self.watch = {"ours": RouteWatch(cluster.nodes["pyb-b"].node.ns),
                      "ours-a": RouteWatch(cluster.nodes["pyb-a"].node.ns),
                      "bird": RouteWatch(self.birds["bird-b"].node.ns)}
        self.local_ms: list[float] = []  # ours: confirm -> blackhole in A's own kernel
        self.clock = ConfirmClock(cluster.kv, "pyb-a")
        self.ipam = IPAM(self.clock, "pyb-a")
        self.pools = [Pool(OUR_POOL)]
        self.writer = RouteWriter(self.birds["bird-a"].node.ns)
        self.ref_blocks = list(ipaddress.ip_network(REF_BLOCKS).subnets(new_prefix=26))
        self.claims = 0
        # The reference with confd's part played by a minimal watcher: a
        # confirmed affinity of node "bird-a" in etcd -> blackhole in A's kernel.
        self.wclock = ConfirmClock(cluster.kv, "bird-a")
        self.wipam = IPAM(self.wclock, "bird-a")
        self.wpools = [Pool(REF_WATCHED)]
        self.wclaims = 0
        cfg = EtcdConfig(endpoints=[cluster.etcd.endpoint])
        self.syncer = Syncer(lambda: EtcdClient(cfg), affinities_prefix("bird-a"))
        self.wthread = threading.Thread(target=self._confd, name="confd-emulation", daemon=True)
        self.wthread.start()

    def _confd(self) -> None:
        writer = RouteWriter(self.birds["bird-a"].node.ns)
        try:
            for ev in self.syncer.events():
                if not isinstance(ev, Update) or ev.value is None:
                    continue
                parsed = parse_affinity_key(ev.key)
                if parsed is None or Affinity.decode(ev.value).state != "confirmed":
                    continue
                writer.apply(Plan(add=[blackhole(str(parsed[1]), protocol=RTPROT_STATIC)]))
        finally:
            writer.close()

    def close(self) -> None:
        self.syncer.stop()
        self.wthread.join(10)
        for w in self.watch.values():
            w.close()
        self.writer.close()
        for b in self.birds.values():
            b.stop()

    def ours(self, i: int) -> float | None:
        """Fill A's current block (no claim), then allocate: a new block is claimed."""
        attrs = {"node": "pyb-a", "namespace": "bench", "pod": f"pod-{i}"}
        if self.claims:
            before = len(self.clock.confirmed)
            self.ipam.auto_assign(f"k8s-pod-network.filler-{i}", 63, attrs, self.pools)
            if len(self.clock.confirmed) != before:
                raise RuntimeError("filling the current block claimed a new one")
            time.sleep(1.0)  # let the fill's effects (none expected) pass
        before = len(self.clock.confirmed)
        ips = self.ipam.auto_assign(f"k8s-pod-network.pod-{i}", 1, attrs, self.pools)
        new = self.clock.confirmed[before:]
        if len(new) != 1:
            raise RuntimeError(f"expected one new confirmed affinity, got {new}")
        self.claims += 1
        block = str(ips[0].network)
        if not new[0][0].endswith(block.replace("/", "-")):
            raise RuntimeError(f"address {ips[0]} is not in the new block {new[0][0]}")
        t1 = self.watch["ours"].wait(block, self.timeout)
        ta = self.watch["ours-a"].wait(block, 1.0)
        if ta is not None:
            self.local_ms.append((ta - new[0][1]) * 1000)
        return None if t1 is None else t1 - new[0][1]

    def bird_watched(self, i: int) -> float | None:
        """As ours, for node "bird-a": the confirmed affinity reaches A's kernel
        through the watcher, then BIRD takes it from there."""
        attrs = {"node": "bird-a", "namespace": "bench", "pod": f"pod-{i}"}
        if self.wclaims:
            self.wipam.auto_assign(f"k8s-pod-network.wfiller-{i}", 63, attrs, self.wpools)
            time.sleep(1.0)
        before = len(self.wclock.confirmed)
        ips = self.wipam.auto_assign(f"k8s-pod-network.wpod-{i}", 1, attrs, self.wpools)
        new = self.wclock.confirmed[before:]
        if len(new) != 1:
            raise RuntimeError(f"expected one new confirmed affinity, got {new}")
        self.wclaims += 1
        t1 = self.watch["bird"].wait(str(ips[0].network), self.timeout)
        return None if t1 is None else t1 - new[0][1]

    def bird(self, i: int) -> float | None:
        block = str(self.ref_blocks[i])
        t0 = time.time()
        res = self.writer.apply(Plan(add=[blackhole(block, protocol=RTPROT_STATIC)]))
        if res.errors:
            raise RuntimeError(f"writing blackhole {block}: {res.errors[0]}")
        t1 = self.watch["bird"].wait(block, self.timeout)
        return None if t1 is None else t1 - t0


def fmt(x: float | None) -> str:
    return "TIMEOUT" if x is None else f"{x * 1000:.1f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--blocks", type=int, default=5, help="new blocks per side (≤ 15)")
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for a route")
    ap.add_argument("--seed", type=int, default=1, help="seed of the pauses between claims")
    args = ap.parse_args(argv)
    if not 1 <= args.blocks <= 15:  # max blocks per host is 20
        ap.error("--blocks: 1..15")
    if os.geteuid() != 0:
        print("pod_route_convergence: must run as root (it creates network namespaces)",
              file=sys.stderr)
        return 2
    for tool in ("bird", "etcd"):
        if shutil.which(tool) is None:
            print(f"pod_route_convergence: {tool} not found", file=sys.stderr)
            return 2

    def _terminate(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)  # unwinds through the finally blocks: clean-up

    signal.signal(signal.SIGTERM, _terminate)
    rng = random.Random(args.seed)
    workdir = Path(tempfile.mkdtemp(prefix="pybgp-podconv-"))
    lat: dict[str, list[float | None]] = {"ours": [], "bird": [], "birdw": []}
    try:
        with EtcdServer(name=f"pybgp-podconv-{os.getpid()}") as etcd, \
                Topology(prefix="pbconv") as topo:
            cluster = Cluster(topo, etcd, pool=OUR_POOL, workdir=str(workdir / "cluster"))
            try:
                bench = Bench(topo, cluster, workdir, args.timeout)
                try:
                    time.sleep(3.0)  # everything settled: sessions up, first kernel scans done
                    for i in range(args.blocks):
                        order = ["ours", "bird", "birdw"]
                        rng.shuffle(order)
                        for who in order:
                            run = {"ours": bench.ours, "bird": bench.bird,
                                   "birdw": bench.bird_watched}[who]
                            x = run(i)
                            lat[who].append(x)
                            print(f"  block {i} {who:<5} {fmt(x):>8} ms", flush=True)
                            time.sleep(rng.uniform(0.5, 2.5))
                finally:
                    local_ms = bench.local_ms
                    bench.close()
            finally:
                cluster.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    print()
    print(f"{'side (t0 -> route in B kernel)':<56} {'median ms':>9} {'p90 ms':>7}  runs (ms)")
    summary: dict[str, float] = {}
    for who, label in (("ours", "pybgp speaker -> speaker (t0: affinity confirmed)"),
                       ("bird", "BIRD 2 (Calico cfg) -> BIRD 2 (t0: blackhole written)"),
                       ("birdw", "BIRD 2 + etcd watcher as confd (t0: confirmed)")):
        xs = lat[who]
        done = [x for x in xs if x is not None]
        med = median(done) if len(done) == len(xs) else float("inf")
        p90 = percentile(done, 90) if len(done) == len(xs) else float("inf")
        summary[who] = med
        print(f"{label:<56} {med * 1000:>9.1f} {p90 * 1000:>7.1f}  "
              f"{', '.join(fmt(x) for x in xs)}")
    ours, bird = summary["ours"], summary["bird"]
    print(f"ours / (BIRD + watcher): {ours / summary['birdw']:.2f}")
    if local_ms:
        print(f"ours, confirm -> blackhole in A's own kernel (speaker A's share): median "
              f"{median(local_ms):.1f} ms; the rest is A -> ExaBGP -> BGP -> ExaBGP -> B")
    print(f"RESULT ours_ms={ours * 1000:.1f} bird_ms={bird * 1000:.1f} ratio={ours / bird:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
