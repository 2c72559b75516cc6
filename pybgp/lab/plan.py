"""What a lab is made of, decided before anything is made (pure, no I/O).

Owns: the lab's names and addresses (per ``shared/TESTING.md``: nodes and the
external peer on 198.18.0.0/24 of the lab's own fabric, pods from the pool
198.19.0.0/16), the Calico resources it writes, the labels its pods carry,
which sessions each node must have, where each node's agent answers, and
the paths inside the lab directory (checked against the kernel's 107-byte
limit for unix socket paths before anything exists).

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
# Each node's agent, inside the node's namespace (Felix's ports; given as
# flags, so a FelixConfiguration cannot move them away from `lab status`).
AGENT_HEALTH_PORT = 9099  # 127.0.0.1: /liveness, /readiness
AGENT_METRICS_PORT = 9091  # /metrics
SUN_PATH_MAX = 107  # sizeof(sockaddr_un.sun_path) - 1
# The longest socket below a node's directory: ExaBGP's API socket.
_LONGEST_NODE_SOCKET = "state/api.sock"


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
class Plan:
    nodes: tuple[NodePlan, ...]
    peer: str | None = None  # "bird" | "gobgp" | None
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

    def expected_sessions(self, node: str) -> int:
        """BGP sessions ``node`` must have Established: the mesh, and the peer."""
        self.node(node)
        mesh = len(self.nodes) - 1 if self.mesh else 0
        return mesh + (1 if self.peer else 0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Plan:
        nodes = tuple(NodePlan(n["name"], n["ip"], tuple(n.get("pods", ())))
                      for n in d["nodes"])
        return cls(nodes=nodes, peer=d.get("peer"), prefix=d.get("prefix", "lab"),
                   pool=d.get("pool", POOL), as_number=int(d.get("as_number", AS_NUMBER)),
                   mesh=bool(d.get("mesh", True)), extras=dict(d.get("extras", {})))


def node_name(i: int) -> str:
    return f"node-{i}"


def pod_name(node_index: int, j: int) -> str:
    """Pods are named after their node, so names are unique across the lab."""
    return f"pod-{node_index}-{j}"


def make_plan(nodes: int, pods_per_node: int, peer: str | None = None,
              prefix: str = "lab") -> Plan:
    if not 1 <= nodes <= MAX_NODES:
        raise PlanError(f"--nodes {nodes}: want 1..{MAX_NODES}")
    if not 0 <= pods_per_node <= MAX_PODS_PER_NODE:
        raise PlanError(f"--pods-per-node {pods_per_node}: want 0..{MAX_PODS_PER_NODE}")
    if peer is not None and peer not in PEERS:
        raise PlanError(f"--peer {peer!r}: want one of {', '.join(PEERS)}")
    try:
        check_prefix(prefix)
    except ValueError as exc:
        raise PlanError(str(exc)) from None
    out = []
    for i in range(1, nodes + 1):
        ip = FABRIC.network_address + FIRST_NODE_HOST + i - 1
        out.append(NodePlan(node_name(i), f"{ip}/{FABRIC.prefixlen}",
                            tuple(pod_name(i, j) for j in range(1, pods_per_node + 1))))
    return Plan(nodes=tuple(out), peer=peer, prefix=prefix)


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
    if pod in plan.node_names or pod in ("fabric", PEER_NAME):
        raise PlanError(f"pod name {pod!r} is taken by a node or the lab itself")


def bgp_configuration(plan: Plan) -> dict[str, Any]:
    return {"asNumber": plan.as_number, "nodeToNodeMeshEnabled": plan.mesh,
            "logSeverityScreen": "Info"}


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

    def owned(self, plan: Plan | None) -> list[Path]:
        """What ``down`` removes (the journal last), whether or not it got made."""
        nodes = [self.node(n) for n in plan.node_names] if plan else []
        return [self.etcd, self.peer, self.root / "cni", self.root / "secrets", *nodes,
                *Journal.temp_files(self.journal), self.journal]

    def check(self, plan: Plan) -> None:
        """Every unix socket the lab will bind fits in sun_path."""
        longest = [self.etcd / "etcd.sock:0", self.peer / "bird.ctl"]
        longest += [self.node(n) / _LONGEST_NODE_SOCKET for n in plan.node_names]
        for p in longest:
            if len(str(p)) > SUN_PATH_MAX:
                raise PlanError(f"--dir {self.root}: the socket path {p} is longer than "
                                f"{SUN_PATH_MAX} bytes; choose a shorter directory")
