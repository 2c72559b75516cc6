"""``pybgp show endpoints`` and ``pybgp show policy ENDPOINT``: what the agent applies.

Both read etcd and run the agent's own pure calculation (``pybgp.agent.calc``)
— the same code the agent on the endpoint's node runs — so they work whether
or not that agent is running, and show the chain names to look for in
``iptables-save``. Endpoint status comes from the keys the agents write.

Must never: write anything, or compute policy some other way than the agent.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from pybgp.errors import NotFoundError, PybgpError


def register_show(what: argparse._SubParsersAction) -> None:
    from pybgp.cli.main import datastore_flags

    p = what.add_parser("endpoints", aliases=["endpoint"],
                        help="workload endpoints, the policies that apply and their status")
    p.add_argument("--node", help="only the endpoints of this node")
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")
    datastore_flags(p)
    p.set_defaults(func=run_endpoints)

    p = what.add_parser("policy", help="which policies, profiles and rules apply to an "
                                       "endpoint, in order, with their iptables chains")
    p.add_argument("endpoint", help="WorkloadEndpoint name, NAMESPACE/NAME, pod name or "
                                    "host interface (cali…)")
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")
    datastore_flags(p)
    p.set_defaults(func=run_policy)


def _load(args: argparse.Namespace) -> tuple[Any, dict[str, str]]:
    from pybgp.agent.inputs import RESOURCE_PLURALS, Inputs
    from pybgp.agent.status import REGION
    from pybgp.cli.main import open_kv
    from pybgp.model import KEY_PREFIX

    kv = open_kv(args)
    try:
        inputs = Inputs("")
        for plural in RESOURCE_PLURALS:
            kvs, _ = kv.list(f"{KEY_PREFIX}{plural}/")
            for item in kvs:
                inputs.apply(item.key, item.value)
        kvs, _ = kv.list(f"/calico/felix/v2/{REGION}/host/")
        status = {}
        for item in kvs:
            try:
                status[item.key] = str(json.loads(item.value).get("status", ""))
            except (ValueError, AttributeError):
                continue
    finally:
        kv.close()
    return inputs, status


def _plans(inputs: Any, node: str | None = None) -> list[Any]:
    from pybgp.agent.calc import Calc
    from pybgp.agent.config import effective

    calc = Calc()
    nodes = sorted({ep.node for ep in inputs.endpoints.values()
                    if node is None or ep.node == node})
    out = []
    for name in nodes:
        inputs.node = name
        cfg = effective(inputs.felix_default, None)
        desired = calc.compute(inputs, cfg)
        out += [(plan, desired) for _, plan in sorted(desired.endpoints.items())]
    return out


def _status(plan: Any, status: dict[str, str]) -> str:
    from pybgp.agent.status import endpoint_key

    ep = plan.endpoint
    return status.get(endpoint_key(ep.node, ep.orchestrator, ep.namespace, ep.workload,
                                   ep.endpoint), "unknown")


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join(fmt.format(*r).rstrip() for r in [headers, *rows]) + "\n"


def run_endpoints(args: argparse.Namespace) -> int:
    inputs, status = _load(args)
    plans = _plans(inputs, args.node)
    if args.output == "json":
        json.dump([_endpoint_json(plan, status) for plan, _ in plans], sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    rows = [[p.endpoint.namespace, p.endpoint.name, p.endpoint.node, p.endpoint.iface,
             ",".join(p.endpoint.ips), ",".join(p.profiles) or "-",
             f"{len(p.ingress)}/{len(p.egress)}", _status(p, status)] for p, _ in plans]
    sys.stdout.write(_table(["NAMESPACE", "NAME", "NODE", "INTERFACE", "ADDRESSES", "PROFILES",
                             "POLICIES IN/OUT", "STATUS"], rows))
    _warn(inputs)
    return 0


def _endpoint_json(plan: Any, status: dict[str, str]) -> dict[str, Any]:
    ep = plan.endpoint
    return {"namespace": ep.namespace, "name": ep.name, "node": ep.node,
            "interface": ep.iface, "addresses": list(ep.ips), "mac": ep.mac,
            "profiles": list(plan.profiles), "labels": dict(plan.labels),
            "ingress_policies": [p.id for p in plan.ingress],
            "egress_policies": [p.id for p in plan.egress], "status": _status(plan, status)}


def _find(plans: list[Any], text: str) -> tuple[Any, Any]:
    def names(plan: Any) -> set[str]:
        ep = plan.endpoint
        return {ep.name, f"{ep.namespace}/{ep.name}", ep.workload,
                f"{ep.namespace}/{ep.workload}", ep.iface}

    found = [(p, d) for p, d in plans if text in names(p)]
    if not found:
        raise NotFoundError(f"no workload endpoint matches {text!r} (try pybgp show endpoints)")
    if len(found) > 1:
        which = ", ".join(f"{p.endpoint.namespace}/{p.endpoint.name}" for p, _ in found)
        raise PybgpError(f"{text!r} matches several endpoints: {which}")
    return found[0]


def _direction(plan: Any, desired: Any, direction: str) -> dict[str, Any]:
    from pybgp.agent.calc import policy_chain, profile_chain

    chains = desired.chains["filter"]
    policies = plan.ingress if direction == "in" else plan.egress
    out = {"chain": plan.to_chain if direction == "in" else plan.from_chain, "policies": [],
           "profiles": []}
    for p in policies:
        chain = policy_chain(direction, p)
        out["policies"].append({
            "kind": p.kind, "namespace": p.namespace or None, "name": p.name,
            "order": None if p.order == float("inf") else p.order, "chain": chain,
            "rules": list(chains.get(chain, ()))})
    for name in plan.profiles:
        chain = profile_chain(direction, name)
        out["profiles"].append({"name": name, "chain": chain,
                                "missing": name in plan.missing_profiles,
                                "rules": list(chains.get(chain, ()))})
    return out


def run_policy(args: argparse.Namespace) -> int:
    inputs, status = _load(args)
    plan, desired = _find(_plans(inputs), args.endpoint)
    result = {"endpoint": _endpoint_json(plan, status),
              "ingress": _direction(plan, desired, "in"),
              "egress": _direction(plan, desired, "out")}
    if args.output == "json":
        json.dump(result, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    ep = result["endpoint"]
    w = sys.stdout.write
    w(f"Endpoint {ep['namespace']}/{ep['name']}  node {ep['node']}  interface "
      f"{ep['interface']}  {','.join(ep['addresses'])}  status {ep['status']}\n")
    w("Labels: " + ", ".join(f"{k}={v}" for k, v in sorted(ep["labels"].items())) + "\n")
    for title, key in (("INGRESS (to the endpoint)", "ingress"),
                       ("EGRESS (from the endpoint)", "egress")):
        d = result[key]
        w(f"\n{title}: chain {d['chain']}\n")
        rows = []
        for i, p in enumerate(d["policies"], 1):
            name = f"{p['namespace']}/{p['name']}" if p["namespace"] else p["name"]
            rows.append([str(i), p["kind"], name,
                         "-" if p["order"] is None else f"{p['order']:g}", p["chain"]])
        if rows:
            w(_table(["#", "KIND", "NAME", "ORDER", "CHAIN"], rows))
            for p in d["policies"]:
                w(f"  {p['chain']}:\n")
                w("".join(f"    {r}\n" for r in p["rules"]) or "    (no rules)\n")
            w("  then: drop, unless a policy allowed (return) or passed (to the profiles)\n")
        else:
            w("  no policy applies: the profiles decide\n")
        for prof in d["profiles"]:
            missing = " (does not exist: default drop)" if prof["missing"] else ""
            w(f"  profile {prof['name']}{missing}: {prof['chain']}\n")
            w("".join(f"    {r}\n" for r in prof["rules"]) or "    (no rules)\n")
        w("  then: drop (no profile matched)\n")
    _warn(inputs)
    return 0


def _warn(inputs: Any) -> None:
    for key, why in sorted(inputs.errors.items()):
        print(f"warning: skipped invalid {key}: {why}", file=sys.stderr)
