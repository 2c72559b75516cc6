"""What the agent reads from etcd, folded into typed, immutable values (pure).

``Inputs.apply(key, value)`` takes one syncer update (``value`` None =
deleted) of the prefixes in :data:`RESOURCE_PLURALS` and keeps:

- every WorkloadEndpoint of the cluster (the local ones are programmed; the
  others' addresses and labels fill selector ipsets, as Felix's calculation
  graph uses remote endpoints), as :class:`Endpoint`;
- Profiles, NetworkPolicies and GlobalNetworkPolicies, with their rules
  already converted to backend rules (:mod:`.rules`) and their selectors to
  Calico's v1 form (:mod:`.selectors`);
- IPPools (NAT outgoing), FelixConfiguration ``default`` and
  ``node.<this node>``, and the names of the cluster's Nodes.

A value that does not parse or validate is recorded in ``errors`` (key →
reason) and whatever was known for that key is forgotten: a broken policy
is skipped, never kept half-read, and never stops the agent or touches other
resources. ``generation`` counts changes per kind so the calculation can
tell cheaply what to redo.

Must never: do I/O, or keep a mutable object that the calculation shares.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pybgp.agent import selectors as S
from pybgp.agent.rules import BRule, backend_rule
from pybgp.errors import ValidationError
from pybgp.model import parse_json, parse_key
from pybgp.model.felix import FelixConfigurationSpec
from pybgp.model.selector import Selector

RESOURCE_PLURALS = ("workloadendpoints", "profiles", "networkpolicies",
                    "globalnetworkpolicies", "ippools", "felixconfigurations", "nodes")
Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Endpoint:
    key: str
    name: str
    namespace: str
    node: str
    orchestrator: str
    workload: str  # the pod (k8s) or workload id, as Felix's workload id uses it
    endpoint: str
    iface: str
    ips: tuple[str, ...]  # bare addresses
    mac: str
    profiles: tuple[str, ...]
    labels: Labels  # the endpoint's own labels, sorted
    nats: tuple[tuple[str, str], ...] = ()  # (internal, external)
    allow_spoofed: tuple[str, ...] = ()
    service_account: str = ""
    ports: tuple[tuple[str, str, int], ...] = ()  # named ports: (name, tcp|udp|sctp, port)

    @property
    def ipv4(self) -> tuple[str, ...]:
        return tuple(ip for ip in self.ips if ":" not in ip)


@dataclass(frozen=True)
class Profile:
    name: str
    ingress: tuple[BRule, ...]
    egress: tuple[BRule, ...]
    labels: Labels  # labelsToApply


@dataclass(frozen=True)
class Policy:
    kind: str  # NetworkPolicy / GlobalNetworkPolicy
    namespace: str  # "" for a GlobalNetworkPolicy
    name: str
    order: float  # unset = infinity (after every ordered policy)
    selector: Selector  # v1 form: namespace and namespaceSelector folded in
    ingress: tuple[BRule, ...] | None  # None: the policy has no Ingress type
    egress: tuple[BRule, ...] | None
    untracked: bool = False  # doNotTrack / preDNAT: host endpoints only

    @property
    def id(self) -> str:
        """Felix's policy id: ``gnp/<name>`` or ``np/<namespace>/<name>``."""
        return f"np/{self.namespace}/{self.name}" if self.namespace else f"gnp/{self.name}"

    @property
    def sort_key(self) -> tuple[float, str]:
        """Felix's order: ``order`` (unset last), then the v1 policy name —
        ``<namespace>/<name>`` for a NetworkPolicy, ``<name>`` for a global one."""
        return (self.order, f"{self.namespace}/{self.name}" if self.namespace else self.name)


@dataclass(frozen=True)
class Pool:
    name: str
    cidr: str
    nat_outgoing: bool
    disabled: bool


