"""``pybgp`` — the operator CLI.

Each sub-command lives in its own module and is imported only when used, so
``pybgp get`` does not pay for ExaBGP or pyroute2. Every error pybgp raises
on purpose is printed as one line on stderr with exit status 1; nothing is
ever half-written (the commands use all-or-nothing datastore writes).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# sub-command → module that defines ``register(subparsers)`` and ``run(args)``.
COMMANDS = {
    "agent": "pybgp.cli.agent",
    "apply": "pybgp.cli.resources",
    "create": "pybgp.cli.resources",
    "get": "pybgp.cli.resources",
    "delete": "pybgp.cli.resources",
    "cni-daemon": "pybgp.cli.cni",
    "install-cni": "pybgp.cli.cni",
    "ipam": "pybgp.cli.ipam",
    "lab": "pybgp.cli.lab",
    "show": "pybgp.cli.show",
    "status": "pybgp.cli.show",
    "speaker": "pybgp.cli.speaker",
    "reflector": "pybgp.cli.reflector",
}
MODULES = sorted(set(COMMANDS.values()))


def datastore_flags(parser: argparse.ArgumentParser,
                    config_flags: tuple[str, ...] = ("-c", "--config")) -> None:
    """The etcd flags; ``config_flags`` name the CalicoAPIConfig file's flag
    (``pybgp reflector`` has a ``--config`` of its own)."""
    g = parser.add_argument_group("datastore (else ETCD_* environment, else config file)")
    g.add_argument("--etcd-endpoints", help="comma-separated etcd URLs")
    g.add_argument("--etcd-ca-cert-file")
    g.add_argument("--etcd-cert-file")
    g.add_argument("--etcd-key-file")
    g.add_argument("--etcd-username")
    g.add_argument("--etcd-password")
    g.add_argument(*config_flags, dest="config",
                   help="CalicoAPIConfig file (default /etc/pybgp/pybgp.cfg)")


def etcd_settings(args: argparse.Namespace):  # -> EtcdConfig
    """The datastore named by the flags, else the environment, else the config file."""
    from pybgp.config import etcd_config

    return etcd_config(
        {
            "endpoints": args.etcd_endpoints,
            "ca_cert_file": args.etcd_ca_cert_file,
            "cert_file": args.etcd_cert_file,
            "key_file": args.etcd_key_file,
            "username": args.etcd_username,
            "password": args.etcd_password,
        },
        config_file=args.config,
    )


def open_kv(args: argparse.Namespace):  # -> KVStore
    from pybgp.datastore.etcdv3 import EtcdClient

    return EtcdClient(etcd_settings(args))


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; with a known ``command``, only its module is imported.

    The daemons are ``pybgp speaker|agent|reflector``: importing every CLI
    module for them (the lab's pulls in the agent's calculation, the test
    harness, http.client…) cost ~120 ms at start and ~6 MiB of every
    speaker's memory for as long as it runs."""
    parser = argparse.ArgumentParser(
        prog="pybgp", description="Calico-style L3 networking: datastore, IPAM, BGP and lab"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in [COMMANDS[command]] if command in COMMANDS else MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from pybgp.errors import PybgpError

    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv[0] if argv else None).parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except PybgpError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
