"""The demo behind ``./scripts/setup.sh --demo``: a pybgp cluster in one command.

Every step is a real ``pybgp`` command, printed before it runs:

1. ``pybgp lab up --nodes 3 --pods-per-node 2 --peer bird``: three node
   namespaces on a fabric (198.18.0.0/24), a private etcd, a BIRD 2 router,
   a ``pybgp speaker`` and a ``pybgp agent`` per node, six pods made by the
   real CNI plugin.
2. ``pybgp lab exec node-1 -- pybgp show routes``: the picture of the seed
   document — a blackhole for the node's own /26, ``/32 dev cali…`` for its
   pods, ``/26 via <node>`` for the other nodes' blocks — then ``pybgp show
   protocols``.
3. The cluster's Calico resources as ``pybgp get`` shows them, and a bad
   IPPool refused with nothing written.
4. ``pybgp lab status``: sessions and agents per node and every pod pinging
   every other: all green.
5. A NetworkPolicy (``pybgp apply -f`` inside node-1): pod-2-1 takes traffic
   from node-1's pods only; ``pybgp lab status`` shows the three cells it
   denies red; ``pybgp delete -f`` removes it.
6. ``pybgp lab down`` (unless ``--keep``: then the lab stays in
   ``/run/pybgp-lab`` for ``pybgp lab status``, ``exec``, ``pod add``…).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

BAD_POOL = ("apiVersion: projectcalico.org/v3\nkind: IPPool\n"
            "metadata: {name: bad-pool}\nspec: {cidr: 198.19.0.0/33}\n")
POLICY = """\
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata:
  name: pod-2-1-from-node-1
  namespace: default
spec:
  selector: pod == 'pod-2-1'
  types: [Ingress]
  ingress:
  - action: Allow
    source:
      selector: node == 'node-1'
"""


class DemoFailed(Exception):
    pass


def pybgp(*argv: str, check: bool = True) -> int:
    print(f"\n$ pybgp {' '.join(argv)}", flush=True)
    cli = Path(sys.executable).with_name("pybgp")
    rc = subprocess.run([str(cli), *argv], stdin=subprocess.DEVNULL).returncode  # env: the lab
    if check and rc != 0:
        raise DemoFailed(f"'pybgp {' '.join(argv)}' failed with status {rc}")
    return rc


def main(argv: Sequence[str] | None = None) -> int:
    from pybgp.lab.lab import ENV_DIR, default_dir

    parser = argparse.ArgumentParser(prog="demo.sh", description=__doc__.split("\n")[0])
    parser.add_argument("--keep", action="store_true", help="leave the lab running")
    parser.add_argument("--dir", default=default_dir(), help="the lab's directory")
    args = parser.parse_args(argv)
    lab_dir = os.path.abspath(args.dir)
    flag = "" if lab_dir == os.path.abspath(default_dir()) else f" --dir {lab_dir}"
    os.environ[ENV_DIR] = lab_dir  # every `pybgp lab` command below uses this lab

    def in_node(node: str, *argv: str, check: bool = True) -> int:
        return pybgp("lab", "exec", node, "--", "pybgp", *argv, check=check)

    print("== pybgp demo: three nodes, two pods each, an external BIRD router; node "
          "addresses 198.18.0.0/24, pods 198.19.0.0/16, all in network namespaces")
    ok = False
    try:
        pybgp("lab", "up", "--nodes", "3", "--pods-per-node", "2",
              "--peer", "bird")
        print("\n== what node-1's speaker thinks (birdc's formats):")
        in_node("node-1", "show", "routes")
        in_node("node-1", "show", "protocols")
        print("\n== the cluster in etcd, as Calico v3 resources:")
        in_node("node-1", "get", "nodes", "-o", "wide")
        in_node("node-1", "get", "ippools", "-o", "wide")
        in_node("node-1", "get", "workloadendpoints", "-A")
        with tempfile.TemporaryDirectory() as tmp:
            bad = Path(tmp) / "bad-pool.yaml"
            bad.write_text(BAD_POOL)
            print("\n== a bad IPPool is refused, and nothing is written:")
            in_node("node-1", "apply", "-f", str(bad), check=False)
        in_node("node-1", "get", "ippools")
        print("\n== every pod pings every other pod:")
        pybgp("lab", "status")
        with tempfile.TemporaryDirectory() as tmp:
            policy = Path(tmp) / "policy.yaml"
            policy.write_text(POLICY)
            print("\n== a NetworkPolicy: pod-2-1 takes traffic from node-1's pods only "
                  "(lab pods are labelled pod=NAME, node=NODE):\n")
            print("".join(f"    {line}\n" for line in POLICY.splitlines()), end="")
            in_node("node-1", "apply", "-f", str(policy))
            print("\n== the agents program it; the cells it denies turn red:")
            pybgp("lab", "status", check=False)  # exit status 1: not every pair answers
            in_node("node-1", "delete", "-f", str(policy))
        ok = True
    except DemoFailed as exc:
        print(f"\ndemo: {exc}", file=sys.stderr)
    except BrokenPipeError:  # `demo.sh | head`: no one reads on, but the lab still goes
        _discard_stdout()
    finally:
        try:
            _finish(args.keep, lab_dir, flag)
        except BrokenPipeError:  # the reader left during the last lines
            _discard_stdout()
            _finish(args.keep, lab_dir, flag)
    return 0 if ok else 1


def _finish(keep: bool, lab_dir: str, flag: str) -> None:
    if keep:
        print(f"\n== the lab is left running in {lab_dir}; try `.venv/bin/pybgp lab status"
              f"{flag}`, and `.venv/bin/pybgp lab down{flag}` when done", flush=True)
    else:
        pybgp("lab", "down", check=False)
        print("== demo finished; the lab's namespaces, daemons and files are removed",
              flush=True)


def _discard_stdout() -> None:
    """From now on, ours and our commands' output goes to /dev/null (what is
    still buffered too, so the interpreter's last flush does not fail)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
