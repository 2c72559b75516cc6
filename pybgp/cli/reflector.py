"""``pybgp reflector --config FILE``: run a BGP route reflector (in the foreground).

A dedicated reflector (RFC 4456) for many Calico nodes: its clients are
explicit addresses, CIDR ranges or Calico Nodes selected by label (read
from etcd with the datastore flags). It answers BIRD's control socket
(``birdcl -s PATH``) and pybgp's JSON socket (``pybgp show … --socket PATH
--json-socket PATH``). Stops on SIGTERM or SIGINT (Cease to every peer).
"""

from __future__ import annotations

import argparse

from pybgp.cli.main import datastore_flags, etcd_settings

BIRD_SOCKET = "/var/run/pybgp/reflector.ctl"
JSON_SOCKET = "/var/run/pybgp/reflector.sock"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reflector", help="run a BGP route reflector (RFC 4456)")
    p.add_argument("--config", dest="reflector_config", required=True, metavar="FILE",
                   help="the reflector's YAML configuration (see configs/reflector.yaml)")
    p.add_argument("--bird-socket", default=BIRD_SOCKET,
                   help="BIRD-compatible control socket (default %(default)s)")
    p.add_argument("--json-socket", default=JSON_SOCKET,
                   help="socket for pybgp show/status -o json (default %(default)s)")
    p.add_argument("--check", action="store_true",
                   help="read and check the configuration, print a summary, and exit")
    datastore_flags(p, ("--datastore-config",))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pybgp.cli.speaker import fixed_mmap_threshold, without_tls

    fixed_mmap_threshold()
    from pybgp.reflector.config import load

    cfg = load(args.reflector_config)
    if args.check:
        print(f"{args.reflector_config}: router id {cfg.router_id}, cluster id "
              f"{cfg.cluster_id}, AS {cfg.asn}, {len(cfg.neighbors)} neighbour entries: OK")
        return 0
    etcd = etcd_settings(args) if cfg.uses_datastore else None
    if etcd is None or not etcd.needs_tls:
        without_tls()
    from pybgp.reflector.daemon import Options, main

    return main(Options(config=cfg, bird_socket=args.bird_socket,
                        json_socket=args.json_socket, etcd=etcd))
