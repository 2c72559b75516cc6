"""``pybgp lab``: a whole cluster in network namespaces, kept in one directory.

``up`` builds, step by step (each step printed with its time): a private
etcd (data, log and unix socket in ``DIR/etcd``), the fabric and the node
namespaces with their Node resources, the IPPool and BGPConfiguration (the
mesh off when there are reflectors), optional route reflectors (``pybgp
reflector`` each in a namespace of its own, one cluster id, every Node its
client, a BGPPeer for each), an optional external BGP router (BIRD 2 or
GoBGP) with its BGPPeer, ``pybgp speaker`` and then ``pybgp agent`` in
every node (waiting for each daemon's ``READY=1``, reflectors included, as
systemd's ``Type=notify`` does), the pods through the real
CNI plugin from each node's conflist (labelled ``pod``/``node`` on their
WorkloadEndpoints, as an orchestrator would), then waits until every pod
is programmed by its agent, every BGP session is up and every block
route learned.
The daemons outlive ``up``; everything it makes is in the journal
``DIR/lab.json`` *before* it exists, so ``down`` removes it all — also
after a crash or a killed ``up`` — by name, PID and start time.

Built on the harness (``Topology``, ``EtcdServer``, ``Cluster``): the lab is
the system tests' cluster with a directory of its own.

Must never: run anything of pybgp in the root network namespace (only etcd
listens there, on 127.0.0.1), touch another lab's namespaces or processes
(names carry this lab's run id, processes are checked by start time), or
write outside its directory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from pybgp.errors import PybgpError
from pybgp.lab import agents, lock, peers
from pybgp.lab.plan import (
    AGENT_HEALTH_PORT,
    AGENT_METRICS_PORT,
    PEER_ADDRESS,
    PEER_NAME,
    REFLECTOR_CLIENTS,
    REFLECTOR_CLUSTER_ID,
    REFLECTOR_OPTIONS,
    Paths,
    Plan,
    PlanError,
    bgp_configuration,
    check_pod_name,
    peer_spec,
    pod_labels,
    reflector_clients,
)
from pybgp.lab.report import (
    AgentStatus,
    Matrix,
    NodeStatus,
    ReflectorStatus,
    matrix_pairs,
    missing_routes,
    node_status,
    reflector_status,
)
from pybgp.testing.cluster import Cluster, resource, wait_until
from pybgp.testing.etcd import EtcdServer
from pybgp.testing.journal import Journal
from pybgp.testing.netns import Pod, Topology
from pybgp.testing.procs import ProcessRecord, pids_with_cwd_under

DEFAULT_DIR = "/run/pybgp-lab"
ENV_DIR = "PYBGP_LAB_DIR"
READY_TIMEOUT = 60.0
CONVERGE_TIMEOUT = 90.0
PROGRAMMED_TIMEOUT = 30.0  # a new pod, programmed by its node's agent
SETTLE_TIMEOUT = 10.0  # `status`: agents catching up with etcd before the pings
LOCK_TIMEOUT = 120.0  # `pod add|del`, `down`: another lab command finishing first
# what `exec` sets for a node (or reflector), never passed through from the caller
NODE_ENV = ("NODENAME", "PYBGP_BIRD_SOCKET", "PYBGP_SPEAKER_SOCKET", "PYBGP_CONFIG")


class LabError(PybgpError):
    """A lab command failed; ``step`` names the step of ``up`` that did."""

    def __init__(self, msg: str, step: str = "") -> None:
        super().__init__(msg)
        self.step = step


def default_dir() -> str:
    return os.environ.get(ENV_DIR) or DEFAULT_DIR


class Progress:
    """One line per step: its name, what it made, how long it took."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.times: dict[str, float] = {}

    @contextmanager
    def step(self, name: str, doing: str) -> Iterator[Callable[[str], None]]:
        self.out.write(f"  {name:<10} {doing} …\n")
        self.out.flush()
        said: list[str] = []
        t0 = time.monotonic()
        try:
            yield said.append
        except BaseException as exc:
            self.times[name] = time.monotonic() - t0
            self.out.write(f"  ✗ {name} failed after {self.times[name]:.1f} s: "
                           f"{_one_line(exc)}\n")
            self.out.flush()
            if isinstance(exc, LabError):
                exc.step = exc.step or name
                raise
            if isinstance(exc, KeyboardInterrupt):
                raise LabError("interrupted", name) from None
            raise LabError(f"step {name!r} failed: {_one_line(exc)}", name) from exc
        self.times[name] = time.monotonic() - t0
        self.out.write(f"  ✓ {name:<10} {said[-1] if said else doing}  "
                       f"({self.times[name]:.2f} s)\n")
        self.out.flush()


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) < 600 else text[:600] + " …"


