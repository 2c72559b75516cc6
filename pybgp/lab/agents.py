"""The lab's view of its agents: what each one says it programs, and what it should.

``probe(ns)`` asks one agent from inside its node's namespace, as the
node's own monitoring would: ``/readiness`` on 127.0.0.1:9099 and
``/metrics`` on 127.0.0.1:9091, from a thread switched into that namespace
for the call (``kernel_sync.netlink.run_in_netns``; the rest of the process
stays where it is). ``expected(inputs, nodes)`` runs the agent's own
calculation (``pybgp.agent.calc``, as ``pybgp show policy`` does) on etcd's
data for each node: how many endpoints it must program and how many
policies apply to them — what its ``felix_active_local_endpoints`` and
``felix_active_local_policies`` say once it has applied them. An agent
reporting those numbers, and ready, is *settled*; the lab measures its ping
matrix only then (bounded), so a policy just applied shows in it.

The counts are a proxy: a policy edited in place keeps the count the same,
so ``settled`` cannot see that it is still being applied (the agent's
apply takes milliseconds; nothing in the lab edits a policy in place).

``pod_states`` reads the endpoint status the agents write to etcd (Felix's
keys): ``up`` once the node's agent has programmed that pod.

Must never: write anything (etcd, kernel), or decide what applies to an
endpoint some other way than the agent's calculation.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterable, Mapping
from typing import Any

from pybgp.agent.calc import Calc
from pybgp.agent.config import effective
from pybgp.agent.inputs import RESOURCE_PLURALS, Inputs
from pybgp.agent.status import REGION, endpoint_key
from pybgp.datastore.kv import KVStore
from pybgp.kernel_sync.netlink import run_in_netns
from pybgp.lab.plan import AGENT_HEALTH_PORT, AGENT_METRICS_PORT
from pybgp.lab.report import AgentStatus, parse_metrics
from pybgp.model import KEY_PREFIX
from pybgp.testing.netns import Pod

TIMEOUT = 2.0


def _get(port: int, path: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode(errors="replace")
    finally:
        conn.close()


def probe(name: str, ns: str) -> AgentStatus:
    """The agent of node ``name`` as its health and metrics endpoints, inside
    namespace ``ns``, report it (the expected counts are left at 0)."""
    st = AgentStatus(name)

    def ask() -> tuple[tuple[int, str], tuple[int, str] | None]:
        ready = _get(AGENT_HEALTH_PORT, "/readiness")
        try:
            metrics: tuple[int, str] | None = _get(AGENT_METRICS_PORT, "/metrics")
        except OSError:
            metrics = None
        return ready, metrics

    try:
        (code, body), metrics = run_in_netns(ns, ask)
    except (OSError, http.client.HTTPException) as exc:
        st.detail = (f"no answer on 127.0.0.1:{AGENT_HEALTH_PORT} "
                     f"({getattr(exc, 'strerror', None) or exc})")
        return st
    st.answered = True
    st.ready = code == 200
    try:
        st.detail = str(json.loads(body).get("detail", ""))
    except (ValueError, AttributeError):
        st.detail = body.strip()[:200]
    if metrics is not None and metrics[0] == 200:
        values = parse_metrics(metrics[1])
        if "felix_active_local_endpoints" in values:
            st.endpoints = int(values["felix_active_local_endpoints"])
        if "felix_active_local_policies" in values:
            st.policies = int(values["felix_active_local_policies"])
    return st


def load_inputs(kv: KVStore) -> Inputs:
    """Everything the agents read, from etcd, as an agent folds it in."""
    inputs = Inputs("")
    for plural in RESOURCE_PLURALS:
        kvs, _ = kv.list(f"{KEY_PREFIX}{plural}/")
        for item in kvs:
            inputs.apply(item.key, item.value)
    return inputs


def expected(inputs: Inputs, nodes: Iterable[str]) -> dict[str, tuple[int, int]]:
    """Node → (endpoints, policies) its agent programs for ``inputs`` (pure)."""
    calc = Calc()
    out = {}
    for node in nodes:
        inputs.node = node
        desired = calc.compute(inputs, effective(inputs.felix_default, None))
        # as the agent counts felix_active_local_policies: distinct policies
        # applying to a local endpoint in either direction
        policies = {p for plan in desired.endpoints.values() for p in (*plan.ingress,
                                                                       *plan.egress)}
        out[node] = (len(desired.endpoints), len(policies))
    return out


def statuses(kv: KVStore, namespaces: Mapping[str, str]) -> list[AgentStatus]:
    """Every node's agent (``namespaces``: node → its namespace), with what etcd
    says it should program."""
    want = expected(load_inputs(kv), namespaces)
    out = []
    for name, ns in namespaces.items():
        st = probe(name, ns)
        st.want_endpoints, st.want_policies = want[name]
        out.append(st)
    return out


def pod_states(kv: KVStore, pods: Iterable[Pod]) -> dict[str, str]:
    """Pod name → the status its node's agent wrote (``up``, ``down``, or ``""``: none)."""
    kvs, _ = kv.list(f"/calico/felix/v2/{REGION}/host/")
    written: dict[str, Any] = {item.key: item.value for item in kvs}
    out = {}
    for p in pods:
        raw = written.get(endpoint_key(p.node.name, "k8s", p.k8s_namespace, p.name, p.iface))
        try:
            out[p.name] = str(json.loads(raw).get("status", "")) if raw else ""
        except (ValueError, AttributeError):
            out[p.name] = ""
    return out
