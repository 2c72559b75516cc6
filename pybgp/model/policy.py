"""Specs of the policy kinds: NetworkPolicy, GlobalNetworkPolicy, Profile, and
their shared Rule / EntityRule structures.

Validation follows Calico's validator and CRD rules: rule actions, protocols
and ports (numeric ports need a protocol that has ports), ICMP fields need an
ICMP protocol, nets of one IP family per rule, ``global()`` only inside a
``namespaceSelector``, and GlobalNetworkPolicy's preDNAT/doNotTrack rules.
``types`` is defaulted from the rules present, as Calico does on create.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import ClassVar

from pybgp.model import values as v
from pybgp.model.schema import F, Struct, checked, dump_struct, join, struct
from pybgp.model.selector import parse as parse_selector
from pybgp.model.selector import uses_global

ACTIONS = ("Allow", "Deny", "Log", "Pass")
POLICY_TYPES = ("Ingress", "Egress")
_dump_structs = v.dump_list(dump_struct)
_dump_ports = v.dump_list(lambda p: p.dump())


def _no_global(path: str, key: str, text: str) -> None:
    if text and uses_global(parse_selector(text)):
        raise v.fail(join(path, key),
                     f"global() can only be used in an EntityRule namespaceSelector ('{text}')")


@dataclass
class ICMPFields(Struct):
    type: int | None = None
    code: int | None = None

    FIELDS = (F("type", "type", v.integer(0, 254), ptr=True),
              F("code", "code", v.integer(0, 255), ptr=True))

    def finish(self, path: str) -> None:
        if self.code is not None and self.type is None:
            raise v.fail(join(path, "code"), "ICMP code specified without an ICMP type")


@dataclass
class ServiceMatch(Struct):
    name: str = ""
    namespace: str = ""

    FIELDS = (F("name", "name", v.name, required=True), F("namespace", "namespace", v.name))


@dataclass
class ServiceAccountMatch(Struct):
    names: list[str] = field(default_factory=list)
    selector: str = ""

    FIELDS = (F("names", "names", v.list_of(v.string)),
              F("selector", "selector", v.selector))


@dataclass
class EntityRule(Struct):
    """A rule's ``source`` or ``destination``."""

    nets: list[str] = field(default_factory=list)
    not_nets: list[str] = field(default_factory=list)
    selector: str = ""
    not_selector: str = ""
    namespace_selector: str = ""
    ports: list[v.Port] = field(default_factory=list)
    not_ports: list[v.Port] = field(default_factory=list)
    services: ServiceMatch | None = None
    service_accounts: ServiceAccountMatch | None = None

    FIELDS = (
        F("nets", "nets", v.list_of(v.net)),
        F("selector", "selector", v.selector),
        F("namespaceSelector", "namespace_selector", v.selector),
        F("services", "services", struct(ServiceMatch), dump_struct, ptr=True),
        F("ports", "ports", v.list_of(v.port), _dump_ports),
        F("notNets", "not_nets", v.list_of(v.net)),
        F("notSelector", "not_selector", v.selector),
        F("notPorts", "not_ports", v.list_of(v.port), _dump_ports),
        F("serviceAccounts", "service_accounts", struct(ServiceAccountMatch), dump_struct,
          ptr=True),
    )

    def finish(self, path: str) -> None:
        _no_global(path, "selector", self.selector)
        _no_global(path, "notSelector", self.not_selector)
        for i, text in enumerate(self.not_nets):
            if ipaddress.ip_network(text, strict=False).prefixlen == 0:
                raise v.fail(f"{join(path, 'notNets')}[{i}]",
                             f"catch-all CIDR '{text}' in notNets matches no traffic")
        if self.services is not None and (self.ports or self.not_ports or self.nets
                                          or self.not_nets or self.selector
                                          or self.not_selector or self.namespace_selector):
            raise v.fail(join(path, "services"),
                         "services cannot be combined with ports, nets or selectors")


