"""The pure calculation: the agent's inputs → the whole desired dataplane.

``Calc().compute(inputs, config, links)`` returns a :class:`Desired`: the
iptables chains per table (name → rule bodies), the hook rules into the
kernel's built-in chains, the ipsets (name → members), the workload routes,
neighbour entries and sysctls, and per local endpoint which policies and
profiles apply (what ``pybgp show policy`` prints).

Semantics are Felix's (``calc/``, ``rules/``):

- endpoint labels = the namespace's name as ``pcns.projectcalico.org/name``
  (what Calico's namespace profile applies), then the profiles'
  ``labelsToApply`` (the first profile wins), then the endpoint's own labels;
- a policy applies to a local endpoint whose labels its v1 selector
  matches; doNotTrack/preDNAT policies only apply to host endpoints, which
  pybgp does not have; order by ``order`` (unset last), then by the v1
  name (``<namespace>/<name>`` for a NetworkPolicy, as libcalico-go names it);
- per direction: if any applying policy has that type, the tier's policies
  are tried in order (Allow returns at once, Pass skips to the profiles)
  and the end of the tier drops; else — or after a Pass — the profiles are
  tried, and "no profile matched" drops. A profile that does not exist is a
  default-drop profile, as in Felix;
- selectors in rules become ipsets of the matching endpoints' addresses,
  over every endpoint of the cluster; identical selectors share one set;
  a named port becomes a ``hash:ip,port`` set of the matching endpoints'
  ``ip,proto:port`` for their port of that name and protocol.

Everything here is recomputed from the inputs on each call; the memo tables
(label sets, selector matches, rendered chains) only save work: a fresh
``Calc`` computes the same result. Must never do I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from pybgp.agent import rules as R
from pybgp.agent import selectors as S
from pybgp.agent.config import Config
from pybgp.agent.inputs import Endpoint, Inputs, Labels, Policy, Profile
from pybgp.model.selector import Selector

#: ipsets per network namespace: the kernel starts its table at CONFIG_IP_SET_MAX
#: (256) and grows it on demand up to IPSET_INVALID_ID (measured on 6.18: 2000 sets
#: in one namespace, no error), so 256 is not a limit.
MAX_IPSETS = 65535
IPSET_TYPE = "hash:net"
NAMED_PORT_IPSET_TYPE = "hash:ip,port"  # members "ip,proto:port", as Felix's
Wanted = dict[str, R.IPSetWhat]  # ipset name → what it holds, from BRule.ipsets
MASQ_POOLS = "cali40masq-ipam-pools"
ALL_POOLS = "cali40all-ipam-pools"
DISPATCH_SPLIT = 16  # more endpoints than this: one child dispatch chain per next character
HOOKS = {
    "filter": {"INPUT": "cali-INPUT", "FORWARD": "cali-FORWARD", "OUTPUT": "cali-OUTPUT"},
    "nat": {"PREROUTING": "cali-PREROUTING", "POSTROUTING": "cali-POSTROUTING",
            "OUTPUT": "cali-OUTPUT"},
    "raw": {"PREROUTING": "cali-PREROUTING"},
}
TABLES = tuple(HOOKS)
Lines = tuple[str, ...]
Chains = dict[str, Lines]


@dataclass(frozen=True)
class IPSet:
    kind: str
    members: frozenset[str]


@dataclass(frozen=True)
class EndpointPlan:
    """What applies to one local endpoint, in evaluation order."""

    endpoint: Endpoint
    labels: Labels
    ingress: tuple[Policy, ...]
    egress: tuple[Policy, ...]
    profiles: tuple[str, ...]
    missing_profiles: tuple[str, ...]
    up: bool

    @property
    def to_chain(self) -> str:
        return R.limited_name("cali-tw-", self.endpoint.iface)

    @property
    def from_chain(self) -> str:
        return R.limited_name("cali-fw-", self.endpoint.iface)


@dataclass
class Desired:
    chains: dict[str, Chains] = field(default_factory=lambda: {t: {} for t in TABLES})
    hooks: dict[str, dict[str, str]] = field(default_factory=dict)  # table → builtin → body
    ipsets: dict[str, IPSet] = field(default_factory=dict)
    routes: dict[str, str] = field(default_factory=dict)  # prefix → interface
    neighbours: dict[tuple[str, str], str] = field(default_factory=dict)  # (iface, ip) → mac
    sysctls: dict[str, str] = field(default_factory=dict)  # /proc/sys path → value
    endpoints: dict[str, EndpointPlan] = field(default_factory=dict)  # iface → plan
    errors: list[str] = field(default_factory=list)

    def rule_count(self) -> int:
        return sum(len(rules) for chains in self.chains.values() for rules in chains.values())


def policy_chain(direction: str, policy: Policy) -> str:
    return R.limited_name("cali-pi-" if direction == "in" else "cali-po-", policy.id)


def profile_chain(direction: str, name: str) -> str:
    return R.limited_name("cali-pri-" if direction == "in" else "cali-pro-", name)


def effective_labels(ep: Endpoint, profiles: Mapping[str, Profile]) -> Labels:
    labels = {S.NAMESPACE_NAME_LABEL: ep.namespace}
    for name in reversed(ep.profiles):
        prof = profiles.get(name)
        if prof is not None:
            labels.update(prof.labels)
    labels.update(ep.labels)
    return tuple(sorted(labels.items()))


class Calc:
    """Computes :class:`Desired`; keeps memo tables between calls (see module doc)."""

    MEMO_MAX = 200_000

    def __init__(self) -> None:
        self._labels: dict[tuple[Labels, str, tuple[str, ...], int], Labels] = {}
        self._dicts: dict[Labels, dict[str, str]] = {}
        self._matches: dict[tuple[Selector, Labels], bool] = {}
        self._applying: dict[tuple[Labels, int, int], tuple[Policy, ...]] = {}
        self._policy_chains: dict[Policy, tuple[Lines | None, Lines | None]] = {}
        self._profile_chains: dict[Profile, tuple[Lines, Lines]] = {}
        self._endpoint_chains: dict[tuple[object, ...], tuple[Lines, Lines]] = {}

    def _trim(self) -> None:
        for memo in (self._labels, self._dicts, self._matches, self._applying,
                     self._policy_chains, self._profile_chains, self._endpoint_chains):
            if len(memo) > self.MEMO_MAX:
                memo.clear()

    # -- labels and selectors --------------------------------------------------
    def labels_of(self, ep: Endpoint, inputs: Inputs) -> Labels:
        key = (ep.labels, ep.namespace, ep.profiles, inputs.generation["profiles"])
        got = self._labels.get(key)
        if got is None:
            got = self._labels[key] = effective_labels(ep, inputs.profiles)
        return got

    def _dict(self, labels: Labels) -> dict[str, str]:
        got = self._dicts.get(labels)
        if got is None:
            got = self._dicts[labels] = dict(labels)
        return got

    def matches(self, sel: Selector, labels: Labels) -> bool:
        key = (sel, labels)
        got = self._matches.get(key)
        if got is None:
            got = self._matches[key] = sel.matches(self._dict(labels))
        return got

    def applying(self, labels: Labels, inputs: Inputs) -> tuple[Policy, ...]:
        """The policies that apply to endpoints with ``labels``, in order."""
        key = (labels, inputs.generation["networkpolicies"],
               inputs.generation["globalnetworkpolicies"])
        got = self._applying.get(key)
        if got is None:
            found = [p for p in inputs.policies.values()
                     if not p.untracked and self.matches(p.selector, labels)]
            found.sort(key=lambda p: p.sort_key)
            got = self._applying[key] = tuple(found)
        return got

    # -- the whole calculation ---------------------------------------------------
    def compute(self, inputs: Inputs, config: Config,
                links: Mapping[str, bool] | None = None) -> Desired:
        """Everything the dataplane should hold. ``links``: interface → up,
        for the local endpoints' interfaces (None: every interface is up)."""
        self._trim()
        out = Desired()
        groups: dict[Labels, list[Endpoint]] = {}
        local: list[tuple[Endpoint, Labels]] = []
        for ep in inputs.endpoints.values():
            labels = self.labels_of(ep, inputs)
            groups.setdefault(labels, []).append(ep)
            if ep.node == inputs.node:
                local.append((ep, labels))
        local.sort(key=lambda item: item[0].iface)

        used_policies: dict[Policy, set[str]] = {}
        used_profiles: set[str] = set()
        seen_ifaces: set[str] = set()
        for ep, labels in local:
            if ep.iface in seen_ifaces:
                out.errors.append(f"interface {ep.iface} is claimed by more than one "
                                  f"endpoint; {ep.key} is ignored")
                continue
            seen_ifaces.add(ep.iface)
            pols = self.applying(labels, inputs)
            ingress = tuple(p for p in pols if p.ingress is not None)
            egress = tuple(p for p in pols if p.egress is not None)
            for p in ingress:
                used_policies.setdefault(p, set()).add("in")
            for p in egress:
                used_policies.setdefault(p, set()).add("out")
            used_profiles.update(ep.profiles)
            missing = tuple(n for n in ep.profiles if n not in inputs.profiles)
            up = True if links is None else links.get(ep.iface, False)
            out.endpoints[ep.iface] = EndpointPlan(ep, labels, ingress, egress, ep.profiles,
                                                   missing, up)

        filt = out.chains["filter"]
        wanted_sets: Wanted = {}
        for policy, directions in used_policies.items():
            chain_in, chain_out = self._policy(policy)
            for direction, lines, brules in (("in", chain_in, policy.ingress),
                                             ("out", chain_out, policy.egress)):
                if direction in directions and lines is not None and brules is not None:
                    filt[policy_chain(direction, policy)] = lines
                    self._want_sets(brules, wanted_sets)
                    for br in brules:
                        if br.unsupported:
                            out.errors.append(f"{policy.kind} {policy.id}: rule not "
                                              f"implemented ({br.unsupported}); it is "
                                              "rendered failing closed")
        for name in sorted(used_profiles):
            prof = inputs.profiles.get(name)
            if prof is None:
                drop = (f'{R.comment(f"Profile {name} does not exist: default drop")} -j DROP',)
                filt[profile_chain("in", name)] = filt[profile_chain("out", name)] = drop
                continue
            lines_in, lines_out = self._profile(prof)
            filt[profile_chain("in", name)] = lines_in
            filt[profile_chain("out", name)] = lines_out
            self._want_sets(prof.ingress, wanted_sets)
            self._want_sets(prof.egress, wanted_sets)

        allow = "-j ACCEPT" if config.filter_allow_action == "Accept" else "-j RETURN"
        for plan in out.endpoints.values():
            tw, fw = self._endpoint(plan, allow)
            filt[plan.to_chain] = tw
            filt[plan.from_chain] = fw
        self._dispatch(out, config)
        self._static(out, config, allow)
        self._nat(out, inputs, config)
        self._raw(out, config)
        self._ipsets(out, inputs, groups, wanted_sets)
        self._kernel(out)
        out.hooks = {table: {builtin: f"-j {target}" for builtin, target in hooks.items()}
                     for table, hooks in HOOKS.items()}
        return out

    # -- pieces -----------------------------------------------------------------
    def _policy(self, policy: Policy) -> tuple[tuple[str, ...] | None, tuple[str, ...] | None]:
        got = self._policy_chains.get(policy)
        if got is None:
            where = f"{policy.kind} {policy.namespace + '/' if policy.namespace else ''}" \
                    f"{policy.name}"
            got = self._policy_chains[policy] = (
                None if policy.ingress is None else
                tuple(R.render_rules(list(policy.ingress), f"{where} ingress")),
                None if policy.egress is None else
                tuple(R.render_rules(list(policy.egress), f"{where} egress")))
        return got

    def _profile(self, prof: Profile) -> tuple[tuple[str, ...], tuple[str, ...]]:
        got = self._profile_chains.get(prof)
        if got is None:
            got = self._profile_chains[prof] = (
                tuple(R.render_rules(list(prof.ingress), f"Profile {prof.name} ingress")),
                tuple(R.render_rules(list(prof.egress), f"Profile {prof.name} egress")))
        return got

    @staticmethod
    def _want_sets(brules: Iterable[R.BRule], wanted: Wanted) -> None:
        for br in brules:
            for name, _kind, what in br.ipsets():
                wanted[name] = what

    def _endpoint(self, plan: EndpointPlan, allow: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        key = (plan.endpoint.iface, tuple(p.id for p in plan.ingress),
               tuple(p.id for p in plan.egress), plan.profiles, allow)
        got = self._endpoint_chains.get(key)
        if got is None:
            got = self._endpoint_chains[key] = (
                endpoint_chain("in", plan.ingress, plan.profiles, allow),
                endpoint_chain("out", plan.egress, plan.profiles, allow))
        return got

    def _dispatch(self, out: Desired, config: Config) -> None:
        filt = out.chains["filter"]
        unknown = f'{R.comment("Unknown interface")} -j DROP'
        ifaces = sorted(out.endpoints)
        for root, flag, prefix in (("cali-from-wl-dispatch", "-i", "cali-fw-"),
                                   ("cali-to-wl-dispatch", "-o", "cali-tw-")):
            if len(ifaces) <= DISPATCH_SPLIT:
                filt[root] = tuple(f"{flag} {i} -g {R.limited_name(prefix, i)}"
                                   for i in ifaces) + (unknown,)
                continue
            width = len(config.interface_prefix) + 1
            children: dict[str, list[str]] = {}
            for i in ifaces:
                children.setdefault(i[:width], []).append(i)
            lines = []
            for head, members in sorted(children.items()):
                child = R.limited_name(f"{root}-", head[width - 1:] or "_")
                filt[child] = tuple(f"{flag} {i} -g {R.limited_name(prefix, i)}"
                                    for i in members) + (unknown,)
                lines.append(f"{flag} {head}+ -g {child}")
            filt[root] = (*lines, unknown)

    @staticmethod
    def _static(out: Desired, config: Config, allow: str) -> None:
        wl = f"{config.interface_prefix}+"
        action = {"Drop": "-j DROP", "Accept": "-j ACCEPT", "Return": "-j RETURN"}[
            config.endpoint_to_host_action]
        out.chains["filter"].update({
            "cali-FORWARD": (
                R.mark_clear(R.MARK_ALL),
                f"-i {wl} -j cali-from-wl-dispatch",
                f"-o {wl} -j cali-to-wl-dispatch",
                f'{R.mark_is_set(R.MARK_ACCEPT)} {R.comment("Policy explicitly accepted packet.")}'
                f" {allow}"),
            "cali-INPUT": (f"-i {wl} -g cali-wl-to-host",),
            "cali-wl-to-host": (
                "-j cali-from-wl-dispatch",
                f'{R.comment("Configured DefaultEndpointToHostAction")} {action}'),
            "cali-OUTPUT": (f'-o {wl} {R.comment("Return if to workload")} -j RETURN',),
        })

    @staticmethod
    def _nat(out: Desired, inputs: Inputs, config: Config) -> None:
        dnat: dict[str, str] = {}
        snat: dict[str, str] = {}
        for plan in out.endpoints.values():
            for internal, external in plan.endpoint.nats:
                if ":" not in internal and ":" not in external:
                    dnat.setdefault(external, internal)
                    snat.setdefault(internal, external)
        masq: tuple[str, ...] = ()
        if any(p.nat_outgoing and ":" not in p.cidr for p in inputs.pools.values()):
            target = (f"-j SNAT --to-source {config.nat_outgoing_address}"
                      if config.nat_outgoing_address else "-j MASQUERADE --random-fully")
            masq = (f"-m set --match-set {MASQ_POOLS} src -m set ! --match-set {ALL_POOLS} dst "
                    f"{target}",)
        out.chains["nat"].update({
            "cali-PREROUTING": ("-j cali-fip-dnat",),
            "cali-POSTROUTING": ("-j cali-fip-snat", "-j cali-nat-outgoing"),
            "cali-OUTPUT": ("-j cali-fip-dnat",),
            "cali-nat-outgoing": masq,
            "cali-fip-dnat": tuple(f"-d {ext}/32 -j DNAT --to-destination {dnat[ext]}"
                                   for ext in sorted(dnat)),
            "cali-fip-snat": tuple(f"-s {i}/32 -d {i}/32 -j SNAT --to-source {snat[i]}"
                                   for i in sorted(snat)),
        })

    @staticmethod
    def _raw(out: Desired, config: Config) -> None:
        wl = f"{config.interface_prefix}+"
        bit = R.MARK_SCRATCH0
        skip = []
        for plan in out.endpoints.values():
            for prefix in plan.endpoint.allow_spoofed:
                if ":" not in prefix:
                    skip.append(f"-s {prefix} -i {plan.endpoint.iface} -j ACCEPT")
        out.chains["raw"].update({
            "cali-PREROUTING": (
                R.mark_clear(R.MARK_ALL),
                f"-i {wl} {R.mark_set(bit)}",
                f"{R.mark_is_set(bit)} -j cali-rpf-skip",
                f"{R.mark_is_set(bit)} -m rpfilter --validmark --invert "
                f'{R.comment("Drop packets from workloads with a source not their own")} -j DROP'),
            "cali-rpf-skip": tuple(skip),
        })

    def _ipsets(self, out: Desired, inputs: Inputs, groups: dict[Labels, list[Endpoint]],
                wanted: Wanted) -> None:
        sets = out.ipsets
        for name, what in wanted.items():
            if isinstance(what, tuple):  # kind n
                sets[name] = IPSet(IPSET_TYPE, _members(what))
                continue
            if isinstance(what, R.NamedPort):  # kind p
                sets[name] = IPSet(NAMED_PORT_IPSET_TYPE, frozenset(
                    f"{ip},{what.proto}:{number}"
                    for labels, eps in groups.items() if self.matches(what.selector, labels)
                    for ep in eps for pname, proto, number in ep.ports
                    if pname == what.name and proto == what.proto for ip in ep.ipv4))
                continue
            members: set[str] = set()
            for labels, eps in groups.items():
                if self.matches(what, labels):
                    for ep in eps:
                        members.update(ep.ipv4)
            sets[name] = IPSet(IPSET_TYPE, frozenset(members))
        v4pools = [p for p in inputs.pools.values() if ":" not in p.cidr]
        sets[MASQ_POOLS] = IPSet(IPSET_TYPE, _members(p.cidr for p in v4pools if p.nat_outgoing))
        sets[ALL_POOLS] = IPSet(IPSET_TYPE, _members(p.cidr for p in v4pools))
        if len(sets) > MAX_IPSETS:
            out.errors.append(f"{len(sets)} ipsets wanted; the kernel allows {MAX_IPSETS} per "
                              "network namespace (identical selectors share one set)")

    @staticmethod
    def _kernel(out: Desired) -> None:
        for iface, plan in out.endpoints.items():
            if not plan.up:
                continue
            ep = plan.endpoint
            for ip in ep.ips:
                out.routes[f"{ip}/{128 if ':' in ip else 32}"] = iface
                if ep.mac:
                    out.neighbours[(iface, ip)] = ep.mac
            for _internal, external in ep.nats:
                out.routes.setdefault(f"{external}/{128 if ':' in external else 32}", iface)
            conf = f"/proc/sys/net/ipv4/conf/{iface}"
            out.sysctls.update({
                f"{conf}/forwarding": "1", f"{conf}/proxy_arp": "1",
                f"{conf}/route_localnet": "1",
                f"{conf}/rp_filter": "0" if ep.allow_spoofed else "1",
                f"/proc/sys/net/ipv4/neigh/{iface}/proxy_delay": "0"})


def _members(nets: Iterable[str]) -> frozenset[str]:
    """Members of a ``hash:net`` set, as ipset spells them: a host without its
    /32, and ``0.0.0.0/0`` — which hash:net refuses, failing the whole
    ``ipset restore`` — as its two halves."""
    out: set[str] = set()
    for net in nets:
        if net == "0.0.0.0/0":
            out.update(("0.0.0.0/1", "128.0.0.0/1"))
        else:
            out.add(net[:-3] if net.endswith("/32") else net)
    return frozenset(out)


def endpoint_chain(direction: str, policies: tuple[Policy, ...], profiles: tuple[str, ...],
                   allow: str) -> tuple[str, ...]:
    """``cali-tw-<iface>`` (direction "in") or ``cali-fw-<iface>`` ("out")."""
    lines = ["-m conntrack --ctstate RELATED,ESTABLISHED " + allow,
             "-m conntrack --ctstate INVALID -j DROP",
             R.mark_clear(R.MARK_ACCEPT | R.MARK_PASS)]
    if direction == "out":
        vxlan = R.comment("Drop VXLAN encapped packets originating in workloads")
        ipip = R.comment("Drop IPinIP encapped packets originating in workloads")
        lines += [f"-p udp -m udp --dport 4789 {vxlan} -j DROP", f"-p ipencap {ipip} -j DROP"]
    if policies:
        lines.append(f'{R.comment("Start of tier default")} {R.mark_clear(R.MARK_PASS)}')
        for p in policies:
            lines.append(f"{R.mark_is_clear(R.MARK_PASS)} -j {policy_chain(direction, p)}")
            lines.append(f'{R.mark_is_set(R.MARK_ACCEPT)} {R.comment("Return if policy accepted")}'
                         " -j RETURN")
        lines.append(f'{R.mark_is_clear(R.MARK_PASS)} '
                     f'{R.comment("End of tier default. Drop if no policies passed packet")}'
                     " -j DROP")
    for name in profiles:
        lines.append(f"-j {profile_chain(direction, name)}")
        lines.append(f'{R.mark_is_set(R.MARK_ACCEPT)} {R.comment("Return if profile accepted")}'
                     " -j RETURN")
    lines.append(f'{R.comment("Drop if no profiles matched")} -j DROP')
    return tuple(lines)
