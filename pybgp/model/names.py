"""WorkloadEndpoint names, built the way libcalico-go's names package does.

A WEP name is its identifying spec fields joined with ``-``; a dash inside a
field is doubled so the name can be split again.  Which fields depends on the
orchestrator: ``k8s`` → node, "k8s", pod, endpoint; ``cni`` → node, "cni",
containerID, endpoint; anything else → node, orchestrator, workload, endpoint.
Example: node ``node-1``, pod ``web-0``, endpoint ``eth0`` →
``node--1-k8s-web--0-eth0``.  Pure functions only.
"""

from __future__ import annotations

from pybgp.errors import ValidationError


def _escape(value: str, field: str) -> str:
    if not value:
        raise ValidationError("required to build the WorkloadEndpoint name", field=field)
    if value.startswith("-") or value.endswith("-"):
        raise ValidationError(f"'{value}' must not begin or end with '-'", field=field)
    return value.replace("-", "--")


def wep_name(node: str, orchestrator: str, pod: str = "", endpoint: str = "", *,
             workload: str = "", container_id: str = "") -> str:
    """The WorkloadEndpoint name for these identifiers (``field`` errors say which is bad)."""
    parts = [(node, "spec.node"), (orchestrator, "spec.orchestrator")]
    if orchestrator == "k8s":
        parts.append((pod, "spec.pod"))
    elif orchestrator == "cni":
        parts.append((container_id, "spec.containerID"))
    elif orchestrator == "libnetwork":
        parts.append((orchestrator, "spec.orchestrator"))
    else:
        parts.append((workload, "spec.workload"))
    parts.append((endpoint, "spec.endpoint"))
    return "-".join(_escape(value, field) for value, field in parts)


def split_wep_name(name: str) -> list[str]:
    """Split a WEP name at single dashes and un-double the rest (inverse of wep_name)."""
    parts, current, i = [], [], 0
    while i < len(name):
        if name[i] == "-" and name[i + 1:i + 2] == "-":
            current.append("-")
            i += 2
            continue
        if name[i] == "-" and i > 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(name[i])
        i += 1
    parts.append("".join(current))
    return parts
