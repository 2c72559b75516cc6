"""confd's part for one BIRD node, in a process of its own, as confd is.

``python -m benchmarks._confd_like --etcd URL --node NODE --dir DIR --render JSON``
follows NODE's block affinities in etcd (the speaker's own ``Syncer``). On
every change it renders the BIRD configuration (``_bird.calico_config`` with
the ``--render`` arguments: router id, AS, neighbours, pools) with a
``protocol static`` blackhole and the ``calico_aggr`` lines for each
*confirmed* block, as Calico's bird_aggr.cfg.template does; if the file
changed it writes ``DIR/bird.conf`` atomically and runs ``birdc -s
DIR/bird.ctl configure`` (confd's ``reload_cmd`` reloads BIRD the same way,
by SIGHUP). For each new block it prints ``stage <block> <seen> <written>
<done>`` (times: watch event, file written, birdc returned); a failure
prints ``error <text>``. It exits when its stdin closes.

Why a process: as a thread of the benchmark it rendered only when it had
the GIL, which the benchmark's IPAM thread, still busy with the claim's
allocation, held for up to a millisecond; confd does not share a GIL with
the CNI plugin.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from benchmarks._bird import BgpNeighbor, calico_config
from pybgp.datastore.etcdv3 import EtcdClient, EtcdConfig
from pybgp.datastore.syncer import InSync, Syncer, Update
from pybgp.ipam.keys import affinities_prefix, parse_affinity_key
from pybgp.ipam.records import Affinity


def confirmed_blocks(cache: dict[str, tuple[bytes, int]]) -> list[str]:
    """The blocks of a node's affinity keys whose affinity is confirmed, in key order."""
    out = []
    for key in sorted(cache):
        parsed = parse_affinity_key(key)
        if parsed is not None and Affinity.decode(cache[key][0]).state == "confirmed":
            out.append(str(parsed[1]))
    return out


def _follow(endpoint: str, node: str, directory: Path, render: dict) -> None:
    neighbors = [BgpNeighbor(*n) for n in render["neighbors"]]
    conf_path, ctl = directory / "bird.conf", str(directory / "bird.ctl")
    birdc = shutil.which("birdc") or "birdc"
    last = conf_path.read_text()
    known: set[str] = set()
    syncer = Syncer(lambda: EtcdClient(EtcdConfig(endpoints=[endpoint])), affinities_prefix(node))
    for ev in syncer.events():
        if not isinstance(ev, Update | InSync):
            continue
        seen = time.time()
        blocks = confirmed_blocks(syncer.cache)
        conf = calico_config(render["router_id"], render["asn"], neighbors,
                             pools=render["pools"], blocks=blocks)
        if conf == last:
            continue  # confd reloads only when the rendered file differs
        tmp = conf_path.with_suffix(".tmp")
        tmp.write_text(conf)
        os.replace(tmp, conf_path)
        written = time.time()
        r = subprocess.run([birdc, "-s", ctl, "configure"], capture_output=True, text=True,
                           timeout=10, check=False)
        done = time.time()
        last = conf
        if "Reconfigur" not in r.stdout:
            print(f"error birdc configure: {r.stdout.strip()} {r.stderr.strip()}", flush=True)
            continue
        for b in sorted(set(blocks) - known):
            print(f"stage {b} {seen:.6f} {written:.6f} {done:.6f}", flush=True)
        known = set(blocks)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--etcd", required=True)
    ap.add_argument("--node", required=True)
    ap.add_argument("--dir", type=Path, required=True)
    ap.add_argument("--render", type=json.loads, required=True)
    args = ap.parse_args(argv)

    def run() -> None:
        try:
            _follow(args.etcd, args.node, args.dir, args.render)
        except Exception as exc:  # noqa: BLE001 - reported to the benchmark
            print(f"error {exc!r}", flush=True)

    threading.Thread(target=run, daemon=True).start()
    print("ready", flush=True)
    sys.stdin.buffer.read()  # until the benchmark closes our stdin (or exits)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
