"""What a lab is made of, decided before anything is made (pure, no I/O).

Owns: the lab's names and addresses (per ``shared/TESTING.md``: nodes, the
route reflectors and the external peer on 198.18.0.0/24 of the lab's own
fabric — nodes from .11, reflectors from .241, the peer .254 — pods from the
pool 198.19.0.0/16), the Calico resources it writes (the mesh off when there
are reflectors), each reflector's configuration, the labels its pods carry,
which sessions each node and reflector must have, where each node's agent
answers, and the paths inside the lab directory (checked against the
kernel's 107-byte limit for unix socket paths before anything exists).

Must never: produce an address outside the lab ranges (the harness refuses
them again), a name the harness cannot use, or a path outside the lab dir.
"""

from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pybgp.testing.journal import Journal
from pybgp.testing.names import check_part, check_prefix

FABRIC = ipaddress.IPv4Network("198.18.0.0/24")
FIRST_NODE_HOST = 11  # 198.18.0.11, .12, …; .1 is the fabric's gateway
PEER_ADDRESS = "198.18.0.254"
PEER_NAME = "peer"
PEER_NET = "198.18.100.0/24"  # what the external peer originates
PEER_HOST = "198.18.100.1"  # on the peer's loopback
POOL = "198.19.0.0/16"
AS_NUMBER = 64512
PEER_AS = 64513
MAX_NODES = 200
MAX_PODS_PER_NODE = 50
PEERS = ("bird", "gobgp")
# Route reflectors: rr-1 at 198.18.0.241, rr-2 at .242, …, all in one cluster
# (redundant copies serving every node, as docs/scale.md recommends). The
# cluster id is an identifier, not an address: no host has it.
FIRST_REFLECTOR_HOST = 241
MAX_REFLECTORS = 8
REFLECTOR_CLUSTER_ID = "198.18.0.240"
REFLECTOR_CLIENTS = "all()"  # a nodeSelector: every Node of the lab (reflectors are none)
# Each node's agent, inside the node's namespace (Felix's ports; given as
# flags, so a FelixConfiguration cannot move them away from `lab status`).
AGENT_HEALTH_PORT = 9099  # 127.0.0.1: /liveness, /readiness
AGENT_METRICS_PORT = 9091  # /metrics
SUN_PATH_MAX = 107  # sizeof(sockaddr_un.sun_path) - 1
# The longest sockets below a node's and a reflector's directory.
_LONGEST_NODE_SOCKET = "state/api.sock"
_LONGEST_REFLECTOR_SOCKET = "reflector.notify"


class PlanError(ValueError):
    """The lab asked for cannot be built (too many nodes, a bad name, a long path…)."""


@dataclass(frozen=True)
class NodePlan:
    name: str
    ip: str  # with prefix length, e.g. 198.18.0.11/24
    pods: tuple[str, ...] = ()

    @property
    def addr(self) -> str:
        return self.ip.split("/")[0]


@dataclass(frozen=True)
class ReflectorPlan:
    name: str
    ip: str  # with prefix length, e.g. 198.18.0.241/24

    @property
    def addr(self) -> str:
        return self.ip.split("/")[0]


@dataclass(frozen=True)
class Plan:
    nodes: tuple[NodePlan, ...]
    peer: str | None = None  # "bird" | "gobgp" | None
    reflectors: tuple[ReflectorPlan, ...] = ()
    prefix: str = "lab"  # namespace names: <prefix>-<run id>-<name>
    pool: str = POOL
    as_number: int = AS_NUMBER
    mesh: bool = True
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def node_names(self) -> list[str]:
        return [n.name for n in self.nodes]

    def node(self, name: str) -> NodePlan:
        for n in self.nodes:
            if n.name == name:
                return n
        raise PlanError(f"no node {name!r} in this lab (nodes: {', '.join(self.node_names)})")

    @property
    def reflector_names(self) -> list[str]:
        return [r.name for r in self.reflectors]

    def expected_sessions(self, node: str) -> int:
        """BGP sessions ``node`` must have Established: the mesh (when on), one
        per reflector, and the peer."""
        self.node(node)
        mesh = len(self.nodes) - 1 if self.mesh else 0
        return mesh + len(self.reflectors) + (1 if self.peer else 0)

    def reflector_expected_sessions(self) -> int:
        """A reflector's clients: every node."""
        return len(self.nodes)

    def describe(self) -> str:
        """``3 nodes × 2 pods, 1 reflector (mesh off), peer bird``."""
        parts = [f"{len(self.nodes)} nodes × {len(self.nodes[0].pods)} pods"]
        if self.reflectors:
            k = len(self.reflectors)
            parts.append(f"{k} reflector{'s' if k > 1 else ''} (mesh off)")
        else:
            parts.append("full mesh" if self.mesh else "mesh off")
        if self.peer:
            parts.append(f"peer {self.peer}")
        return ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Plan:
        nodes = tuple(NodePlan(n["name"], n["ip"], tuple(n.get("pods", ())))
                      for n in d["nodes"])
        reflectors = tuple(ReflectorPlan(r["name"], r["ip"]) for r in d.get("reflectors", ()))
        return cls(nodes=nodes, peer=d.get("peer"), reflectors=reflectors,
                   prefix=d.get("prefix", "lab"),
                   pool=d.get("pool", POOL), as_number=int(d.get("as_number", AS_NUMBER)),
                   mesh=bool(d.get("mesh", True)), extras=dict(d.get("extras", {})))


def node_name(i: int) -> str:
    return f"node-{i}"


