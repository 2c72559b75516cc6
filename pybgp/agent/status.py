"""Endpoint status in etcd, where Calico's Felix reports it.

Keys (libcalico-go ``WorkloadEndpointStatusKey``, region ``no-region``)::

    /calico/felix/v2/no-region/host/<node>/workload/<orchestrator>/<workload id>/endpoint/<endpoint>
      = {"status": "up"}        (or "down")
    /calico/felix/v2/no-region/host/<node>/status
      = {"time": "<RFC 3339>", "uptime": <seconds>, "first_update": <bool>}

where the workload id is ``<namespace>/<pod or workload>`` with ``/`` escaped
as ``%2f``. :func:`desired_status` is pure; :class:`StatusReporter` keeps
what it last wrote and writes only differences, in transactions of at most
128 operations, from a worker thread (never from the event loop). Its
first write lists the node's keys and deletes stale endpoint keys left by
an earlier run.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping

from pybgp.agent.calc import EndpointPlan
from pybgp.datastore.kv import Delete, KVStore, Op, Put

log = logging.getLogger("pybgp.agent.status")
REGION = "no-region"
MAX_OPS = 128


def _escape(name: str) -> str:
    return name.replace("%", "%25").replace("/", "%2f")


def host_prefix(node: str) -> str:
    return f"/calico/felix/v2/{REGION}/host/{node}/"


def endpoint_key(node: str, orchestrator: str, namespace: str, workload: str,
                 endpoint: str) -> str:
    wid = _escape(f"{namespace}/{workload}")
    return (f"{host_prefix(node)}workload/{_escape(orchestrator)}/{wid}/endpoint/"
            f"{_escape(endpoint)}")


def desired_status(node: str, plans: Iterable[EndpointPlan]) -> dict[str, bytes]:
    """Key → value for every local endpoint plan."""
    out: dict[str, bytes] = {}
    for plan in plans:
        ep = plan.endpoint
        key = endpoint_key(node, ep.orchestrator, ep.namespace, ep.workload, ep.endpoint)
        status = "up" if plan.up else "down"
        out[key] = json.dumps({"status": status}).encode()
    return out


class StatusReporter:
    def __init__(self, kv: KVStore, node: str) -> None:
        self.kv = kv
        self.node = node
        self.written: dict[str, bytes] | None = None  # None: not read yet

    def sync(self, desired: Mapping[str, bytes]) -> int:
        """Make etcd hold ``desired`` for this node's endpoints (blocking:
        call from a worker thread). Returns the number of writes."""
        if self.written is None:
            kvs, _ = self.kv.list(host_prefix(self.node) + "workload/")
            self.written = {kv.key: kv.value for kv in kvs}
        ops: list[Op] = [Put(k, v) for k, v in desired.items() if self.written.get(k) != v]
        ops += [Delete(k) for k in self.written if k not in desired]
        for i in range(0, len(ops), MAX_OPS):
            chunk = ops[i:i + MAX_OPS]
            self.kv.txn([], chunk)
            for op in chunk:
                if isinstance(op, Put):
                    self.written[op.key] = op.value
                else:
                    self.written.pop(op.key, None)
        return len(ops)

    def report_host(self, uptime: float, first: bool, now: str) -> None:
        value = json.dumps({"time": now, "uptime": round(uptime, 3), "first_update": first})
        self.kv.txn([], [Put(host_prefix(self.node) + "status", value.encode())])
