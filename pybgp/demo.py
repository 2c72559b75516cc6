"""The demo behind ``./scripts/setup.sh --demo``.

Starts a throw-away etcd on 127.0.0.1 (private port, temporary data dir),
applies every example in ``configs/examples/`` with the real ``pybgp`` CLI,
reads them back, shows a refused bad input, and stops etcd again.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "configs" / "examples"
KINDS = ["ippool", "bgpconfiguration", "bgppeer", "node", "felixconfiguration",
         "profile", "globalnetworkpolicy"]
NAMESPACED = ["workloadendpoint", "networkpolicy"]


def _run(env: dict[str, str], *argv: str, check: bool = True) -> int:
    print("$ pybgp " + " ".join(argv), flush=True)
    cli = Path(sys.executable).with_name("pybgp")
    rc = subprocess.run([str(cli), *argv], env=env).returncode
    if check and rc != 0:
        raise SystemExit(f"demo: 'pybgp {' '.join(argv)}' failed with status {rc}")
    print(flush=True)
    return rc


def main() -> int:
    from pybgp.testing.etcd import EtcdServer

    with EtcdServer(name="pybgp-demo") as etcd:
        env = dict(os.environ, ETCD_ENDPOINTS=etcd.endpoint)
        print(f"== a throw-away etcd is listening on {etcd.endpoint}\n")
        for path in sorted(EXAMPLES.glob("*.yaml")):
            _run(env, "apply", "-f", os.path.relpath(path))
        for kind in KINDS:
            _run(env, "get", kind, "-o", "wide")
        for kind in NAMESPACED:
            _run(env, "get", kind, "-A")
        _run(env, "get", "ippool", "-o", "yaml")
        print("== a bad pool is refused and nothing is written:")
        with tempfile.TemporaryDirectory() as tmp:
            bad = Path(tmp) / "bad-pool.yaml"
            bad.write_text(
                "apiVersion: projectcalico.org/v3\nkind: IPPool\n"
                "metadata: {name: bad-pool}\nspec: {cidr: 198.19.0.0/33}\n"
            )
            _run(env, "apply", "-f", str(bad), check=False)
        _run(env, "get", "ippool")
    print("== demo finished; etcd stopped and its data removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