def pod_name(node_index: int, j: int) -> str:
    """Pods are named after their node, so names are unique across the lab."""
    return f"pod-{node_index}-{j}"


def reflector_name(i: int) -> str:
    return f"rr-{i}"


def make_plan(nodes: int, pods_per_node: int, peer: str | None = None,
              prefix: str = "lab", reflectors: int = 0) -> Plan:
    if not 1 <= nodes <= MAX_NODES:
        raise PlanError(f"--nodes {nodes}: want 1..{MAX_NODES}")
    if not 0 <= pods_per_node <= MAX_PODS_PER_NODE:
        raise PlanError(f"--pods-per-node {pods_per_node}: want 0..{MAX_PODS_PER_NODE}")
    if peer is not None and peer not in PEERS:
        raise PlanError(f"--peer {peer!r}: want one of {', '.join(PEERS)}")
    if not 0 <= reflectors <= MAX_REFLECTORS:
        raise PlanError(f"--reflectors {reflectors}: want 0..{MAX_REFLECTORS}")
    try:
        check_prefix(prefix)
    except ValueError as exc:
        raise PlanError(str(exc)) from None
    out = []
    for i in range(1, nodes + 1):
        ip = FABRIC.network_address + FIRST_NODE_HOST + i - 1
        out.append(NodePlan(node_name(i), f"{ip}/{FABRIC.prefixlen}",
                            tuple(pod_name(i, j) for j in range(1, pods_per_node + 1))))
    rrs = tuple(ReflectorPlan(reflector_name(i), f"{ip}/{FABRIC.prefixlen}")
                for i in range(1, reflectors + 1)
                for ip in [FABRIC.network_address + FIRST_REFLECTOR_HOST + i - 1])
    return Plan(nodes=tuple(out), peer=peer, reflectors=rrs, prefix=prefix,
                mesh=not rrs)


def pod_labels(node: str, pod: str) -> dict[str, str]:
    """The labels of a lab pod (an orchestrator's, on its WorkloadEndpoint), so
    a policy can choose cells of the matrix: ``pod == 'pod-2-1'``,
    ``node == 'node-1'``."""
    return {"pod": pod, "node": node}


def pod_namespace_part(node: str, pod: str) -> str:
    """The pod's namespace name part (the Cluster's ``<node>-<pod>``), checked."""
    try:
        return check_part(f"{node}-{pod}")
    except ValueError:
        raise PlanError(f"pod name {pod!r}: want [a-z0-9-], and '{node}-{pod}' at most "
                        "20 characters") from None


def check_pod_name(plan: Plan, node: str, pod: str, existing: set[str]) -> None:
    plan.node(node)
    pod_namespace_part(node, pod)
    if pod in existing:
        raise PlanError(f"pod {pod!r} exists already")
    if pod in (*plan.node_names, *plan.reflector_names) or pod in ("fabric", PEER_NAME):
        raise PlanError(f"pod name {pod!r} is taken by a node, a reflector or the lab itself")


def bgp_configuration(plan: Plan) -> dict[str, Any]:
    return {"asNumber": plan.as_number, "nodeToNodeMeshEnabled": plan.mesh,
            "logSeverityScreen": "Info"}


def reflector_clients() -> list[dict[str, Any]]:
    """Who a lab reflector serves: the lab's Nodes, chosen from etcd by selector."""
    return [{"nodeSelector": REFLECTOR_CLIENTS}]


# Further fields of every lab reflector's YAML: reach a node whose speaker
# is not up yet again after 1 s, not 5 (the nodes connect too; this only
# shortens the wait when the reflector's attempt came first).
REFLECTOR_OPTIONS: dict[str, Any] = {"connectRetry": 1}


def peer_spec() -> dict[str, Any]:
    """The BGPPeer for the external router: global (every node peers with it)."""
    return {"peerIP": PEER_ADDRESS, "asNumber": PEER_AS}


@dataclass(frozen=True)
class Paths:
    """Everything a lab keeps, under one directory."""

    root: Path

    @property
    def journal(self) -> Path:
        return self.root / "lab.json"

    @property
    def etcd(self) -> Path:
        return self.root / "etcd"

    @property
    def peer(self) -> Path:
        return self.root / PEER_NAME

    def node(self, name: str) -> Path:  # = Cluster's workdir/<name>
        return self.root / name

    def reflector(self, name: str) -> Path:  # = Cluster's workdir/<name>
        return self.root / name

    def owned(self, plan: Plan | None) -> list[Path]:
        """What ``down`` removes (the journal last), whether or not it got made."""
        nodes = [self.node(n) for n in plan.node_names] if plan else []
        nodes += [self.reflector(r) for r in plan.reflector_names] if plan else []
        return [self.etcd, self.peer, self.root / "cni", self.root / "secrets", *nodes,
                *Journal.temp_files(self.journal), self.journal]

    def check(self, plan: Plan) -> None:
        """Every unix socket the lab will bind fits in sun_path."""
        longest = [self.etcd / "etcd.sock:0", self.peer / "bird.ctl"]
        longest += [self.node(n) / _LONGEST_NODE_SOCKET for n in plan.node_names]
        longest += [self.reflector(r) / _LONGEST_REFLECTOR_SOCKET for r in plan.reflector_names]
        for p in longest:
            if len(str(p)) > SUN_PATH_MAX:
                raise PlanError(f"--dir {self.root}: the socket path {p} is longer than "
                                f"{SUN_PATH_MAX} bytes; choose a shorter directory")