@dataclass
class Rule(Struct):
    action: str = ""
    ip_version: int | None = None
    protocol: int | str | None = None
    not_protocol: int | str | None = None
    icmp: ICMPFields | None = None
    not_icmp: ICMPFields | None = None
    source: EntityRule = field(default_factory=EntityRule)
    destination: EntityRule = field(default_factory=EntityRule)

    FIELDS = (
        F("action", "action", v.enum(*ACTIONS), required=True),
        F("ipVersion", "ip_version", checked(v.integer(4, 6),
                                               lambda n: None if n in (4, 6) else
                                               f"invalid ipVersion {n} (expected 4 or 6)"),
          ptr=True),
        F("protocol", "protocol", v.protocol, ptr=True),
        F("icmp", "icmp", struct(ICMPFields), dump_struct, ptr=True),
        F("notProtocol", "not_protocol", v.protocol, ptr=True),
        F("notICMP", "not_icmp", struct(ICMPFields), dump_struct, ptr=True),
        F("source", "source", struct(EntityRule), dump_struct),
        F("destination", "destination", struct(EntityRule), dump_struct),
    )

    def finish(self, path: str) -> None:
        for side, key in ((self.source, "source"), (self.destination, "destination")):
            for ports, pkey in ((side.ports, "ports"), (side.not_ports, "notPorts")):
                numeric = [p for p in ports if not p.name]
                if self.protocol is None and numeric:
                    raise v.fail(join(path, f"{key}.{pkey}"),
                                 f"port {numeric[0]} needs a protocol (TCP, UDP or SCTP)")
                if self.protocol is not None and ports \
                        and not v.protocol_has_ports(self.protocol):
                    raise v.fail(join(path, f"{key}.{pkey}"),
                                 f"protocol {self.protocol} does not support ports")
        for icmp, key, proto in ((self.icmp, "icmp", self.protocol),
                                 (self.not_icmp, "notICMP", self.protocol)):
            if icmp is not None and (proto is None or v.protocol_number(proto) not in (1, 58)):
                raise v.fail(join(path, key), "ICMP fields require protocol ICMP or ICMPv6")
        for proto in (self.protocol, self.not_protocol):
            if proto is not None and self.ip_version is not None:
                number = v.protocol_number(proto)
                if (number == 1 and self.ip_version != 4) or (number == 58
                                                             and self.ip_version != 6):
                    raise v.fail(join(path, "ipVersion"),
                                 f"protocol {proto} does not match ipVersion {self.ip_version}")
        self._check_families(path)

    def _check_families(self, path: str) -> None:
        families: set[int] = set()
        for side, key in ((self.source, "source"), (self.destination, "destination")):
            for nets, nkey in ((side.nets, "nets"), (side.not_nets, "notNets")):
                for text in nets:
                    version = ipaddress.ip_network(text, strict=False).version
                    where = join(path, f"{key}.{nkey}")
                    if self.ip_version is not None and version != self.ip_version:
                        raise v.fail(where, f"CIDR '{text}' does not match ipVersion "
                                            f"{self.ip_version}")
                    families.add(version)
                    if len(families) > 1:
                        raise v.fail(where, f"rule mixes IPv4 and IPv6 CIDRs ('{text}')")


_rules = v.list_of(struct(Rule))


def default_types(ingress: list[Rule], egress: list[Rule]) -> list[str]:
    """Calico's default for an empty ``types`` on create."""
    if not egress:
        return ["Ingress"]
    if not ingress:
        return ["Egress"]
    return ["Ingress", "Egress"]


@dataclass
class NetworkPolicySpec(Struct):
    tier: str = ""
    order: float | None = None
    ingress: list[Rule] = field(default_factory=list)
    egress: list[Rule] = field(default_factory=list)
    selector: str = ""
    types: list[str] = field(default_factory=list)
    service_account_selector: str = ""
    performance_hints: list[str] = field(default_factory=list)

    FIELDS: ClassVar[tuple[F, ...]] = (
        F("tier", "tier", v.name),
        F("order", "order", v.number, v.dump_number, ptr=True),
        F("ingress", "ingress", _rules, _dump_structs),
        F("egress", "egress", _rules, _dump_structs),
        F("selector", "selector", v.selector),
        F("types", "types", v.list_of(v.enum(*POLICY_TYPES))),
        F("serviceAccountSelector", "service_account_selector", v.selector),
        F("performanceHints", "performance_hints",
          v.list_of(v.enum("AssumeNeededOnEveryNode"))),
    )

    def finish(self, path: str) -> None:
        self.types = self.types or default_types(self.ingress, self.egress)
        if len(set(self.types)) != len(self.types):
            raise v.fail(join(path, "types"), f"duplicate entries in types {self.types}")
        _no_global(path, "selector", self.selector)
        _no_global(path, "serviceAccountSelector", self.service_account_selector)


@dataclass
class GlobalNetworkPolicySpec(NetworkPolicySpec):
    do_not_track: bool = False
    pre_dnat: bool = False
    apply_on_forward: bool = False
    namespace_selector: str = ""

    FIELDS = NetworkPolicySpec.FIELDS + (
        F("doNotTrack", "do_not_track", v.boolean),
        F("preDNAT", "pre_dnat", v.boolean),
        F("applyOnForward", "apply_on_forward", v.boolean),
        F("namespaceSelector", "namespace_selector", v.selector),
    )

    def finish(self, path: str) -> None:
        super().finish(path)
        _no_global(path, "namespaceSelector", self.namespace_selector)
        if self.do_not_track and self.pre_dnat:
            raise v.fail(join(path, "preDNAT"), "preDNAT and doNotTrack cannot both be true")
        if self.pre_dnat and self.egress:
            raise v.fail(join(path, "egress"), "preDNAT policy cannot have any egress rules")
        if self.pre_dnat and "Egress" in self.types:
            raise v.fail(join(path, "types"), "preDNAT policy cannot have 'Egress' type")
        if (self.do_not_track or self.pre_dnat) and not self.apply_on_forward:
            raise v.fail(join(path, "applyOnForward"),
                         "applyOnForward must be true if either preDNAT or doNotTrack is true")


@dataclass
class ProfileSpec(Struct):
    ingress: list[Rule] = field(default_factory=list)
    egress: list[Rule] = field(default_factory=list)
    labels_to_apply: dict[str, str] = field(default_factory=dict)

    FIELDS = (
        F("ingress", "ingress", _rules, _dump_structs),
        F("egress", "egress", _rules, _dump_structs),
        F("labelsToApply", "labels_to_apply", v.label_map),
    )