class Lab:
    """A lab built by ``up`` or attached from its directory by ``attach``."""

    def __init__(self, paths: Paths, journal: Journal, plan: Plan, topo: Topology,
                 etcd: EtcdServer, cluster: Cluster) -> None:
        self.paths = paths
        self.journal = journal
        self.plan = plan
        self.topo = topo
        self.etcd = etcd
        self.cluster = cluster

    # ----- up ------------------------------------------------------------------
    @classmethod
    def up(cls, directory: str | Path, plan: Plan, out: TextIO | None = None) -> Lab:
        if os.geteuid() != 0:  # before anything exists: nothing half-made to remove
            raise LabError("pybgp lab up needs root (it makes network namespaces, veths and "
                           "a bridge): run it as root", "check")
        paths = Paths(Path(directory).absolute())
        try:
            paths.check(plan)
        except PlanError as exc:
            raise LabError(str(exc), "dir") from None
        created = not paths.root.exists()
        try:
            paths.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LabError(f"cannot make the lab's directory {paths.root}: "
                           f"{exc.strerror or exc}", "dir") from None
        try:
            with lock.locked(paths.root, 0):  # held until the lab is up (or has failed)
                return cls._up_locked(paths, plan, created, out)
        except lock.Busy:
            raise LabError(f"another pybgp lab command is at work in {paths.root} "
                           "(an `up` building a lab there, a `pod add`)", "dir") from None

    @classmethod
    def _up_locked(cls, paths: Paths, plan: Plan, created: bool, out: TextIO | None) -> Lab:
        if paths.journal.exists():
            raise LabError(f"a lab already lives in {paths.root} "
                           f"(pybgp lab down --dir {paths.root} removes it)", "dir")
        if any(paths.root.iterdir()):
            raise LabError(f"{paths.root} is not empty: a lab needs a directory of its own",
                           "dir")
        journal = Journal(paths.journal)
        try:
            journal.update("lab", {
                "plan": plan.to_dict(), "state": "building", "created_dir": created,
                "started": time.time(), "peer": None,
                "builder": ProcessRecord.of(os.getpid(), "pybgp lab up").to_dict()})
        except OSError as exc:
            raise LabError(f"cannot write the lab's journal {paths.journal}: "
                           f"{exc.strerror or exc}", "dir") from None
        progress = Progress(out)
        w = progress.out.write
        w(f"pybgp lab up: {plan.describe()} in {paths.root}\n")
        t0 = time.monotonic()
        lab: Lab | None = None
        try:
            lab = cls._build(paths, journal, plan, progress)
        except LabError as exc:
            cls._set_state(journal, "failed", exc.step)
            w(f"\nlab up failed at step {exc.step!r}; what it made is left for inspection "
              f"(logs in {paths.root}).\nRemove it with: pybgp lab down{_dir_flag(paths.root)}\n")
            raise
        cls._set_state(journal, "up")
        w(f"\nlab up in {time.monotonic() - t0:.1f} s\n")
        w(lab.summary())
        return lab

    @staticmethod
    def _set_state(journal: Journal, state: str, step: str = "") -> None:
        doc = dict(journal.get("lab") or {}, state=state)
        if step:
            doc["failed_step"] = step
        journal.update("lab", doc)

    @classmethod
    def _build(cls, paths: Paths, journal: Journal, plan: Plan, progress: Progress) -> Lab:
        with progress.step("etcd", "a private etcd") as said:
            topo = Topology(prefix=plan.prefix, journal=journal)
            etcd = EtcdServer(name=f"pybgp-lab-{topo.run_id}", data_root=paths.etcd,
                              persistent=True, journal=journal)
            said(f"etcd on {etcd.endpoint} and {etcd.unix_endpoint}")
        with progress.step("nodes", f"{len(plan.nodes)} node namespaces") as said:
            cluster = Cluster(topo, etcd, pool=plan.pool, workdir=str(paths.root),
                              journal=journal)
            cluster.store.apply([resource("BGPConfiguration", "default",
                                          bgp_configuration(plan))])
            for n in plan.nodes:
                cluster.add_node(n.name, n.ip)
            said(f"{len(plan.nodes)} nodes on the fabric ({plan.nodes[0].addr}…"
                 f"{plan.nodes[-1].addr}), IPPool {plan.pool}, AS {plan.as_number}, "
                 f"mesh {'on' if plan.mesh else 'off'}")
        lab = cls(paths, journal, plan, topo, etcd, cluster)
        if plan.reflectors:
            k = len(plan.reflectors)
            with progress.step("reflectors", f"pybgp reflector × {k}") as said:
                for r in plan.reflectors:  # each with its global BGPPeer, named after it
                    cluster.start_reflector(r.name, r.ip, cluster_id=REFLECTOR_CLUSTER_ID,
                                            as_number=plan.as_number,
                                            clients=reflector_clients(), wait=None,
                                            **REFLECTOR_OPTIONS)
                for r in plan.reflectors:
                    cluster.wait_ready(r.name, READY_TIMEOUT, daemon="reflector")
                said(f"{k} ready at {', '.join(r.addr for r in plan.reflectors)} (cluster id "
                     f"{REFLECTOR_CLUSTER_ID}, clients: Nodes {REFLECTOR_CLIENTS}), "
                     "a BGPPeer for each")
        if plan.peer:
            with progress.step("peer", f"external {plan.peer} router") as said:
                router = topo.add_external_router(PEER_NAME, f"{PEER_ADDRESS}/24")
                info = peers.start(plan.peer, topo, router, paths.peer,
                                   [n.addr for n in plan.nodes])
                journal.update("lab", dict(journal.get("lab"), peer=info))
                cluster.store.apply([resource("BGPPeer", PEER_NAME, peer_spec())])
                said(f"{plan.peer} at {PEER_ADDRESS} (AS {peer_spec()['asNumber']}), "
                     "BGPPeer for every node")
        with progress.step("speakers", f"pybgp speaker in {len(plan.nodes)} nodes") as said:
            for n in plan.nodes:
                cluster.start_speaker(n.name, notify=True)
            for n in plan.nodes:
                cluster.wait_ready(n.name, READY_TIMEOUT)
            said(f"{len(plan.nodes)} speakers ready (READY=1: in sync, serving)")
        with progress.step("agents", f"pybgp agent in {len(plan.nodes)} nodes") as said:
            for n in plan.nodes:
                cluster.start_agent(n.name, notify=True, health_port=AGENT_HEALTH_PORT,
                                    metrics_port=AGENT_METRICS_PORT)
            for n in plan.nodes:
                cluster.wait_ready(n.name, READY_TIMEOUT, daemon="agent")
            said(f"{len(plan.nodes)} agents ready (READY=1: in sync, dataplane programmed)")
        pods = [(n.name, p) for n in plan.nodes for p in n.pods]
        with progress.step("pods", f"{len(pods)} pods through pybgp-cni") as said:
            for node, pod in pods:
                cluster.add_pod(node, pod, cni=True, labels=pod_labels(node, pod))
            said(f"{len(pods)} pods through the CNI conflist (pybgp-cni, portmap)")
        with progress.step("endpoints", "every pod programmed by its agent") as said:
            try:
                lab.wait_programmed(list(cluster.pods.values()), CONVERGE_TIMEOUT)
            except TimeoutError as exc:
                raise LabError(str(exc), "endpoints") from None
            said(f"{len(pods)}/{len(pods)} endpoints up (status written by the agents)")
        with progress.step("sessions", "BGP sessions") as said:
            want = sum(plan.expected_sessions(n) for n in plan.node_names)
            rr_want = plan.reflector_expected_sessions()

            def established() -> bool:  # both ends: the nodes', and each reflector's
                st = lab.node_statuses()
                return (all(s.established >= plan.expected_sessions(s.name) for s in st)
                        and all(r.established >= rr_want for r in lab.reflector_statuses()))

            try:
                lab.wait(established, CONVERGE_TIMEOUT, "sessions")
            except TimeoutError:
                raise LabError(lab._not_established(), "sessions") from None
            said(f"{want}/{want} sessions established"
                 + (f" (each reflector's {rr_want}/{rr_want} too)" if plan.reflectors else ""))
        with progress.step("routes", "every node learns every other block") as said:
            def converged() -> bool:
                return not missing_routes(lab.node_statuses())

            try:
                lab.wait(converged, CONVERGE_TIMEOUT, "routes")
            except TimeoutError:
                raise LabError(f"routes missing: {missing_routes(lab.node_statuses())}",
                               "routes") from None
            blocks = sum(len(s.blocks) for s in lab.node_statuses())
            said(f"{blocks} blocks, each learned by every other node")
        return lab

    def _not_established(self) -> str:
        bad = []
        for s in [*self.node_statuses(), *self.reflector_statuses()]:
            for name, state in sorted(s.sessions.items()):
                if state != "Established":
                    bad.append(f"{s.name} {name}: {state}")
            if s.error:
                bad.append(f"{s.name}: {s.error}")
        return "sessions not established: " + ("; ".join(bad) or "none configured")

    # ----- attach --------------------------------------------------------------
    @classmethod
    def attach(cls, directory: str | Path) -> Lab:
        paths = Paths(Path(directory).absolute())
        journal = _load(paths)
        lab_doc = journal.get("lab") or {}
        try:
            plan = Plan.from_dict(lab_doc["plan"])
            topo = Topology.restore(journal.get("topology"), journal)
            etcd = EtcdServer.restore(journal.get("etcd"), journal)
            cluster = Cluster.restore(journal.get("cluster"), topo, etcd, journal)
        except (KeyError, TypeError) as exc:
            raise LabError(f"the lab in {paths.root} is incomplete ({lab_doc.get('state')}, "
                           f"missing {exc}): pybgp lab down{_dir_flag(paths.root)}") from None
        if not etcd.running:
            raise LabError(f"the lab's etcd is not running (see {etcd.log_path}); "
                           f"pybgp lab down{_dir_flag(paths.root)} removes the lab")
        return cls(paths, journal, plan, topo, etcd, cluster)

    @classmethod
    @contextmanager
    def changing(cls, directory: str | Path) -> Iterator[Lab]:
        """The lab attached under its lock, for a command that changes it
        (``pod add|del``): it reads the journal after any other such command
        has written its part, and its own write loses none of theirs."""
        root = Path(directory).absolute()
        with contextlib.ExitStack() as stack:
            if not _hold(stack, root):
                raise LabError(f"no lab in {root} (pybgp lab up --dir {root} makes one)")
            lab = cls.attach(root)
            stack.callback(lab.close)
            yield lab

    def close(self) -> None:
        """Let go of the lab (it keeps running)."""
        self.cluster.close()

    # ----- what it is ----------------------------------------------------------
    @property
    def peer_info(self) -> dict[str, Any] | None:
        info: dict[str, Any] | None = (self.journal.get("lab") or {}).get("peer")
        return info

    def node_statuses(self) -> list[NodeStatus]:
        from pybgp.cli.show import json_query

        out = []
        for name, cn in self.cluster.nodes.items():
            try:
                st = node_status(name, cn.node.addr, json_query(cn.json_socket, "protocols"),
                                 json_query(cn.json_socket, "routes"))
            except PybgpError as exc:
                dead = [d for d in self.cluster.exited([name]) if d.startswith("speaker")]
                st = NodeStatus(name, cn.node.addr, error=dead[0] if dead else str(exc))
            out.append(st)
        return out

    def reflector_statuses(self) -> list[ReflectorStatus]:
        """Every reflector as its JSON socket reports it (as ``pybgp show`` asks)."""
        from pybgp.cli.show import json_query

        out = []
        for name, rr in self.cluster.reflectors.items():
            try:
                st = reflector_status(name, rr.address, json_query(rr.json_socket, "protocols"),
                                      json_query(rr.json_socket, "routes"))
            except PybgpError as exc:  # gone (and why), or alive but not answering
                dead = self.cluster.exited([name])
                st = ReflectorStatus(name, rr.address, error=dead[0] if dead else str(exc))
            out.append(st)
        return out

    def agent_statuses(self, settle: float = 0.0) -> list[AgentStatus]:
        """Every node's agent, from inside its node, against what etcd holds for it.
        With ``settle`` > 0, wait up to that long for every agent that answers
        to be ready and program what etcd holds (an agent that does not answer
        is not waited for)."""
        namespaces = {name: cn.node.ns for name, cn in self.cluster.nodes.items()}
        deadline = time.monotonic() + settle
        while True:
            got = agents.statuses(self.cluster.kv, namespaces)
            if all(a.settled or not a.answered for a in got) or time.monotonic() >= deadline:
                return got
            time.sleep(0.1)

    def wait(self, pred: Callable[[], Any], timeout: float, what: str,
             hosts: Collection[str] | None = None) -> Any:
        """``wait_until`` that stops at once, naming it, when a daemon of the lab
        (of ``hosts`` only, if given) exits meanwhile (its log's last lines say why)."""
        def check() -> Any:
            dead = self.cluster.exited(hosts)
            if dead:
                raise LabError("; ".join(dead))
            return pred()

        return wait_until(check, timeout, what)

    def wait_programmed(self, pods: list[Pod], timeout: float) -> None:
        """Until each pod's agent has written its endpoint status ``up`` (its
        chains, route and neighbour are in place); TimeoutError names the rest,
        LabError a daemon of the pods' nodes that exited meanwhile."""
        def missing() -> dict[str, str]:
            states = agents.pod_states(self.cluster.kv, pods)
            return {n: s for n, s in states.items() if s != "up"}

        try:
            self.wait(lambda: not missing(), timeout, "endpoints",
                      hosts={p.node.name for p in pods})
        except TimeoutError:
            left = missing()
            raise TimeoutError(f"not programmed by their agents after {timeout:.0f} s: "
                               + ", ".join(f"{n} ({s or 'no status'})"
                                           for n, s in sorted(left.items()))) from None

    def pods_in_order(self) -> list[Pod]:
        order = {n: i for i, n in enumerate(self.plan.node_names)}
        return sorted(self.cluster.pods.values(),
                      key=lambda p: (order.get(p.node.name, len(order)), p.name))

    def matrix(self) -> Matrix:
        """Every pod pings every other pod (real ICMP, bounded)."""
        pods = {p.name: p for p in self.pods_in_order()}
        labels = list(pods)
        pairs = matrix_pairs(labels)
        results = self.topo.ping_all([(pods[s].ns, pods[d].addr) for s, d in pairs])
        return Matrix(labels, dict(zip(pairs, results, strict=True)))

    def peer_sessions(self) -> dict[str, str] | None:
        info = self.peer_info
        return peers.sessions(info, self.topo) if info else None

    def summary(self) -> str:
        lines = []
        statuses = {s.name: s for s in self.node_statuses()}
        agent = {a.name: a for a in self.agent_statuses()}
        for n in self.plan.nodes:
            st = statuses.get(n.name)
            pods = [p for p in self.pods_in_order() if p.node.name == n.name]
            blocks = ", ".join(st.blocks) if st and st.blocks else "-"
            sessions = f"{st.established}/{self.plan.expected_sessions(n.name)}" if st else "?"
            a = agent.get(n.name)
            lines.append(f"  {n.name:<8} {n.addr:<13} sessions {sessions:<6} block {blocks:<18}"
                         f" agent {a.state if a else '?'}")
            for p in pods:
                lines.append(f"    {p.name:<10} {p.addr:<14} {p.host_iface}")
        want = self.plan.reflector_expected_sessions()
        for r in self.reflector_statuses():
            sessions = "?" if r.error else f"{r.established}/{want}"
            lines.append(f"  {r.name:<8} {r.address:<13} sessions {sessions:<6} reflector, "
                         f"cluster id {REFLECTOR_CLUSTER_ID}, {r.prefixes} prefixes")
        if self.peer_info:
            lines.append(f"  {PEER_NAME:<8} {PEER_ADDRESS:<13} {self.peer_info['kind']} "
                         f"(log {self.peer_info['log']})")
        d = _dir_flag(self.paths.root)
        lines += ["", "next:",
                  f"  pybgp lab status{d}",
                  f"  pybgp lab exec{d} {self.plan.node_names[0]} -- pybgp show routes",
                  *([f"  pybgp lab exec{d} {self.plan.reflector_names[0]} -- pybgp show "
                     "protocols"] if self.plan.reflectors else []),
                  f"  pybgp lab exec{d} {self.plan.node_names[0]} -- pybgp apply -f "
                  "POLICY.yaml   (pods are labelled pod=NAME, node=NODE)",
                  f"  pybgp lab pod add{d} {self.plan.node_names[0]} NAME",
                  f"  pybgp lab down{d}"]
        return "\n".join(lines) + "\n"

    # ----- exec and pods -------------------------------------------------------
    def exec_target(self, name: str) -> tuple[str, str]:
        """(namespace, whose environment) of a node, a pod (its node's), a
        reflector, or the peer (none)."""
        if name in self.cluster.nodes:
            return self.cluster.nodes[name].node.ns, name
        if name in self.cluster.pods:
            pod = self.cluster.pods[name]
            return pod.ns, pod.node.name
        if name in self.cluster.reflectors:
            return self.cluster.reflectors[name].node.ns, name
        if name == PEER_NAME and self.peer_info:
            return self.peer_info["ns"], ""
        rrs = f", reflectors: {', '.join(self.cluster.reflectors)}" \
            if self.cluster.reflectors else ""
        raise LabError(f"no node, pod, reflector or peer {name!r} in this lab "
                       f"(nodes: {', '.join(self.cluster.nodes)}{rrs})")

    def exec_env(self, name: str) -> dict[str, str]:
        """The environment ``pybgp`` commands need inside the namespace of node
        or reflector ``name``: the lab's etcd, and the daemon's sockets where
        ``pybgp show``/``status`` and ``birdcl -s $PYBGP_BIRD_SOCKET`` look."""
        # nothing of the caller's own node (or another lab) leaks in: only this lab's
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("ETCD_") and k not in NODE_ENV}
        env.update(ETCD_ENDPOINTS=self.etcd.unix_endpoint, PYBGP_LAB_DIR=str(self.paths.root))
        bindir = str(Path(sys.executable).parent)
        env["PATH"] = bindir + os.pathsep + env.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        if name in self.cluster.nodes:
            cn = self.cluster.nodes[name]
            env.update(NODENAME=name, PYBGP_BIRD_SOCKET=cn.bird_socket,
                       PYBGP_SPEAKER_SOCKET=cn.json_socket)
        elif name in self.cluster.reflectors:
            rr = self.cluster.reflectors[name]
            env.update(PYBGP_BIRD_SOCKET=rr.bird_socket, PYBGP_SPEAKER_SOCKET=rr.json_socket)
        return env

    def add_pod(self, node: str, name: str) -> Pod:
        """CNI ADD of a labelled pod; returns once its agent has programmed it
        (with the policies its labels select)."""
        try:
            check_pod_name(self.plan, node, name, set(self.cluster.pods))
        except PlanError as exc:
            raise LabError(str(exc)) from None
        pod = self.cluster.add_pod(node, name, cni=True, labels=pod_labels(node, name))
        agent = agents.probe(node, self.cluster.nodes[node].node.ns)
        if not agent.answered:  # nothing will program it: say so now, not in 30 s
            raise LabError(f"pod {name} was added, but the agent on {node} is down "
                           f"({agent.detail}; log: {self.cluster.nodes[node].log_path('agent')})")
        try:
            self.wait_programmed([pod], PROGRAMMED_TIMEOUT)
        except TimeoutError as exc:
            raise LabError(f"pod {name} was added, but {exc} (log: "
                           f"{self.cluster.nodes[node].log_path('agent')})") from None
        return pod

    def del_pod(self, name: str) -> None:
        if name not in self.cluster.pods:
            raise LabError(f"no pod {name!r} in this lab (pods: "
                           f"{', '.join(sorted(self.cluster.pods)) or 'none'})")
        self.cluster.del_pod(name)

    # ----- down ----------------------------------------------------------------
    @staticmethod
    def down(directory: str | Path) -> list[str]:
        """Remove everything the lab in ``directory`` made; idempotent. Returns what went."""
        paths = Paths(Path(directory).absolute())
        if not paths.journal.exists():
            return []
        journal = _load(paths)
        lab_doc = journal.get("lab") or {}
        done: list[str] = []
        builder = lab_doc.get("builder")
        if builder and lab_doc.get("state") == "building":
            # an `up` still at work would go on making things as they go: stop it
            # first (its journal names all it made), by its recorded identity
            rec = ProcessRecord.from_dict(builder)
            if rec.pid != os.getpid() and rec.alive():
                rec.stop(3.0, group=False)
                done.append(f"the 'pybgp lab up' still building it (pid {rec.pid})")
        with contextlib.ExitStack() as stack:  # a `pod add` at work finishes first
            if not _hold(stack, paths.root) or not paths.journal.exists():
                return done  # another `down` was first
            return Lab._down_locked(paths, _load(paths), done)

    @staticmethod
    def _down_locked(paths: Paths, journal: Journal, done: list[str]) -> list[str]:
        lab_doc = journal.get("lab") or {}
        plan = Plan.from_dict(lab_doc["plan"]) if "plan" in lab_doc else None
        errors: list[str] = []
        snap = journal.get("topology")
        if snap:
            topo = Topology.restore(snap)
            n_ns, n_proc = len(topo.namespaces) + bool(topo.pending), len(topo.records)
            try:
                topo.close(term_timeout=3.0)
                done.append(f"{n_proc} processes, {n_ns} namespaces")
            except Exception as exc:
                errors.append(str(exc))
        desc = journal.get("etcd")
        try:
            if desc:
                EtcdServer.restore(desc).close()
                done.append("etcd")
            elif paths.etcd.exists():  # killed before etcd was described: by its directory
                for pid in pids_with_cwd_under(paths.etcd):
                    with contextlib.suppress(ProcessLookupError):
                        rec = ProcessRecord.of(pid, "etcd by its directory")
                        rec.signal(signal.SIGKILL, group=False)
        except Exception as exc:
            errors.append(f"etcd: {exc}")
        if errors:
            raise LabError("lab down incomplete (run it again): " + "; ".join(errors))
        for p in paths.owned(plan):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            elif p.exists() or p.is_symlink():
                p.unlink()
        done.append(f"files in {paths.root}")
        if lab_doc.get("created_dir"):
            try:
                paths.root.rmdir()
            except OSError:
                pass  # something else was put there: not ours to remove
        return done


def _load(paths: Paths) -> Journal:
    try:
        return Journal.load(paths.journal)
    except FileNotFoundError:
        raise LabError(f"no lab in {paths.root} (pybgp lab up --dir {paths.root} makes one)")\
            from None
    except ValueError as exc:
        raise LabError(f"{paths.journal} is unreadable: {exc}") from None


def _hold(stack: contextlib.ExitStack[Any], root: Path) -> bool:
    """Take the lab's lock into ``stack`` (waiting for another lab command
    that changes it); False if the directory is not there."""
    try:
        stack.enter_context(lock.locked(root, LOCK_TIMEOUT))
    except FileNotFoundError:
        return False
    except lock.Busy:
        raise LabError(f"another pybgp lab command kept {root} busy for {LOCK_TIMEOUT:.0f} s "
                       "(an `up` still building, a `pod add`); try again when it is done"
                       ) from None
    return True


def _dir_flag(root: Path) -> str:
    return "" if str(root) == os.path.abspath(default_dir()) else f" --dir {root}"