@dataclass
class Inputs:
    node: str
    endpoints: dict[str, Endpoint] = field(default_factory=dict)  # key → endpoint
    profiles: dict[str, Profile] = field(default_factory=dict)
    policies: dict[str, Policy] = field(default_factory=dict)  # key → policy
    pools: dict[str, Pool] = field(default_factory=dict)
    felix_default: FelixConfigurationSpec | None = None
    felix_node: FelixConfigurationSpec | None = None
    nodes: set[str] = field(default_factory=set)
    errors: dict[str, str] = field(default_factory=dict)
    generation: Counter[str] = field(default_factory=Counter)

    @property
    def local_endpoints(self) -> list[Endpoint]:
        return [ep for ep in self.endpoints.values() if ep.node == self.node]

    def apply(self, key: str, value: bytes | None) -> str | None:
        """Fold one update in; the plural it changed (None: nothing)."""
        had_error = self.errors.pop(key, None) is not None
        try:
            plural = self._apply(key, value)
        except Exception as exc:  # any value, however broken, is this key's problem only
            known = isinstance(exc, (ValidationError, ValueError, KeyError, TypeError))
            self.errors[key] = str(exc) if known else f"{type(exc).__name__}: {exc}"
            plural = self._forget(key)
            return plural
        return plural if plural or not had_error else None

    def _apply(self, key: str, value: bytes | None) -> str | None:
        info, namespace, name = parse_key(key)
        plural = info.plural
        if plural not in RESOURCE_PLURALS:
            return None
        if value is None:
            return self._forget(key)
        res = parse_json(value)
        if res.kind != info.kind or res.name != name or (namespace or None) != res.namespace:
            raise ValidationError(f"{res.kind} {res.name!r} stored under the key of "
                                  f"{info.kind} {name!r}", source=key)
        new: Any
        table: dict[str, Any]
        if plural == "workloadendpoints":
            new, table = _endpoint(key, res), self.endpoints
        elif plural == "profiles":
            new, table = _profile(res), self.profiles
            key = name
        elif plural in ("networkpolicies", "globalnetworkpolicies"):
            new, table = _policy(res), self.policies
        elif plural == "ippools":
            spec = res.spec
            new, table = Pool(name, spec.cidr, spec.nat_outgoing, spec.disabled), self.pools
            key = name
        elif plural == "felixconfigurations":
            return self._felix(name, res.spec)
        else:
            if name in self.nodes:
                return None
            self.nodes.add(name)
            self.generation[plural] += 1
            return plural
        if table.get(key) == new:
            return None
        table[key] = new
        self.generation[plural] += 1
        return plural

    def _felix(self, name: str, spec: FelixConfigurationSpec | None) -> str | None:
        if name == "default":
            changed, self.felix_default = self.felix_default != spec, spec
        elif name == f"node.{self.node}":
            changed, self.felix_node = self.felix_node != spec, spec
        else:
            return None
        if changed:
            self.generation["felixconfigurations"] += 1
            return "felixconfigurations"
        return None

    def _forget(self, key: str) -> str | None:
        try:
            info, _, name = parse_key(key)
        except ValidationError:
            return None
        plural = info.plural
        removed: Any = None
        if plural == "workloadendpoints":
            removed = self.endpoints.pop(key, None)
        elif plural == "profiles":
            removed = self.profiles.pop(name, None)
        elif plural in ("networkpolicies", "globalnetworkpolicies"):
            removed = self.policies.pop(key, None)
        elif plural == "ippools":
            removed = self.pools.pop(name, None)
        elif plural == "felixconfigurations":
            return self._felix(name, None)
        elif plural == "nodes" and name in self.nodes:
            self.nodes.discard(name)
            removed = name
        if removed is None:
            return None
        self.generation[plural] += 1
        return plural


#: An endpoint port's protocol (a name or a number) as ipset spells it.
_PORT_PROTOS: dict[int | str, str] = {"TCP": "tcp", "UDP": "udp", "SCTP": "sctp",
                                      6: "tcp", 17: "udp", 132: "sctp"}


def _labels(labels: dict[str, str]) -> Labels:
    return tuple(sorted(labels.items()))


def _endpoint(key: str, res: Any) -> Endpoint:
    spec = res.spec
    labels = dict(res.labels)
    if spec.service_account_name:
        labels.setdefault(S.LABEL_SERVICE_ACCOUNT, spec.service_account_name)
    workload = spec.pod if spec.orchestrator == "k8s" else (spec.workload or spec.container_id)
    return Endpoint(
        key=key, name=res.name, namespace=res.namespace or "default", node=spec.node,
        orchestrator=spec.orchestrator, workload=workload, endpoint=spec.endpoint,
        iface=spec.interface_name, ips=tuple(spec.addresses), mac=spec.mac.lower(),
        profiles=tuple(spec.profiles), labels=_labels(labels),
        nats=tuple((n.internal_ip, n.external_ip) for n in spec.ip_nats),
        allow_spoofed=tuple(spec.allow_spoofed_source_prefixes),
        service_account=spec.service_account_name,
        ports=tuple((p.name, _PORT_PROTOS[p.protocol], p.port) for p in spec.ports
                    if p.name and p.protocol in _PORT_PROTOS))


def _profile(res: Any) -> Profile:
    spec = res.spec
    return Profile(res.name, tuple(backend_rule(r) for r in spec.ingress),
                   tuple(backend_rule(r) for r in spec.egress), _labels(spec.labels_to_apply))


def _policy(res: Any) -> Policy:
    spec = res.spec
    namespace = (res.namespace or "") if res.kind == "NetworkPolicy" else ""
    sel = S.policy_selector(spec.selector, namespace=namespace,
                            namespace_selector=getattr(spec, "namespace_selector", ""),
                            service_account_selector=spec.service_account_selector)
    ingress = egress = None
    if "Ingress" in spec.types:
        ingress = tuple(backend_rule(r, namespace) for r in spec.ingress)
    if "Egress" in spec.types:
        egress = tuple(backend_rule(r, namespace) for r in spec.egress)
    order = math.inf if spec.order is None else float(spec.order)
    untracked = bool(getattr(spec, "do_not_track", False) or getattr(spec, "pre_dnat", False))
    return Policy(res.kind, namespace, res.name, order, sel, ingress, egress, untracked)
