"""``pybgp cni-daemon`` and ``pybgp install-cni``.

``cni-daemon --socket PATH``: serves ``pybgp-cni`` requests on a unix socket
(see ``pybgp.cni.daemon``). Requests whose network config names no
``etcd_endpoints`` use the daemon's datastore flags / ETCD_* environment.

``install-cni --bin-dir DIR [--conf-dir DIR]``: writes the launchers
``pybgp-cni`` and ``pybgp-ipam`` into DIR. Each starts this interpreter with
``-IS`` (``-I -S`` as one shebang argument: no site, no user paths; ~25 ms
less per pod start than a console script, which loads site and the
editable-install finder) and puts the package and its dependencies on
``sys.path`` explicitly. With ``--conf-dir`` the conflist
``10-pybgp.conflist`` (``pybgp.cni.conflist``: pybgp-cni followed by
portmap, with the given etcd, TLS, node name and daemon socket) is written
there too; an existing one is kept unless ``--force``. Every file is
written to a temp file in its own directory and renamed over the old one,
so a runtime never reads half a file.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys

from pybgp.errors import PybgpError

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

    p = sub.add_parser("install-cni", help="install the pybgp-cni / pybgp-ipam launchers "
                                           "and the CNI conflist")
    p.add_argument("--bin-dir", default="/opt/cni/bin", help="CNI plugin directory")
    p.add_argument("--conf-dir", help="also write 10-pybgp.conflist here (e.g. /etc/cni/net.d)")
    p.add_argument("--force", action="store_true", help="replace an existing conflist")
    g = p.add_argument_group("conflist values (left out when not given)")
    g.add_argument("--etcd-endpoints", help="etcd_endpoints, comma separated")
    g.add_argument("--etcd-ca-cert-file")
    g.add_argument("--etcd-cert-file")
    g.add_argument("--etcd-key-file")
    g.add_argument("--nodename", help="this node's name (else NODENAME / "
                                      "/var/lib/calico/nodename / host name at run time)")
    g.add_argument("--daemon-socket", help="the cni-daemon's socket")
    g.add_argument("--mtu", type=int, default=1500)
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


def write_atomically(path: str, text: str, mode: int = 0o644) -> None:
    """``text`` into ``path`` via a temp file in the same directory and a rename."""
    tmp = os.path.join(os.path.dirname(path) or ".", f".{os.path.basename(path)}.tmp{os.getpid()}")
    try:
        with open(tmp, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)  # a runtime never reads or executes a half-written file
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_launcher(path: str, module: str, what: str) -> None:
    text = LAUNCHER.format(python=sys.executable, paths=package_paths(), module=module,
                           what=what)
    write_atomically(path, text, 0o755)


def conflist_text(args: argparse.Namespace) -> str:
    from pybgp.cni.conflist import conflist

    try:
        doc = conflist(etcd_endpoints=args.etcd_endpoints,
                       etcd_ca_cert_file=args.etcd_ca_cert_file,
                       etcd_cert_file=args.etcd_cert_file, etcd_key_file=args.etcd_key_file,
                       nodename=args.nodename, daemon_socket=args.daemon_socket,
                       mtu=args.mtu)
    except ValueError as exc:
        raise PybgpError(f"install-cni: {exc}") from None
    return json.dumps(doc, indent=2) + "\n"


def run_install(args: argparse.Namespace) -> int:
    from pybgp.cni.conflist import FILENAME

    text = conflist_text(args) if args.conf_dir else ""  # refuse bad values before writing
    os.makedirs(args.bin_dir, exist_ok=True)
    for name, module, what in (("pybgp-cni", "pybgp.cni.client", "CNI plugin"),
                               ("pybgp-ipam", "pybgp.cni.ipam_entry", "IPAM plugin")):
        path = os.path.join(args.bin_dir, name)
        write_launcher(path, module, what)
        print(f"installed {path}")
    if args.conf_dir:
        os.makedirs(args.conf_dir, exist_ok=True)
        path = os.path.join(args.conf_dir, FILENAME)
        if os.path.exists(path) and not args.force:
            print(f"kept existing {path} (--force replaces it)")
        else:
            write_atomically(path, text)
            print(f"wrote {path}")
    return 0
