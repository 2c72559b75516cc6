"""One Calico rule → iptables rule bodies (pure), Felix's way.

A v3 :class:`~pybgp.model.policy.Rule` is first turned into a :class:`BRule`
(libcalico-go's "backend" rule: source and destination selectors already
combined with the policy's namespace, ``namespaceSelector`` and service
accounts), then rendered for IPv4 as the bodies of ``-A <chain> …`` lines.

Rendering, as Felix's ``rules/policy.go`` does it:

- Allow / Pass set the accept (``0x10000``) / pass (``0x20000``) mark bit and
  return; Deny drops; Log logs with prefix ``calico-packet``.
- Selectors match ipsets (``-m set --match-set cali40s:… src|dst``); one net
  is ``-s``/``-d``, several are an ipset (``cali40n:…``); ``notNets`` and
  ``notSelector`` are the negations.
- Port lists use ``multiport`` (15 slots, a range takes 2). A named port is
  an ipset of type ``hash:ip,port`` (``cali40p:…``) holding ``ip,proto:port``
  of every endpoint the side's selector matches (all endpoints without one)
  that has a port of that name and protocol — the rule's protocol, TCP when
  it has none; identical ones are shared. When a side's positive ports need
  more than one match (more than 15 slots, or named and numeric ports, or
  several names), they are OR-ed in a *match block* before the rule, as
  Felix's ``matchBlockBuilder`` does: a rule resets the scratch marks, one
  rule per piece sets a scratch bit, and the rule proper requires the bit
  (a second block ANDs its bit into the first). A side with named ports and
  no numeric ones needs no selector set: the named-port set is already
  filtered by it. Negated lists are all-must-hold matches in the rule
  itself: several ``! --dports`` pieces, ``! --match-set … dst,dst`` per
  name (filtered by the positive selector, which the rule requires anyway).
- Nets are written as the kernel keeps them (``10.0.0.1/8`` → ``10.0.0.0/8``).
- A rule for IPv6 only (``ipVersion: 6``, or protocol ICMPv6 by name or
  number), or whose ``nets`` or ``notNets`` on a side are all IPv6, renders
  to nothing (Felix's ``FilterRuleToIPVersion``); a ``notNets`` of
  ``0.0.0.0/0`` matches nothing and renders to nothing.
- ``services`` are not implemented: such a rule is rendered failing closed
  (an Allow, Pass or Log is left out; a Deny drops without the service
  restriction) and :attr:`BRule.unsupported` says why.

Must never: do I/O, or emit a rule that matches more than the Calico rule
would allow.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass

from pybgp.agent import selectors as S
from pybgp.model.policy import Rule
from pybgp.model.selector import All, Selector, parse
from pybgp.model.values import Port

MARK_ACCEPT = 0x10000
MARK_PASS = 0x20000
MARK_SCRATCH0 = 0x40000
MARK_SCRATCH1 = 0x80000
MARK_ALL = 0xF0000
MAX_CHAIN_NAME = 28
MULTIPORT_SLOTS = 15
LOG_PREFIX = "calico-packet"

#: ICMPv6 by name or number: matches no IPv4 packet (and ``-p 58 -m icmp`` would
#: make iptables-restore refuse the whole transaction).
IPV6_ONLY_PROTOCOLS = ("icmpv6", "58")
_PROTO_NAMES = {"TCP": "tcp", "UDP": "udp", "ICMP": "icmp", "ICMPv6": "icmpv6",
                "SCTP": "sctp", "UDPLite": "udplite"}
#: The protocols a named port can have, by rule protocol (iptables' name or number).
_NAMED_PORT_PROTOS = {"udp": "udp", "17": "udp", "sctp": "sctp", "132": "sctp"}


def mark_set(bit: int) -> str:
    return f"-j MARK --set-xmark {bit:#x}/{bit:#x}"


def mark_clear(bits: int) -> str:
    return f"-j MARK --set-xmark 0x0/{bits:#x}"


def mark_is_set(bit: int) -> str:
    return f"-m mark --mark {bit:#x}/{bit:#x}"


def mark_is_clear(bit: int) -> str:
    return f"-m mark --mark 0x0/{bit:#x}"


def comment(text: str) -> str:
    return f'-m comment --comment "{text}"'


def limited_name(prefix: str, suffix: str, max_len: int = MAX_CHAIN_NAME) -> str:
    """libcalico-go's ``GetLengthLimitedID``: ``prefix + suffix``, or, when that
    is too long, ``prefix + "_" +`` a hash of the suffix cut to fit."""
    suffix = suffix or "_"
    if len(prefix) + len(suffix) > max_len or (
            len(prefix) + len(suffix) == max_len and suffix.startswith("_")):
        import base64
        import hashlib

        digest = base64.urlsafe_b64encode(hashlib.sha256(suffix.encode()).digest()).decode()
        return prefix + "_" + digest.rstrip("=")[:max_len - 1 - len(prefix)]
    return prefix + suffix


@dataclass(frozen=True)
class NamedPort:
    """What a named-port set holds: the ports called ``name`` with protocol
    ``proto`` of the endpoints ``selector`` matches."""

    selector: Selector
    proto: str  # tcp, udp or sctp
    name: str


@dataclass(frozen=True)
class Side:
    """One side (source or destination) of a backend rule."""

    nets: tuple[str, ...] = ()
    not_nets: tuple[str, ...] = ()
    selector: Selector | None = None
    not_selector: Selector | None = None
    ports: tuple[Port, ...] = ()  # numeric ones; names are in named_ports
    not_ports: tuple[Port, ...] = ()
    named_ports: tuple[str, ...] = ()
    not_named_ports: tuple[str, ...] = ()

    def named_port_set(self, name: str, proto: str) -> tuple[str, NamedPort]:
        """(ipset name, what it holds) of one of this side's named ports."""
        key = NamedPort(self.selector if self.selector is not None else All(), proto, name)
        return S.named_port_set(key.selector, proto, name), key

    @property
    def needs_selector_set(self) -> bool:
        """Felix leaves the selector out when only named ports are given: the
        named-port sets hold only endpoints the selector matches."""
        return self.selector is not None and (bool(self.ports) or not self.named_ports)


