"""Prometheus metrics with Felix's names, rendered in the text format (stdlib only).

The agent keeps one :class:`Metrics`; the daemon updates it after each
apply and the metrics server (:mod:`.health`) renders it on ``/metrics``.
Names are Felix's (``felix_int_dataplane_apply_time_seconds``,
``felix_active_local_endpoints``, ``felix_active_local_policies``,
``felix_iptables_restore_calls``, ``felix_iptables_restore_errors``,
``felix_resyncs_started``, ``felix_cluster_num_hosts`` …), so dashboards
built for Felix read them. The apply time is a histogram here (Felix
exports a summary; a histogram aggregates across nodes).

Must never: block, or do I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

APPLY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                 30.0)


@dataclass
class Histogram:
    buckets: tuple[float, ...] = APPLY_BUCKETS
    counts: list[int] = field(default_factory=lambda: [0] * (len(APPLY_BUCKETS) + 1))
    total: float = 0.0
    n: int = 0

    def observe(self, value: float) -> None:
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1
                break
        else:
            self.counts[-1] += 1
        self.total += value
        self.n += 1


# name → (type, help)
SERIES = {
    "felix_int_dataplane_apply_time_seconds": (
        "histogram", "Time in seconds that each iptables/ipset/route apply took."),
    "felix_int_dataplane_failures": ("counter", "Number of times the dataplane apply failed."),
    "felix_active_local_endpoints": ("gauge", "Number of active endpoints on this host."),
    "felix_active_local_policies": ("gauge", "Number of active policies on this host."),
    "felix_active_local_selectors": ("gauge", "Number of active selectors on this host."),
    "felix_iptables_restore_calls": ("counter", "Number of iptables-restore calls."),
    "felix_iptables_restore_errors": ("counter", "Number of iptables-restore errors."),
    "felix_iptables_chains": ("gauge", "Number of active iptables chains."),
    "felix_iptables_rules": ("gauge", "Number of active iptables rules."),
    "felix_ipset_calls": ("counter", "Number of ipset commands executed."),
    "felix_ipset_errors": ("counter", "Number of ipset command failures."),
    "felix_ipsets_total": ("gauge", "Total number of active IP sets."),
    "felix_route_table_writes": ("counter", "Routes written to the kernel."),
    "felix_resyncs_started": ("counter", "Number of times Felix has started resyncing with the "
                                         "datastore."),
    "felix_cluster_num_hosts": ("gauge", "Total number of Calico hosts in the cluster."),
    "felix_cluster_num_workload_endpoints": (
        "gauge", "Total number of workload endpoints cluster-wide."),
    "pybgp_agent_invalid_resources": (
        "gauge", "Resources in the datastore the agent skipped because they do not parse."),
    "pybgp_agent_in_sync": ("gauge", "1 when the datastore is in sync and the dataplane "
                                     "programmed, else 0."),
}


class Metrics:
    def __init__(self) -> None:
        self.values: dict[str, float] = {name: 0.0 for name, (kind, _) in SERIES.items()
                                         if kind != "histogram"}
        self.apply_time = Histogram()

    def inc(self, name: str, by: float = 1.0) -> None:
        self.values[name] += float(by)

    def set(self, name: str, value: float) -> None:
        self.values[name] = float(value)

    def render(self) -> str:
        out: list[str] = []
        for name, (kind, text) in SERIES.items():
            out.append(f"# HELP {name} {text}")
            out.append(f"# TYPE {name} {kind}")
            if kind == "histogram":
                h = self.apply_time
                running = 0
                for bound, count in zip((*h.buckets, math.inf), h.counts, strict=True):
                    running += count
                    le = "+Inf" if bound == math.inf else repr(bound)
                    out.append(f'{name}_bucket{{le="{le}"}} {running}')
                out.append(f"{name}_sum {h.total!r}")
                out.append(f"{name}_count {h.n}")
            else:
                value = self.values[name]
                out.append(f"{name} {int(value) if value.is_integer() else value!r}")
        return "\n".join(out) + "\n"
