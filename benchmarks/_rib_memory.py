"""Bytes per learned route in the speaker's core (a diagnostic, not a benchmark).

``python -m benchmarks._rib_memory [N]`` feeds N /32s from one eBGP peer into
``pybgp.speaker.core.Speaker`` as ExaBGP reports them (UPDATEs of 500
prefixes), turns every changed prefix into its kernel route as the daemon
does, and prints what tracemalloc saw allocated per route, biggest sources
first. No root, no kernel, no ExaBGP: it isolates the Python side of the
``fib_learn`` memory figure (docs/benchmarks.md).
"""

from __future__ import annotations

import gc
import json
import sys
import tracemalloc

from pybgp.kernel_sync.sync import RouteTable
from pybgp.model.selector import matches
from pybgp.speaker.core import Speaker
from pybgp.speaker.inputs import Inputs

RES = "/calico/resources/v3/projectcalico.org"
LOCAL, PEER = "198.18.0.11", "198.18.0.254"
BATCH = 500


def _resource(kind: str, plural: str, name: str, spec: dict[str, object]) -> tuple[str, bytes]:
    return f"{RES}/{plural}/{name}", json.dumps({
        "apiVersion": "projectcalico.org/v3", "kind": kind, "metadata": {"name": name},
        "spec": spec}).encode()


def _neighbor() -> dict[str, object]:
    return {"address": {"local": LOCAL, "peer": PEER}, "asn": {"local": 64512, "peer": 64513}}


def _speaker() -> Speaker:
    sp = Speaker(Inputs("node-a"), matches, startup_hold=30)
    sp.start(0.0, [])
    for key, value in (
        _resource("Node", "nodes", "node-a", {"bgp": {"ipv4Address": f"{LOCAL}/24"}}),
        _resource("IPPool", "ippools", "p", {"cidr": "198.19.0.0/16"}),
        _resource("BGPPeer", "bgppeers", "feeder", {"peerIP": PEER, "asNumber": 64513}),
    ):
        sp.on_datastore(key, value, 1.0)
    sp.on_synced(1.0)
    sp.on_exabgp(json.dumps({"type": "state", "neighbor": {**_neighbor(), "state": "up"}}), 2.0)
    return sp


def _updates(n: int) -> list[str]:
    first = int.from_bytes(bytes((198, 18, 1, 0)), "big")
    lines = []
    for start in range(0, n, BATCH):
        nlri = [{"nlri": f"{a >> 24}.{(a >> 16) & 255}.{(a >> 8) & 255}.{a & 255}/32"}
                for a in range(first + start, first + min(n, start + BATCH))]
        lines.append(json.dumps({"type": "update", "neighbor": {
            **_neighbor(), "direction": "receive", "message": {"update": {
                "attribute": {"origin": "igp", "as-path": {"0": {
                    "element": "as-sequence", "value": [64513]}}},
                "announce": {"ipv4 unicast": {PEER: nlri}}}}}}))
    return lines


def main(argv: list[str]) -> int:
    n = int(argv[0]) if argv else 100_000
    sp, lines = _speaker(), _updates(n)
    gc.collect()
    tracemalloc.start(1)
    before = tracemalloc.take_snapshot()
    for line in lines:
        sp.on_exabgp(line, 3.0)
    full, changed = sp.take_kernel_changes()
    kernel = RouteTable()  # the kernel layer's map of desired routes
    for prefix in (sp.kernel_routes() if full else changed):
        route = sp.kernel_route(prefix)
        if route is not None:
            kernel[prefix] = route
    del lines, changed, route
    gc.collect()
    stats = tracemalloc.take_snapshot().compare_to(before, "lineno")
    total = sum(s.size_diff for s in stats)
    print(f"{len(kernel)} routes: {total / 2**20:.1f} MiB, {total / n:.0f} B per route")
    for s in stats[:10]:
        if s.size_diff > n:  # more than a byte a route
            print(f"  {s.size_diff / n:6.0f} B/route  {s.traceback}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
