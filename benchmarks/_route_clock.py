"""A process that timestamps routes as the kernel announces them.

``python -m benchmarks._route_clock NETNS [NETNS …]`` subscribes to the IPv4
route notifications of each namespace and prints ``<netns> <prefix> <time>``
for every route added to the main table, flushed at once; ``time.time()``
is read as the notification is received.

Why a process: a benchmark that timestamps in one of its own threads reads
the clock only when that thread gets the GIL, and the benchmark's other
threads (its IPAM client, its etcd watchers, the confd-like watcher) hold
it for up to the interpreter's switch interval (5 ms). Here nothing else
runs: the time is read as soon as the process is scheduled.
"""

from __future__ import annotations

import select
import sys
import time

from pybgp.kernel_sync import codec
from pybgp.kernel_sync.netlink import open_netlink_socket

MAIN_TABLE = 254


def main(namespaces: list[str]) -> int:
    socks = {open_netlink_socket(ns, groups=[codec.RTNLGRP_IPV4_ROUTE], rcvbuf=32 << 20): ns
             for ns in namespaces}
    print("ready", flush=True)
    out = sys.stdout
    while True:
        ready, _, _ = select.select(list(socks), [], [])
        for sock in ready:
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
                    out.write(f"{socks[sock]} {raw.prefix} {now:.6f}\n")
            out.flush()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
