"""How the lab shows itself: node table, connectivity matrix, cluster summary (pure).

Owns: turning what was measured (the speakers' and the reflectors' JSON
answers, the agents' health and metrics, ping results) into text tables and
plain data for ``-o json``. Reads nothing and runs nothing itself.

Must never: decide a cell it was not given a measurement for (an unmeasured
pair is shown as ``?``, never as ✓).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

OK, FAIL, UNKNOWN = "✓", "✗", "?"


@dataclass
class Sessions:
    """What a BGP speaker (a node's, a reflector) reports of its sessions."""

    name: str
    address: str
    sessions: dict[str, str] = field(default_factory=dict)  # protocol name → BGP state
    peers: dict[str, str] = field(default_factory=dict)  # protocol name → neighbor address
    error: str = ""  # set when it did not answer

    @property
    def established(self) -> int:
        return sum(1 for s in self.sessions.values() if s == "Established")

    def read_protocols(self, protocols: Sequence[Mapping[str, Any]]
                       ) -> list[Mapping[str, Any]]:
        """Take the BGP sessions of a ``protocols`` JSON answer; returns those."""
        out = []
        for p in protocols:
            bgp = p.get("bgp")
            if p.get("proto") == "BGP" and bgp:
                self.sessions[p["name"]] = str(bgp.get("state", "?"))
                self.peers[p["name"]] = str(bgp.get("neighbor_address", ""))
                out.append(p)
        return out


@dataclass
class NodeStatus(Sessions):
    """One node as its speaker reports it."""

    blocks: list[str] = field(default_factory=list)  # blackholed: this node's blocks
    learned: list[str] = field(default_factory=list)  # best BGP routes
    local: list[str] = field(default_factory=list)  # /32 dev cali…


def node_status(name: str, address: str, protocols: Sequence[Mapping[str, Any]],
                routes: Sequence[Mapping[str, Any]]) -> NodeStatus:
    """A NodeStatus from the speaker's ``protocols`` and ``routes`` JSON."""
    st = NodeStatus(name, address)
    st.read_protocols(protocols)
    for r in routes:
        if r.get("dest") == "blackhole":
            st.blocks.append(r["prefix"])
        elif r.get("dest") == "dev":
            st.local.append(r["prefix"])
        elif r.get("source") == "BGP" and r.get("primary"):
            st.learned.append(r["prefix"])
    return st


@dataclass
class ReflectorStatus(Sessions):
    """One route reflector as its JSON socket reports it."""

    prefixes: int = 0  # distinct prefixes in its RIB
    paths: int = 0  # paths held (every client's copy of a prefix)
    reflected: int = 0  # best paths it sends, summed over its Established sessions

    @property
    def states(self) -> dict[str, str]:
        """Neighbor address → BGP state, as the reflector sees each session."""
        return {self.peers.get(k, k): v for k, v in self.sessions.items()}

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "address": self.address, "sessions": self.states,
                "established": self.established, "prefixes": self.prefixes,
                "paths": self.paths, "reflected": self.reflected, "error": self.error}


def reflector_status(name: str, address: str, protocols: Sequence[Mapping[str, Any]],
                     routes: Sequence[Mapping[str, Any]]) -> ReflectorStatus:
    """A ReflectorStatus from the reflector's ``protocols`` and ``routes`` JSON."""
    st = ReflectorStatus(name, address)
    for p in st.read_protocols(protocols):
        if p["bgp"].get("state") == "Established":
            st.reflected += int((p.get("stats") or {}).get("exported", 0))
    st.paths = len(routes)
    st.prefixes = len({r.get("prefix") for r in routes})
    return st


