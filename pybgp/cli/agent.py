"""``pybgp agent``: run the node agent (Felix's role) in the foreground."""

from __future__ import annotations

import argparse

from pybgp.cli.main import datastore_flags, etcd_settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("agent", help="run the node agent: routes, policy, NAT (Felix's role)")
    p.add_argument("--node", help="this node's name (default: $NODENAME or the hostname)")
    p.add_argument("--health-host", help="address of /liveness and /readiness "
                                         "(default: FelixConfiguration healthHost, 127.0.0.1)")
    p.add_argument("--health-port", type=int,
                   help="port of /liveness and /readiness (default: healthPort, 9099)")
    p.add_argument("--metrics-host", help="address of /metrics (default: "
                                          "prometheusMetricsHost, all addresses)")
    p.add_argument("--metrics-port", type=int,
                   help="port of /metrics (default: prometheusMetricsPort, 9091)")
    p.add_argument("--log-level", default="info",
                   choices=["debug", "info", "warning", "error"], help="(default %(default)s)")
    datastore_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pybgp.cli.speaker import node_name, without_tls

    etcd = etcd_settings(args)
    if not etcd.needs_tls:
        without_tls()
    from pybgp.agent.daemon import Options, main

    return main(Options(node=node_name(args.node), etcd=etcd, health_host=args.health_host,
                        health_port=args.health_port, metrics_host=args.metrics_host,
                        metrics_port=args.metrics_port), log_level=args.log_level)
