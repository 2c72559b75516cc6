"""A process that timestamps a claim's start and end as they happen.

``python -m benchmarks._route_clock [--etcd URL --node NODE …] NETNS …``
prints, flushed at once, with ``time.time()`` read on receipt:

- ``route <netns> <prefix> <time>`` for every route added to the main table
  of each namespace (its IPv4 route notifications);
- ``etcd <block> <time>`` when the watch on each NODE's affinities first
  shows the block's affinity confirmed.

Why a process: a benchmark that timestamps in one of its own threads reads
the clock only when that thread gets the GIL, and the benchmark's other
threads (its IPAM client, its etcd watchers, the confd-like watcher) hold
it for up to the interpreter's switch interval (5 ms). Here little else
runs: the time is read as soon as the process is scheduled.
"""

from __future__ import annotations

import argparse
import os
import select
import sys
import threading
import time

from pybgp.datastore.etcdv3 import EtcdClient, EtcdConfig
from pybgp.datastore.syncer import Syncer, Update
from pybgp.ipam.keys import affinities_prefix, parse_affinity_key
from pybgp.ipam.records import Affinity
from pybgp.kernel_sync import codec
from pybgp.kernel_sync.netlink import open_netlink_socket

MAIN_TABLE = 254
_out = threading.Lock()


def _say(line: str) -> None:
    with _out:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def _watch_affinities(endpoint: str, node: str) -> None:
    syncer = Syncer(lambda: EtcdClient(EtcdConfig(endpoints=[endpoint])), affinities_prefix(node))
    seen: set[str] = set()
    for ev in syncer.events():
        now = time.time()
        if not isinstance(ev, Update) or ev.value is None:
            continue
        parsed = parse_affinity_key(ev.key)
        if parsed is None or Affinity.decode(ev.value).state != "confirmed":
            continue
        block = str(parsed[1])
        if block not in seen:
            seen.add(block)
            _say(f"etcd {block} {now:.6f}")


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--etcd", default=None)
    ap.add_argument("--node", action="append", default=[])
    ap.add_argument("netns", nargs="*")
    args = ap.parse_args(argv)
    socks = {open_netlink_socket(ns, groups=[codec.RTNLGRP_IPV4_ROUTE], rcvbuf=32 << 20): ns
             for ns in args.netns}
    for node in args.node:
        threading.Thread(target=_watch_affinities, args=(args.etcd, node), daemon=True).start()
    _say("ready")
    parent = sys.stdin.fileno()
    while True:
        ready, _, _ = select.select([parent, *socks], [], [])
        if parent in ready and not os.read(parent, 1):
            return 0  # the benchmark is gone (it holds our stdin open while it runs)
        for sock in socks:
            if sock not in ready:
                continue
            try:
                data = sock.recv(1 << 20)
            except OSError:  # ENOBUFS: only routes waited for matter; keep going
                continue
            now = time.time()
            for msg in codec.iter_messages(data):
                if msg.type != codec.RTM_NEWROUTE:
                    continue
                raw = codec.parse_route(msg)
                if raw is not None and raw.table == MAIN_TABLE:
                    _say(f"route {socks[sock]} {raw.prefix} {now:.6f}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