@dataclass
class AgentStatus:
    """One node's agent: what it answered from inside the node, and what the
    agent's own calculation over etcd says it should program."""

    name: str
    answered: bool = False  # its health endpoint answered at all
    ready: bool = False  # /readiness said healthy
    detail: str = ""  # /readiness' reason, or why it did not answer
    endpoints: int | None = None  # felix_active_local_endpoints
    policies: int | None = None  # felix_active_local_policies
    want_endpoints: int = 0
    want_policies: int = 0

    @property
    def settled(self) -> bool:
        """Ready, and programming exactly what etcd holds for this node (by count)."""
        return (self.ready and self.endpoints == self.want_endpoints
                and self.policies == self.want_policies)

    @property
    def state(self) -> str:
        return "ready" if self.ready else ("not ready" if self.answered else "down")

    def problem(self) -> str:
        """Why it is not settled ("" when it is)."""
        if not self.answered:
            return f"agent: {self.detail}"
        if not self.ready:
            return f"agent not ready: {self.detail}"
        if not self.settled:
            return (f"agent behind etcd: {self.endpoints}/{self.want_endpoints} endpoints, "
                    f"{self.policies}/{self.want_policies} policies")
        return ""

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state, "ready": self.ready, "settled": self.settled,
                "detail": self.detail, "endpoints": self.endpoints,
                "policies": self.policies, "expected_endpoints": self.want_endpoints,
                "expected_policies": self.want_policies}


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text → series (with its labels, as written) → value; bad lines skipped."""
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and not line.startswith("#"):
            try:
                out[parts[0]] = float(parts[1])
            except ValueError:
                continue
    return out


def missing_routes(nodes: Sequence[NodeStatus]) -> dict[str, list[str]]:
    """Per node, the other nodes' blocks it has not learned (empty when converged)."""
    out = {}
    for n in nodes:
        want = {b for other in nodes if other.name != n.name for b in other.blocks}
        lacking = sorted(want - set(n.learned))
        if lacking:
            out[n.name] = lacking
    return out


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns, two spaces apart (widths by characters: ✓ is one)."""
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=True)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in [headers, *rows]]
    return "\n".join(lines) + "\n"


def _of(have: int | None, want: int) -> str:
    return f"{'-' if have is None else have}/{want}"


def nodes_table(nodes: Sequence[NodeStatus], expected: Mapping[str, int],
                agents: Mapping[str, AgentStatus] | None = None) -> str:
    """A row per node: the speaker's view, then (with ``agents``) the agent's:
    ready or not, endpoints and policies programmed / what etcd holds."""
    rows = []
    for n in nodes:
        a = (agents or {}).get(n.name)
        agent = ([a.state, _of(a.endpoints, a.want_endpoints), _of(a.policies, a.want_policies)]
                 if a else ["-", "-", "-"]) if agents is not None else []
        bad = [] if n.error else [f"{k}: {v}" for k, v in sorted(n.sessions.items())
                                  if v != "Established"]
        bad += [n.error] if n.error else []
        bad += [a.problem()] if a and a.problem() else []
        if n.error:
            rows.append([n.name, n.address, "-", "-", "-", "-", *agent, "; ".join(bad)])
            continue
        rows.append([n.name, n.address, f"{n.established}/{expected.get(n.name, 0)}",
                     ", ".join(n.blocks) or "-", str(len(n.local)), str(len(n.learned)),
                     *agent, "; ".join(bad)])
    heads = ["AGENT", "ENDPOINTS", "POLICIES"] if agents is not None else []
    return table(["NODE", "ADDRESS", "SESSIONS", "BLOCKS", "PODS", "LEARNED", *heads,
                  "NOT UP"], rows)


def reflectors_table(reflectors: Sequence[ReflectorStatus], expected: int) -> str:
    """A row per reflector, its own view: sessions established / clients
    expected, what its RIB holds and what it reflects."""
    rows = []
    for r in reflectors:
        if r.error:
            rows.append([r.name, r.address, "-", "-", "-", "-", r.error])
            continue
        bad = [f"{k}: {v}" for k, v in sorted(r.sessions.items()) if v != "Established"]
        rows.append([r.name, r.address, f"{r.established}/{expected}", str(r.prefixes),
                     str(r.paths), str(r.reflected), "; ".join(bad)])
    return table(["REFLECTOR", "ADDRESS", "SESSIONS", "PREFIXES", "PATHS", "REFLECTED",
                  "NOT UP"], rows)


def reflector_sessions_table(nodes: Sequence[NodeStatus],
                             reflectors: Sequence[ReflectorStatus]) -> str:
    """Each node's session to each reflector, as the node's speaker reports it:
    ✓ Established, else ✗ and its state (``-`` none configured, ``?`` the
    speaker did not answer)."""
    rows = []
    for n in nodes:
        by_addr = {n.peers.get(k, ""): v for k, v in n.sessions.items()}
        cells = []
        for r in reflectors:
            state = by_addr.get(r.address)
            cells.append(UNKNOWN if n.error else "-" if state is None
                         else OK if state == "Established" else f"{FAIL} {state}")
        rows.append([n.name, *cells])
    return table(["NODE \\ REFLECTOR", *(r.name for r in reflectors)], rows)


@dataclass
class Matrix:
    """Ping results: ``cells[(src, dst)]`` True/False; labels in display order."""

    labels: list[str]
    cells: dict[tuple[str, str], bool]

    @property
    def pairs(self) -> int:
        return len(self.cells)

    @property
    def failed(self) -> list[tuple[str, str]]:
        return sorted(k for k, ok in self.cells.items() if not ok)

    @property
    def all_ok(self) -> bool:
        return bool(self.cells) and all(self.cells.values())

    def cell(self, src: str, dst: str) -> str:
        if src == dst:
            return "·"
        got = self.cells.get((src, dst))
        return UNKNOWN if got is None else (OK if got else FAIL)

    def render(self) -> str:
        """Rows are sources, columns destinations (numbered to keep it narrow)."""
        if not self.labels:
            return "(no pods)\n"
        idx = {lab: str(i + 1) for i, lab in enumerate(self.labels)}
        headers = ["FROM \\ TO", *idx.values()]
        rows = [[f"{idx[s]} {s}", *(self.cell(s, d) for d in self.labels)] for s in self.labels]
        ok = sum(self.cells.values())
        return table(headers, rows) + f"{ok}/{self.pairs} pairs answer\n"

    def to_dict(self) -> dict[str, Any]:
        return {"labels": self.labels, "ok": sum(self.cells.values()), "pairs": self.pairs,
                "failed": [list(p) for p in self.failed],
                "cells": [{"from": s, "to": d, "ok": ok}
                          for (s, d), ok in sorted(self.cells.items())]}


def matrix_pairs(labels: Sequence[str]) -> list[tuple[str, str]]:
    """Every ordered pair of distinct pods: what the matrix measures."""
    return [(s, d) for s in labels for d in labels if s != d]