@dataclass(frozen=True)
class BRule:
    action: str
    ip_version: int | None = None
    protocol: str | None = None  # iptables' name or number
    not_protocol: str | None = None
    icmp: tuple[int, int | None] | None = None  # (type, code)
    not_icmp: tuple[int, int | None] | None = None
    src: Side = Side()
    dst: Side = Side()
    named_proto: str = "tcp"  # the protocol of the rule's named ports
    unsupported: str = ""

    def ipsets(self) -> Iterator[tuple[str, str, IPSetWhat]]:
        """(name, kind, what) of every ipset this rule's IPv4 rendering uses:
        kind ``s`` with a selector, ``n`` with a tuple of nets, ``p`` with a
        :class:`NamedPort`."""
        for side in (self.src, self.dst):
            if side.needs_selector_set:
                assert side.selector is not None
                yield S.selector_set(side.selector), "s", side.selector
            if side.not_selector is not None:
                yield S.selector_set(side.not_selector), "s", side.not_selector
            for nets in (side.nets, side.not_nets):
                v4 = _v4(nets)
                if len(v4) > 1:
                    yield S.nets_set(v4), "n", v4
            for name in (*side.named_ports, *side.not_named_ports):
                set_name, key = side.named_port_set(name, self.named_proto)
                yield set_name, "p", key


IPSetWhat = Selector | tuple[str, ...] | NamedPort


def _proto(value: int | str | None) -> str | None:
    if value is None:
        return None
    return str(value) if isinstance(value, int) else _PROTO_NAMES[value]


def _icmp(fields: object) -> tuple[int, int | None] | None:
    if fields is None or getattr(fields, "type", None) is None:
        return None
    return (fields.type, fields.code)  # type: ignore[attr-defined]


