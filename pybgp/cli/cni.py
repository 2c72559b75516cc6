"""``pybgp cni-daemon`` and ``pybgp install-cni``.

``cni-daemon --socket PATH``: serves ``pybgp-cni`` requests on a unix socket
(see ``pybgp.cni.daemon``). Requests whose network config names no
``etcd_endpoints`` use the daemon's datastore flags / ETCD_* environment.

``install-cni --bin-dir DIR [--conf-dir DIR]``: writes the launchers
``pybgp-cni`` and ``pybgp-ipam`` into DIR. Each starts this interpreter with
``-IS`` (``-I -S`` as one shebang argument: no site, no user paths; ~25 ms
less per pod start than a console script, which loads site and the
editable-install finder) and puts the package and its dependencies on
``sys.path`` explicitly. With ``--conf-dir``
an example conflist ``10-pybgp.conflist`` (pybgp-cni followed by portmap) is
written there too, unless one exists.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

LAUNCHER = """#!{python} -IS
# Written by `pybgp install-cni`: the {what} of pybgp, started without site
# processing for speed; the package paths are put on sys.path explicitly.
import sys
sys.path[:0] = {paths!r}
from {module} import main
sys.exit(main())
"""


def register(sub: argparse._SubParsersAction) -> None:
    from pybgp.cli.main import datastore_flags

    p = sub.add_parser("cni-daemon", help="serve pybgp-cni requests on a unix socket")
    p.add_argument("--socket", default="/var/run/pybgp/cni.sock", help="unix socket path")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    datastore_flags(p)
    p.set_defaults(func=run_daemon)

    p = sub.add_parser("install-cni", help="install the pybgp-cni / pybgp-ipam launchers")
    p.add_argument("--bin-dir", default="/opt/cni/bin", help="CNI plugin directory")
    p.add_argument("--conf-dir", help="also write an example conflist here")
    p.add_argument("--etcd-endpoints", help="etcd_endpoints for the example conflist")
    p.set_defaults(func=run_install)


def run_daemon(args: argparse.Namespace) -> int:
    import logging

    from pybgp.cli.main import open_kv
    from pybgp.cni import daemon, store

    logging.basicConfig(level=getattr(logging, args.log_level.upper()), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    kv = open_kv(args)
    store.set_default(kv.config)
    kv.close()
    daemon.serve(args.socket)
    return 0


def package_paths() -> list[str]:
    """The directories that must be on sys.path for pybgp and its dependencies."""
    import sysconfig

    import pybgp

    root = os.path.dirname(os.path.dirname(os.path.abspath(pybgp.__file__)))
    out = [root]
    for key in ("purelib", "platlib"):
        path = sysconfig.get_paths()[key]
        if path not in out and os.path.isdir(path):
            out.append(path)
    return out


def write_launcher(path: str, module: str, what: str) -> None:
    text = LAUNCHER.format(python=sys.executable, paths=package_paths(), module=module,
                           what=what)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as fh:
        fh.write(text)
    os.chmod(tmp, 0o755)
    os.replace(tmp, path)  # atomic: a runtime never executes a half-written file


def example_conflist(etcd_endpoints: str | None) -> dict[str, object]:
    plugin: dict[str, object] = {
        "type": "pybgp-cni",
        "log_level": "info",
        "mtu": 1500,
        "ipam": {"type": "pybgp-ipam"},
    }
    if etcd_endpoints:
        plugin["etcd_endpoints"] = etcd_endpoints
    return {
        "cniVersion": "1.0.0",
        "name": "k8s-pod-network",
        "plugins": [plugin, {"type": "portmap", "snat": True,
                             "capabilities": {"portMappings": True}}],
    }


def run_install(args: argparse.Namespace) -> int:
    os.makedirs(args.bin_dir, exist_ok=True)
    for name, module, what in (("pybgp-cni", "pybgp.cni.client", "CNI plugin"),
                               ("pybgp-ipam", "pybgp.cni.ipam_entry", "IPAM plugin")):
        path = os.path.join(args.bin_dir, name)
        write_launcher(path, module, what)
        print(f"installed {path}")
    if args.conf_dir:
        os.makedirs(args.conf_dir, exist_ok=True)
        path = os.path.join(args.conf_dir, "10-pybgp.conflist")
        if os.path.exists(path):
            print(f"kept existing {path}")
        else:
            with open(path, "w") as fh:
                json.dump(example_conflist(args.etcd_endpoints), fh, indent=2)
                fh.write("\n")
            print(f"wrote {path}")
    return 0
