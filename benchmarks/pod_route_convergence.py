"""Benchmark: a node claims a new IPAM block; how soon does another node route it?

Run as root: ``python -m benchmarks.pod_route_convergence [--blocks 5] [--stages]``.

One topology (``pbconv-<hex>-…`` namespaces) on a fabric bridge, two pairs
of nodes of the same shape, iBGP full mesh (AS 64512), side by side:

- ours: ``pyb-a`` (198.18.0.11) and ``pyb-b`` (198.18.0.12), Calico Nodes
  running ``pybgp speaker`` (mesh from the datastore, etcd over its unix
  socket). A pod address is taken on A through ``pybgp.ipam.IPAM`` exactly
  as the CNI plugin takes it; when A's current block is full (it is filled
  first, without a new claim) the allocation claims a NEW block: pending
  affinity, block, *confirmed* affinity. t0 = the commit of the confirming
  transaction as first learnt of: the earlier of etcd's acknowledgement (a
  proxy over the IPAM's store timestamps it) and the route clock's watch
  event for the key (below; the ack is read by a thread of this process,
  a few ms late when it waits for the GIL).
  The speaker on A sees the confirmed affinity, installs the blackhole and
  advertises the block; the speaker on B installs the route.
- reference: ``bird-a`` (198.18.0.21) and ``bird-b`` (198.18.0.22), BIRD 2
  configured as Calico's confd configures BIRD (kernel protocol: learn,
  persist, scan time 2, graceful restart, merge paths; ``Mesh_…`` sessions
  from ``bgp_template``, the higher address passive-side rule).

The reference is run three ways:

- **confd-like** (the RESULT's ``bird_ms``): what Calico does. A small
  process (``benchmarks._confd_like``, an etcd watcher with the speaker's own
  ``Syncer``; a process of its own, as confd is, not a thread waiting for
  this process's GIL) plays confd for node ``bird-a``: on
  every change under ``/calico/ipam/v2/host/bird-a/ipv4/block/`` it renders
  A's whole BIRD configuration with a ``protocol static`` holding
  ``route <block> blackhole;`` for every block confirmed affine to A and the
  ``calico_aggr`` export step (accept the block, reject what is inside it),
  as confd's bird_aggr.cfg.template does; if the file changed it writes it
  (atomically) and runs ``birdc -s <ctl> configure`` (bounded by a timeout).
  BIRD reconfigures, exports the static route; B's BIRD installs it.
  t0 = the confirm, as for ours. What it still leaves out: confd's own
  machinery (its datastore client/syncer, Go template engine over its
  cache, its check of the rendered file) and Calico's reload path
  (``sv hup bird`` through runit, i.e. SIGHUP, instead of the control
  socket); none of that is measured here, so this row is a lower bound
  for Calico.
- **kernel-learn shortcut, watcher**: a watcher for node ``bird-a-kw``
  writes ``blackhole <block>`` into A's kernel when it sees the confirmed
  affinity; BIRD's kernel protocol learns it (netlink notification) and
  exports it. t0 = the confirm. Not how Calico originates blocks.
- **kernel-learn shortcut, direct**: the harness writes the blackhole into
  A's kernel itself; t0 = netlink acknowledged the write.

t1 = when B's kernel announces the route (a netlink socket subscribed to
RTNLGRP_IPV4_ROUTE inside B's namespace). t1, and the watch event of t0,
are timestamped on receipt by a small process of its own,
``benchmarks._route_clock``, for every side: a thread of this process read
the clock only once it had the GIL, which the IPAM client's thread, still
working on the claim's allocation, could hold for milliseconds. Latency =
t1 - t0. Each side claims ``--blocks`` new blocks, the sides in shuffled
order with a jittered pause between claims; every wait is bounded by
``--timeout``.

Stages of ours, per block: always, the route clock's watch event for the
confirmed affinity (the same ``Syncer`` as the speaker's). With ``--stages`` only,
because each wakes a thread of this process on ours' path while the route
is on its way (the reference has no such observers): a netlink watcher in
A timestamps A's own blackhole; an AF_PACKET socket in A timestamps
(kernel time) the first BGP UPDATE carrying the block; ``perf record`` of
syscall tracepoints on both speakers (kernel timestamps, no ptrace stops)
marks when speaker A wrote the command to ExaBGP A's pipe and when speaker
B read ExaBGP B's JSON from its pipe.

The last line is machine-readable:
``RESULT ours_ms=<median> bird_ms=<median confd-like> ratio=<ours/bird>``.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks._bird import (
    BgpNeighbor,
    BgpWireWatch,
    Bird,
    RouteClock,
    RouteWatch,
    calico_config,
    median,
    mesh_name,
    percentile,
    start_bird,
    stop_process_group,
    wait_bgp_established,
)
from benchmarks._confd_like import confirmed_blocks
from pybgp.datastore.etcdv3 import EtcdClient, EtcdConfig
from pybgp.datastore.kv import Put
from pybgp.datastore.syncer import InSync, Syncer, Update
from pybgp.ipam import IPAM, Pool
from pybgp.ipam.keys import affinities_prefix
from pybgp.kernel_sync.desired import RTPROT_STATIC, Plan, blackhole
from pybgp.kernel_sync.netlink import RouteWriter
from pybgp.testing.cluster import Cluster
from pybgp.testing.etcd import EtcdServer
from pybgp.testing.netns import Topology

NODE_AS = 64512
OUR_POOL = "198.19.0.0/17"  # IPAM allocates here (ours)
REF_BLOCKS = "198.19.128.0/18"  # kernel-learn shortcut, direct: written by the harness
REF_KWATCH = "198.19.192.0/19"  # kernel-learn shortcut, watcher: IPAM pool of node bird-a-kw
REF_CONFD = "198.19.224.0/19"  # confd-like: IPAM pool of node bird-a
REF_POOLS = ["198.19.0.0/16"]  # the reference's Calico IP pools (its export filter)
OURS = {"pyb-a": "198.18.0.11", "pyb-b": "198.18.0.12"}
REF = {"bird-a": "198.18.0.21", "bird-b": "198.18.0.22"}
KW_NODE = "bird-a-kw"  # IPAM node of the kernel-learn watcher's blocks
SIDES = ("ours", "confd", "birdw", "bird")


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


class Watcher:
    """A thread following one node's affinities with the speaker's ``Syncer``;
    ``on_change(blocks, seen)`` runs on every update with the confirmed blocks."""

    def __init__(self, endpoint: str, node: str,
                 on_change: Callable[[list[str], float], None]) -> None:
        cfg = EtcdConfig(endpoints=[endpoint])
        self.syncer = Syncer(lambda: EtcdClient(cfg), affinities_prefix(node))
        self.on_change = on_change
        self.errors: list[str] = []
        self.first_seen: dict[str, float] = {}  # block -> its confirmed affinity's event
        self.thread = threading.Thread(target=self._run, name=f"watch-{node}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        for ev in self.syncer.events():
            if isinstance(ev, Update | InSync):
                seen = time.time()
                blocks = confirmed_blocks(self.syncer.cache)
                for b in blocks:
                    self.first_seen.setdefault(b, seen)
                try:
                    self.on_change(blocks, seen)
                except Exception as exc:  # noqa: BLE001 - reported, the run goes on
                    self.errors.append(repr(exc))

    def close(self) -> None:
        self.syncer.stop()
        self.thread.join(10)


class ConfdLike:
    """confd's part for a BIRD node, as a process of its own
    (``benchmarks._confd_like``: render, write if changed, ``birdc configure``).

    ``stages[block] = (watch event seen, config written, birdc returned)``.
    """

    def __init__(self, endpoint: str, node: str, bird: Bird, render: dict[str, Any]) -> None:
        self.stages: dict[str, tuple[float, float, float]] = {}
        self.errors: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks._confd_like", "--etcd", endpoint, "--node", node,
             "--dir", str(bird.dir), "--render", json.dumps(render)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True)
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            self.close()
            raise RuntimeError("the confd-like process did not start")
        self.thread = threading.Thread(target=self._run, name=f"confd-{node}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            words = line.split()
            if words and words[0] == "stage":
                self.stages[words[1]] = (float(words[2]), float(words[3]), float(words[4]))
            elif words:
                self.errors.append(line.strip())

    def close(self) -> None:
        stop_process_group(self.proc)


class PipeTrace:
    """``perf record`` of one speaker's ``read`` and ``write`` calls (kernel
    tracepoints, no ptrace stops): when it wrote a command to ExaBGP's pipe,
    or read ExaBGP's JSON from it.

    The speaker talks to ExaBGP on the pipes its API helper passed it, with
    plain ``read``/``write``; its sockets (etcd, netlink, the loop's wake-up)
    use ``send*``/``recv*``, and its log goes to fd 2. Recorded: exits of
    ``read`` (with the byte count) and entries of ``write`` (with the fd).
    """

    EVENTS = ("syscalls:sys_exit_read", "syscalls:sys_enter_write")
    LINE = re.compile(r"^\s*(\d+)\s+(\d+\.\d+):\s+syscalls:(\w+):\s*(.*)$")

    def __init__(self, topo: Topology, node: Any, pid: int, out: Path) -> None:
        self.out = out
        self.proc = topo.popen(node, "perf", "record", "-q", "-k", "CLOCK_MONOTONIC",
                               "-e", ",".join(self.EVENTS), "-p", str(pid), "-o", str(out),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.calls: list[tuple[str, float, int]] | None = None
        time.sleep(0.5)  # attached

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGINT)  # perf writes its file and exits
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                stop_process_group(self.proc)

    def _load(self) -> list[tuple[str, float, int]]:
        """(event, wall-clock time, fd or return value) of every recorded call."""
        if self.calls is None:
            self.calls = []
            r = subprocess.run(["perf", "script", "-i", str(self.out), "-F",
                                "tid,time,event,trace", "--ns"],
                               capture_output=True, text=True, timeout=60, check=False)
            offset = time.time() - time.monotonic()
            for line in r.stdout.splitlines():
                m = self.LINE.match(line)
                if not m:
                    continue
                event, rest = m.group(3), m.group(4)
                num = re.search(r"0x([0-9a-f]+)", rest)
                value = int(num.group(1), 16) if num else -1
                if value >= 1 << 63:
                    value -= 1 << 64
                self.calls.append((event, float(m.group(2)) + offset, value))
        return self.calls

    def first(self, events: Sequence[str], since: float | None, *,
              fd: int | None = None, not_fd: int | None = None) -> float | None:
        """The first call of ``events`` at or after ``since`` that moved data
        (exits: return > 0; entries: on ``fd`` / not on ``not_fd`` if given)."""
        if since is None:
            return None
        for event, t, value in self._load():
            if event not in events or t < since:
                continue
            if event.startswith("sys_exit") and value <= 0:
                continue
            if (fd is not None and value != fd) or (not_fd is not None and value == not_fd):
                continue
            return t
        return None


class Bench:
    def __init__(self, topo: Topology, cluster: Cluster, workdir: Path, timeout: float,
                 stages: bool) -> None:
        self.topo, self.cluster, self.timeout = topo, cluster, timeout
        for name, ip in OURS.items():
            cluster.add_node(name, f"{ip}/24")
        for name in OURS:
            cluster.start_speaker(name, startup_hold=5.0)
        self.birds: dict[str, Bird] = {}
        # What the confd-like process renders BIRD's configuration from.
        self.render_args: dict[str, dict[str, Any]] = {}
        for name, ip in REF.items():
            node = topo.add_node(name, f"{ip}/24")
            peers = [BgpNeighbor(mesh_name(oip), oip, NODE_AS,
                                 passive=ipaddress.IPv4Address(oip) > ipaddress.IPv4Address(ip))
                     for other, oip in REF.items() if other != name]
            self.render_args[name] = {
                "router_id": ip, "asn": NODE_AS, "pools": REF_POOLS,
                "neighbors": [[p.name, p.address, p.asn, p.passive] for p in peers]}
            self.birds[name] = start_bird(topo, node, workdir, name,
                                          calico_config(ip, NODE_AS, peers, pools=REF_POOLS))
        for name in OURS:
            cluster.wait_established(name, 1, timeout=60)
        for name in REF:
            other = next(oip for o, oip in REF.items() if o != name)
            wait_bgp_established(self.birds[name].ctl, mesh_name(other), 60, step=0.1)
        # t0 and t1, every side: the confirm seen in etcd and B's kernel
        # announcing the route, timed by a process of its own (this one's
        # threads would read the clock late).
        self.b_ns = {"ours": cluster.nodes["pyb-b"].node.ns,
                     "bird": self.birds["bird-b"].node.ns}
        self.timer = RouteClock(list(self.b_ns.values()), cluster.etcd.endpoint,
                                ["pyb-a", "bird-a", KW_NODE])
        self.watch: dict[str, RouteWatch] = {}
        # Observers of ours' stages wake a thread of this process on ours'
        # path (A's blackhole, every BGP segment in A): only with --stages.
        self.wire: BgpWireWatch | None = None
        if stages:
            a_ns = cluster.nodes["pyb-a"].node.ns
            self.watch["ours-a"] = RouteWatch(a_ns)
            self.wire = BgpWireWatch(a_ns)
        self.stage_rows: list[dict[str, float | None]] = []  # ours, per block
        self.clock = ConfirmClock(cluster.kv, "pyb-a")
        self.ipam = IPAM(self.clock, "pyb-a")
        self.pools = [Pool(OUR_POOL)]
        self.writer = RouteWriter(self.birds["bird-a"].node.ns)
        self.ref_blocks = list(ipaddress.ip_network(REF_BLOCKS).subnets(new_prefix=26))
        self.claims: dict[str, int] = {"ours": 0, "confd": 0, "birdw": 0}
        endpoint = cluster.etcd.endpoint
        # confd-like: node bird-a's confirmed blocks -> static routes in BIRD's config.
        self.confd = ConfdLike(endpoint, "bird-a", self.birds["bird-a"],
                               self.render_args["bird-a"])
        self.wclock = {"confd": ConfirmClock(cluster.kv, "bird-a"),
                       "birdw": ConfirmClock(cluster.kv, KW_NODE)}
        self.wipam = {"confd": IPAM(self.wclock["confd"], "bird-a"),
                      "birdw": IPAM(self.wclock["birdw"], KW_NODE)}
        self.wpools = {"confd": [Pool(REF_CONFD)], "birdw": [Pool(REF_KWATCH)]}
        # kernel-learn shortcut: node bird-a-kw's confirmed blocks -> kernel blackholes in A.
        self.kw_writer = RouteWriter(self.birds["bird-a"].node.ns)
        self.kw_done: set[str] = set()
        self.watchers = [Watcher(endpoint, KW_NODE, self._kernel_watcher)]
        self.traces: dict[str, PipeTrace] = {}
        if stages:
            for name in OURS:
                cn = cluster.nodes[name]
                assert cn.speaker is not None
                self.traces[name] = PipeTrace(topo, cn.node, cn.speaker.pid,
                                              workdir / f"perf-{name}.data")

    def _kernel_watcher(self, blocks: list[str], seen: float) -> None:
        new = [b for b in blocks if b not in self.kw_done]
        if new:
            res = self.kw_writer.apply(Plan(add=[blackhole(b, protocol=RTPROT_STATIC)
                                                 for b in new]))
            if res.errors:
                raise RuntimeError(f"writing blackholes {new}: {res.errors[0]}")
            self.kw_done.update(new)

    def pipe_stages(self) -> None:
        """Add the speakers' pipe marks to each block's row (after the perf
        records stop)."""
        if not self.traces:
            return
        ta, tb = self.traces["pyb-a"], self.traces["pyb-b"]
        for t in (ta, tb):
            t.stop()
        for row in self.stage_rows:
            row["a_cmd"] = ta.first(("sys_enter_write",), row["t0"] - 0.05, not_fd=2)  # type: ignore[operator]
            row["b_json"] = tb.first(("sys_exit_read",), row.get("wire"))

    def close(self) -> None:
        for t in self.traces.values():
            t.stop()
        for w in self.watchers:
            w.close()
        self.confd.close()
        for rw in self.watch.values():
            rw.close()
        self.timer.close()
        if self.wire is not None:
            self.wire.close()
        self.writer.close()
        self.kw_writer.close()
        for b in self.birds.values():
            b.stop()

    def _claim(self, side: str, clock: ConfirmClock, ipam: IPAM, pools: list[Pool],
               node: str, i: int) -> tuple[str, float]:
        """Fill the node's current block (no claim), then allocate: a new block is
        claimed. (block, t0 = etcd acknowledged the confirm)."""
        attrs = {"node": node, "namespace": "bench", "pod": f"pod-{i}"}
        if self.claims[side]:
            before = len(clock.confirmed)
            ipam.auto_assign(f"k8s-pod-network.{side}-filler-{i}", 63, attrs, pools)
            if len(clock.confirmed) != before:
                raise RuntimeError("filling the current block claimed a new one")
            time.sleep(1.0)  # let the fill's effects (none expected) pass
        before = len(clock.confirmed)
        ips = ipam.auto_assign(f"k8s-pod-network.{side}-pod-{i}", 1, attrs, pools)
        new = clock.confirmed[before:]
        if len(new) != 1:
            raise RuntimeError(f"expected one new confirmed affinity, got {new}")
        self.claims[side] += 1
        block = str(ips[0].network)
        if not new[0][0].endswith(block.replace("/", "-")):
            raise RuntimeError(f"address {ips[0]} is not in the new block {new[0][0]}")
        # t0: the commit as first learnt of: the earlier of the transaction's
        # ack (read by this process's IPAM thread, late when it waits for
        # the GIL) and the route clock's watch event.
        acked = new[0][1]
        seen = self.timer.wait("etcd", block, 1.0)
        return block, acked if seen is None else min(acked, seen)

    def ours(self, i: int) -> float | None:
        block, t0 = self._claim("ours", self.clock, self.ipam, self.pools, "pyb-a", i)
        t1 = self.timer.wait(self.b_ns["ours"], block, self.timeout)
        row: dict[str, float | None] = {"t0": t0, "t1": t1}
        row["watch"] = self.timer.wait("etcd", block, 1.0)
        if self.wire is not None:
            row["a_kernel"] = self.watch["ours-a"].wait(block, 1.0)
            row["wire"] = self.wire.first(block, t0)
        self.stage_rows.append(row)
        return None if t1 is None else t1 - t0

    def watched(self, side: str, i: int) -> float | None:
        node = "bird-a" if side == "confd" else KW_NODE
        block, t0 = self._claim(side, self.wclock[side], self.wipam[side], self.wpools[side],
                                node, i)
        t1 = self.timer.wait(self.b_ns["bird"], block, self.timeout)
        return None if t1 is None else t1 - t0

    def bird(self, i: int) -> float | None:
        block = str(self.ref_blocks[i])
        t0 = time.time()
        res = self.writer.apply(Plan(add=[blackhole(block, protocol=RTPROT_STATIC)]))
        if res.errors:
            raise RuntimeError(f"writing blackhole {block}: {res.errors[0]}")
        t1 = self.timer.wait(self.b_ns["bird"], block, self.timeout)
        return None if t1 is None else t1 - t0

    def confd_stages(self) -> list[tuple[float, float, float]]:
        return list(self.confd.stages.values())


def fmt(x: float | None) -> str:
    return "TIMEOUT" if x is None else f"{x * 1000:.1f}"


def _stage_table(rows: list[dict[str, float | None]]) -> list[tuple[str, list[float]]]:
    """Per stage, the per-block durations in ms (blocks lacking a mark are skipped)."""
    chain = [("t0", "watch", "etcd: confirm -> watch event (route clock)")]
    if any("a_cmd" in r for r in rows):
        chain += [("watch", "a_cmd", "speaker A: watch event -> command in ExaBGP A's pipe"),
                  ("a_cmd", "wire", "ExaBGP A: command -> UPDATE on the wire"),
                  ("wire", "b_json", "ExaBGP B: UPDATE -> JSON read by speaker B"),
                  ("b_json", "t1", "speaker B: JSON -> route in B's kernel")]
    elif any("wire" in r for r in rows):
        chain += [("watch", "wire", "speaker A + ExaBGP A: -> UPDATE on the wire"),
                  ("wire", "t1", "ExaBGP B + speaker B: -> route in B's kernel")]
    chain += [("t0", "a_kernel", "(side branch) confirm -> blackhole in A's kernel"),
              ("t0", "t1", "total: confirm -> route in B's kernel")]
    out = []
    for a, b, label in chain:
        xs = []
        for r in rows:
            ta, tb = r.get(a), r.get(b)
            if ta is not None and tb is not None:
                xs.append((tb - ta) * 1000)
        out.append((label, xs))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--blocks", type=int, default=5, help="new blocks per side (≤ 15)")
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for a route")
    ap.add_argument("--seed", type=int, default=1, help="seed of the pauses between claims")
    ap.add_argument("--stages", action="store_true",
                    help="also observe ours' stages (A's kernel, the wire, both speakers' "
                         "pipe I/O with perf) for a finer breakdown")
    args = ap.parse_args(argv)
    if not 1 <= args.blocks <= 15:  # max blocks per host is 20
        ap.error("--blocks: 1..15")
    if os.geteuid() != 0:
        print("pod_route_convergence: must run as root (it creates network namespaces)",
              file=sys.stderr)
        return 2
    for tool in ("bird", "birdc", "etcd") + (("perf",) if args.stages else ()):
        if shutil.which(tool) is None:
            print(f"pod_route_convergence: {tool} not found", file=sys.stderr)
            return 2

    def _terminate(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)  # unwinds through the finally blocks: clean-up

    signal.signal(signal.SIGTERM, _terminate)
    rng = random.Random(args.seed)
    workdir = Path(tempfile.mkdtemp(prefix="pybgp-podconv-"))
    lat: dict[str, list[float | None]] = {s: [] for s in SIDES}
    stage_rows: list[dict[str, float | None]] = []
    confd_stages: list[tuple[float, float, float]] = []
    errors: list[str] = []
    try:
        with EtcdServer(name=f"pybgp-podconv-{os.getpid()}") as etcd, \
                Topology(prefix="pbconv") as topo:
            cluster = Cluster(topo, etcd, pool=OUR_POOL, workdir=str(workdir / "cluster"))
            try:
                bench = Bench(topo, cluster, workdir, args.timeout, args.stages)
                try:
                    time.sleep(3.0)  # everything settled: sessions up, first kernel scans done
                    for i in range(args.blocks):
                        order = list(SIDES)
                        rng.shuffle(order)
                        for who in order:
                            if who == "ours":
                                x = bench.ours(i)
                            elif who == "bird":
                                x = bench.bird(i)
                            else:
                                x = bench.watched(who, i)
                            lat[who].append(x)
                            print(f"  block {i} {who:<5} {fmt(x):>8} ms", flush=True)
                            time.sleep(rng.uniform(0.5, 2.5))
                finally:
                    with contextlib.suppress(Exception):
                        bench.pipe_stages()
                    stage_rows = bench.stage_rows
                    confd_stages = bench.confd_stages()
                    errors = [e for w in bench.watchers for e in w.errors] + bench.confd.errors
                    bench.close()
            finally:
                cluster.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    labels = {
        "ours": "pybgp speaker -> speaker (t0: affinity confirmed)",
        "confd": "BIRD 2 + confd-like watcher: static route, birdc configure (t0: confirmed)",
        "birdw": "BIRD 2, kernel-learn shortcut via watcher (t0: confirmed)",
        "bird": "BIRD 2, kernel-learn shortcut, direct (t0: blackhole written)",
    }
    print()
    print(f"{'side (t0 -> route in B kernel)':<76} {'median ms':>9} {'p90 ms':>7}  runs (ms)")
    summary: dict[str, float] = {}
    for who in SIDES:
        xs = lat[who]
        done = [x for x in xs if x is not None]
        med = median(done) if len(done) == len(xs) else float("inf")
        p90 = percentile(done, 90) if len(done) == len(xs) else float("inf")
        summary[who] = med
        print(f"{labels[who]:<76} {med * 1000:>9.1f} {p90 * 1000:>7.1f}  "
              f"{', '.join(fmt(x) for x in xs)}")
    print()
    print("ours, stage by stage (median ms over the blocks; runs):")
    for label, ms in _stage_table(stage_rows):
        if ms:
            print(f"  {label:<58} {median(ms):>6.2f}  ({', '.join(f'{x:.2f}' for x in ms)})")
    if confd_stages:
        cw = [(w - s) * 1000 for s, w, _ in confd_stages]
        cc = [(d - w) * 1000 for _, w, d in confd_stages]
        print("confd-like, stage medians: watch event -> config written "
              f"{median(cw):.2f} ms; birdc configure {median(cc):.2f} ms")
    for e in errors[:5]:
        print(f"watcher error: {e}")
    ours, bird = summary["ours"], summary["confd"]
    print("bird_ms below = the confd-like row (BIRD as Calico drives it, minus confd's own "
          "machinery); the kernel-learn shortcut rows are for context.")
    print(f"RESULT ours_ms={ours * 1000:.1f} bird_ms={bird * 1000:.1f} ratio={ours / bird:.2f}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