def backend_rule(rule: Rule, namespace: str = "") -> BRule:
    """libcalico-go's ``RuleAPIV3ToBackend`` for one rule of a policy in
    ``namespace`` ("" for a global policy or a profile)."""
    unsupported = []
    sides = []
    for er in (rule.source, rule.destination):
        if er.services is not None:
            unsupported.append("services")
        sa = None
        if er.service_accounts is not None:
            sa = S.service_accounts(er.service_accounts.names, er.service_accounts.selector)
        sel = S.entity_selector(er.namespace_selector, er.selector, sa, er.not_selector,
                                namespace)
        sides.append(Side(
            nets=_canonical(er.nets), not_nets=_canonical(er.not_nets), selector=sel,
            not_selector=parse(er.not_selector) if er.not_selector else None,
            ports=tuple(p for p in er.ports if not p.name),
            not_ports=tuple(p for p in er.not_ports if not p.name),
            named_ports=tuple(dict.fromkeys(p.name for p in er.ports if p.name)),
            not_named_ports=tuple(dict.fromkeys(p.name for p in er.not_ports if p.name))))
    protocol = _proto(rule.protocol)
    return BRule(
        action=rule.action, ip_version=rule.ip_version, protocol=protocol,
        not_protocol=_proto(rule.not_protocol), icmp=_icmp(rule.icmp),
        not_icmp=_icmp(rule.not_icmp), src=sides[0], dst=sides[1],
        named_proto=_NAMED_PORT_PROTOS.get(protocol or "", "tcp"),
        unsupported="; ".join(unsupported))


def _canonical(nets: list[str]) -> tuple[str, ...]:
    """Nets as the kernel keeps them (host bits cleared, a bare address as /32),
    without repeats: ipset reads ``10.0.0.1/8`` back as ``10.0.0.0/8``, and a
    member spelled otherwise would be re-added and deleted on every refresh."""
    return tuple(dict.fromkeys(str(ipaddress.ip_network(n, strict=False)) for n in nets))


