"""``pybgp lab up|status|exec|pod|down``: a multi-node cluster on this machine.

See ``pybgp.lab.lab`` for what each command does and ``docs/lab.md`` for how
to use it. Every command takes ``--dir`` (default ``$PYBGP_LAB_DIR``, else
``/run/pybgp-lab``): everything of one lab lives there, and two labs in two
directories never share a name, a namespace, a port or a process.
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def register(sub: argparse._SubParsersAction) -> None:
    from pybgp.lab.lab import default_dir
    from pybgp.lab.plan import MAX_REFLECTORS, PEERS

    lab = sub.add_parser("lab", help="a multi-node pybgp cluster in network namespaces")
    cmds = lab.add_subparsers(dest="lab_command", metavar="COMMAND", required=True)

    def with_dir(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--dir", default=default_dir(),
                       help="the lab's directory (env PYBGP_LAB_DIR, default %(default)s)")
        return p

    p = with_dir(cmds.add_parser("up", help="build a lab and leave it running"))
    p.add_argument("--nodes", type=int, default=3, help="node namespaces (default 3)")
    p.add_argument("--pods-per-node", type=int, default=2, help="pods per node (default 2)")
    p.add_argument("--reflectors", type=int, default=0, metavar="K",
                   help=f"K pybgp route reflectors (0..{MAX_REFLECTORS}) serving every node, "
                        "the node-to-node mesh off (default 0: full mesh)")
    p.add_argument("--peer", choices=PEERS, help="an external BGP router peering with every "
                                                 "node")
    p.add_argument("--ns-prefix", default="lab",
                   help="first part of every namespace name (default %(default)s)")
    p.set_defaults(func=run_up)

    p = with_dir(cmds.add_parser("status", help="sessions, routes and the pod-to-pod matrix"))
    p.add_argument("--no-ping", action="store_true", help="skip the connectivity matrix")
    p.add_argument("--svg", metavar="FILE", help="also write the cluster picture as SVG")
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")
    p.set_defaults(func=run_status)

    p = with_dir(cmds.add_parser("exec", help="run a command inside a node (or pod, reflector) "
                                              "with the lab's etcd and the daemon's sockets "
                                              "set"))
    p.add_argument("name", metavar="NODE", help="a node, a pod, a reflector (rr-1…), or 'peer'")
    p.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD",
                   help="the command and its arguments")
    p.set_defaults(func=run_exec)

    pod = cmds.add_parser("pod", help="add or delete a pod through the CNI plugin")
    pods = pod.add_subparsers(dest="pod_command", metavar="add|del", required=True)
    for verb, helptext in (("add", "CNI ADD of a new pod on NODE"),
                           ("del", "CNI DEL of pod NAME on NODE")):
        p = with_dir(pods.add_parser(verb, help=helptext))
        p.add_argument("node", metavar="NODE")
        p.add_argument("pod", metavar="NAME")
        p.set_defaults(func=run_pod)

    p = with_dir(cmds.add_parser("down", help="remove everything the lab made (idempotent)"))
    p.set_defaults(func=run_down)


def run_up(args: argparse.Namespace) -> int:
    from pybgp.lab.lab import Lab, LabError
    from pybgp.lab.plan import PlanError, make_plan

    try:
        plan = make_plan(args.nodes, args.pods_per_node, args.peer, args.ns_prefix,
                         reflectors=args.reflectors)
    except PlanError as exc:
        raise LabError(str(exc)) from None
    Lab.up(args.dir, plan).close()
    return 0


def run_status(args: argparse.Namespace) -> int:
    from pybgp.lab import picture
    from pybgp.lab.lab import SETTLE_TIMEOUT, Lab
    from pybgp.lab.plan import PEER_ADDRESS, PEER_NAME, REFLECTOR_CLUSTER_ID
    from pybgp.lab.report import nodes_table, reflector_sessions_table, reflectors_table

    lab = Lab.attach(args.dir)
    try:
        nodes = lab.node_statuses()
        expected = {n: lab.plan.expected_sessions(n) for n in lab.plan.node_names}
        reflectors = lab.reflector_statuses()
        rr_expected = lab.plan.reflector_expected_sessions()
        peer = lab.peer_info
        peer_sessions = lab.peer_sessions() if peer else None
        # the matrix is measured once the agents program what etcd holds (a
        # policy just applied shows in it), waiting for them a bounded time
        agents = {a.name: a for a in lab.agent_statuses(0 if args.no_ping else SETTLE_TIMEOUT)}
        matrix = None if args.no_ping else lab.matrix()
        pods = {n: [(p.name, p.addr) for p in lab.pods_in_order() if p.node.name == n]
                for n in lab.plan.node_names}
        if args.svg:
            centre = [picture.Peer(r.name, r.address, "reflector",
                                   None if r.error else r.states, reflector=True)
                      for r in reflectors]
            if peer:
                centre.append(picture.Peer(PEER_NAME, PEER_ADDRESS,
                                           {"bird": "BIRD 2", "gobgp": "GoBGP"}[peer["kind"]],
                                           peer_sessions))
            text = picture.render(nodes, pods, centre, title=f"pybgp lab {lab.paths.root}")
            with open(args.svg, "w") as fh:
                fh.write(text)
    finally:
        lab.close()
    healthy = (all(not n.error and n.established >= expected[n.name] for n in nodes)
               and all(not r.error and r.established >= rr_expected for r in reflectors)
               and all(a.settled for a in agents.values())
               and (matrix is None or matrix.all_ok or not matrix.labels))
    state = (lab.journal.get("lab") or {}).get("state", "?")
    if args.output == "json":
        json.dump({"dir": str(lab.paths.root), "state": state, "healthy": healthy,
                   "mesh": lab.plan.mesh,
                   "nodes": [{"name": n.name, "address": n.address, "sessions": n.sessions,
                              "expected_sessions": expected[n.name], "blocks": n.blocks,
                              "local_routes": n.local, "learned": n.learned,
                              "error": n.error,
                              "agent": agents[n.name].to_dict() if n.name in agents else None}
                             for n in nodes],
                   "reflectors": [{**r.to_dict(), "cluster_id": REFLECTOR_CLUSTER_ID,
                                   "expected_sessions": rr_expected} for r in reflectors],
                   "pods": {n: [{"name": p, "address": a} for p, a in v]
                            for n, v in pods.items()},
                   "peer": {"kind": peer["kind"], "sessions": peer_sessions} if peer else None,
                   "matrix": matrix.to_dict() if matrix else None}, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0 if healthy else 1
    w = sys.stdout.write
    k = len(reflectors)
    w(f"lab in {lab.paths.root} ({state}): {len(nodes)} nodes, "
      f"{sum(len(v) for v in pods.values())} pods, "
      + (f"{k} reflector{'s' if k > 1 else ''} (mesh off)" if k else
         "full mesh" if lab.plan.mesh else "mesh off")
      + f"{', peer ' + peer['kind'] if peer else ''}\n\n")
    w(nodes_table(nodes, expected, agents))
    if reflectors:
        w(f"\nroute reflectors (cluster id {REFLECTOR_CLUSTER_ID}), as each reports itself:\n")
        w(reflectors_table(reflectors, rr_expected))
        w("\neach node's session to each reflector, as the node reports it:\n")
        w(reflector_sessions_table(nodes, reflectors))
    if peer:
        states = peer_sessions or {}
        up = sum(1 for s in states.values() if s == "Established")
        w(f"\n{PEER_NAME} ({peer['kind']}, {PEER_ADDRESS}): {up}/{len(lab.plan.nodes)} "
          "sessions established\n" if peer_sessions is not None
          else f"\n{PEER_NAME} ({peer['kind']}): not answering (log {peer['log']})\n")
    if matrix is not None:
        w("\nconnectivity, ping from each row's pod to each column's pod:\n")
        w(matrix.render())
    if args.svg:
        w(f"\nwrote {args.svg}\n")
    return 0 if healthy else 1


def run_exec(args: argparse.Namespace) -> int:
    from pybgp.errors import PybgpError
    from pybgp.lab.lab import Lab

    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        raise PybgpError("lab exec: no command given (pybgp lab exec NODE -- CMD …)")
    lab = Lab.attach(args.dir)
    ns, node = lab.exec_target(args.name)
    env = lab.exec_env(node)
    lab.close()
    sys.stdout.flush()
    os.execvpe("ip", ["ip", "netns", "exec", ns, *cmd], env)
    return 127  # not reached


def run_pod(args: argparse.Namespace) -> int:
    from pybgp.lab.lab import Lab, LabError

    with Lab.changing(args.dir) as lab:
        if args.pod_command == "add":
            pod = lab.add_pod(args.node, args.pod)
            print(f"pod {pod.name} on {args.node}: {pod.addr} (host side {pod.host_iface}), "
                  "programmed by its agent")
        else:
            got = lab.cluster.pods.get(args.pod)
            if got is not None and got.node.name != args.node:
                raise LabError(f"pod {args.pod!r} is on {got.node.name}, not {args.node}")
            lab.del_pod(args.pod)
            print(f"pod {args.pod} deleted from {args.node}")
    return 0


def run_down(args: argparse.Namespace) -> int:
    from pybgp.lab.lab import Lab

    done = Lab.down(args.dir)
    print(f"lab in {args.dir} removed: {', '.join(done)}" if done
          else f"no lab in {args.dir}: nothing to remove")
    return 0