def _v4(nets: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(n for n in nets if ":" not in n)


def _port_text(p: Port) -> str:
    return str(p.min) if p.min == p.max else f"{p.min}:{p.max}"


def split_ports(ports: tuple[Port, ...]) -> list[str]:
    """Comma lists for ``multiport``, each within its 15 slots."""
    out: list[str] = []
    current: list[str] = []
    used = 0
    for p in ports:
        cost = 1 if p.min == p.max else 2
        if used + cost > MULTIPORT_SLOTS:
            out.append(",".join(current))
            current, used = [], 0
        current.append(_port_text(p))
        used += cost
    if current:
        out.append(",".join(current))
    return out


def _side_matches(side: Side, flag: str, direction: str) -> list[str] | None:
    """Address matches of one side (``-s``/``src`` or ``-d``/``dst``); None
    when the side can match no IPv4 packet."""
    parts: list[str] = []
    nets = _v4(side.nets)
    if side.nets and not nets:
        return None
    if len(nets) == 1:
        parts.append(f"{flag} {nets[0]}")
    elif nets:
        parts.append(f"-m set --match-set {S.nets_set(nets)} {direction}")
    not_nets = _v4(side.not_nets)
    if (side.not_nets and not not_nets) or "0.0.0.0/0" in not_nets:
        return None  # (only IPv6 notNets: the rule is IPv6's, as Felix filters it)
    if len(not_nets) == 1:
        parts.append(f"! {flag} {not_nets[0]}")
    elif not_nets:
        parts.append(f"-m set ! --match-set {S.nets_set(not_nets)} {direction}")
    if side.needs_selector_set:
        assert side.selector is not None
        parts.append(f"-m set --match-set {S.selector_set(side.selector)} {direction}")
    if side.not_selector is not None:
        parts.append(f"-m set ! --match-set {S.selector_set(side.not_selector)} {direction}")
    return parts


class _Blocks:
    """Felix's ``matchBlockBuilder`` for positive port matches: rules before
    the rule proper that OR a side's pieces into a scratch mark bit."""

    def __init__(self) -> None:
        self.rules: list[str] = []
        self.done_first = False

    def add(self, pieces: list[str]) -> None:
        if not self.rules:  # the first block resets both scratch bits
            self.rules.append(mark_clear(MARK_SCRATCH0 | MARK_SCRATCH1))
        # The first block writes the all-blocks bit directly; a later one
        # writes its own bit, then clears the all-blocks bit unless it is set.
        bit = MARK_SCRATCH1 if self.done_first else MARK_SCRATCH0
        self.rules += [f"{piece} {mark_set(bit)}" for piece in pieces]
        if self.done_first:
            self.rules.append(f"{mark_is_clear(MARK_SCRATCH1)} {mark_clear(MARK_SCRATCH0)}")
        self.done_first = True


def rule_matches(br: BRule) -> tuple[list[str], str] | None:
    """A rule for IPv4 as (the match-block rules before it, its match), or
    None if it matches no IPv4 packet. A packet matches the Calico rule
    exactly when, after the block rules, it matches the match."""
    if br.ip_version == 6 or br.protocol in IPV6_ONLY_PROTOCOLS:
        return None
    base: list[str] = []
    if br.protocol:
        base.append(f"-p {br.protocol}")
    if br.not_protocol:
        base.append(f"! -p {br.not_protocol}")
    for side, flag, direction in ((br.src, "-s", "src"), (br.dst, "-d", "dst")):
        parts = _side_matches(side, flag, direction)
        if parts is None:
            return None
        base += parts
    for side, opt, direction in ((br.src, "--sports", "src"), (br.dst, "--dports", "dst")):
        for chunk in split_ports(side.not_ports):
            base.append(f"-m multiport ! {opt} {chunk}")
        for name in side.not_named_ports:
            set_name, _ = side.named_port_set(name, br.named_proto)
            base.append(f"-m set ! --match-set {set_name} {direction},{direction}")
    if br.icmp is not None:
        base.append(f"-m icmp --icmp-type {_icmp_text(br.icmp)}")
    if br.not_icmp is not None:
        base.append(f"-m icmp ! --icmp-type {_icmp_text(br.not_icmp)}")
    blocks = _Blocks()
    proto = f"-p {br.protocol} " if br.protocol else ""  # multiport wants one
    for side, opt, direction in ((br.src, "--sports", "src"), (br.dst, "--dports", "dst")):
        numeric = [f"-m multiport {opt} {chunk}" for chunk in split_ports(side.ports)]
        named = [f"-m set --match-set {side.named_port_set(name, br.named_proto)[0]} "
                 f"{direction},{direction}" for name in side.named_ports]
        if len(numeric) + len(named) == 1:
            base += numeric + named
        elif numeric or named:
            blocks.add([proto + piece for piece in numeric] + named)
    if blocks.rules:
        base.append(mark_is_set(MARK_SCRATCH0))
    return blocks.rules, " ".join(base)


def _icmp_text(icmp: tuple[int, int | None]) -> str:
    return str(icmp[0]) if icmp[1] is None else f"{icmp[0]}/{icmp[1]}"


def render_rule(br: BRule) -> list[str]:
    """The rule bodies (``-A chain`` left out) for one backend rule."""
    if br.unsupported and br.action != "Deny":
        return []  # fail closed: never allow, pass or log more than asked
    rendered = rule_matches(br)
    if rendered is None:
        return []
    out, match = rendered
    if br.action in ("Allow", "Pass"):
        bit = MARK_ACCEPT if br.action == "Allow" else MARK_PASS
        out += [f"{match} {mark_set(bit)}".strip(), f"{mark_is_set(bit)} -j RETURN"]
    elif br.action == "Deny":
        out.append(f"{match} -j DROP".strip())
    elif br.action == "Log":
        out.append(f'{match} -j LOG --log-prefix "{LOG_PREFIX}: " --log-level 5'.strip())
    return out


def render_rules(brules: list[BRule], title: str) -> list[str]:
    """A policy or profile chain: every rule in order, trailing returns
    dropped (they do nothing), ``title`` as a comment on the first line."""
    out: list[str] = []
    for br in brules:
        out += render_rule(br)
    while out and out[-1].endswith("-j RETURN"):
        out.pop()
    if out:
        out[0] = f"{comment(title)} {out[0]}"
    return out
