"""Rule rendering, table-driven: one Calico v3 rule in → the exact iptables rule
bodies out (what goes after ``-A <chain>``), for every match the agent
renders. ipset names are written as ``<s:v1 selector>``, ``<n:net,net>``
and ``<p:v1 selector;protocol;port name>`` and expanded with the agent's own
naming, so each case also checks the v3 → v1 selector rewriting that names
the set."""

from __future__ import annotations

import re
from typing import Any

import pytest

from pybgp.agent import rules as R
from pybgp.agent import selectors as S
from pybgp.model import parse_resource
from pybgp.model.selector import parse

ACCEPT = "-j MARK --set-xmark 0x10000/0x10000"
RET_ACCEPT = "-m mark --mark 0x10000/0x10000 -j RETURN"
PASS = "-j MARK --set-xmark 0x20000/0x20000"
RET_PASS = "-m mark --mark 0x20000/0x20000 -j RETURN"
LOG = '-j LOG --log-prefix "calico-packet: " --log-level 5'


def brule(rule: dict, namespace: str = "") -> R.BRule:
    kind = "NetworkPolicy" if namespace else "GlobalNetworkPolicy"
    meta = {"name": "x", **({"namespace": namespace} if namespace else {})}
    res = parse_resource({"apiVersion": "projectcalico.org/v3", "kind": kind,
                          "metadata": meta, "spec": {"ingress": [rule]}})
    return R.backend_rule(res.spec.ingress[0], namespace)


def expand(line: str) -> str:
    def name(m: re.Match[str]) -> str:
        kind, what = m.group(1), m.group(2)
        if kind == "s":
            return S.selector_set(parse(what))
        if kind == "p":
            sel, proto, port = what.split(";")
            return S.named_port_set(parse(sel), proto, port)
        return S.nets_set(tuple(what.split(",")))
    return re.sub(r"<([snp]):([^>]*)>", name, line)


def allow(match: str) -> list[str]:
    return [f"{match} {ACCEPT}".strip(), RET_ACCEPT]


TCP = {"action": "Allow", "protocol": "TCP"}
BLOCK_START = "-j MARK --set-xmark 0x0/0xc0000"  # a match block resets both scratch bits
SET0 = "-j MARK --set-xmark 0x40000/0x40000"
SET1 = "-j MARK --set-xmark 0x80000/0x80000"
AND1 = "-m mark --mark 0x0/0x80000 -j MARK --set-xmark 0x0/0x40000"
NEED0 = "-m mark --mark 0x40000/0x40000"
CASES: list[tuple[str, dict, str, list[str]]] = [
    # -- actions ------------------------------------------------------------------
    ("allow", {"action": "Allow"}, "", [ACCEPT, RET_ACCEPT]),
    ("pass", {"action": "Pass"}, "", [PASS, RET_PASS]),
    ("deny", {"action": "Deny"}, "", ["-j DROP"]),
    ("log", {"action": "Log"}, "", [LOG]),
    ("deny with a match", {"action": "Deny", "protocol": "UDP"}, "", ["-p udp -j DROP"]),
    ("log with a match", {"action": "Log", "protocol": "TCP",
                          "destination": {"ports": [22]}}, "",
     [f"-p tcp -m multiport --dports 22 {LOG}"]),
    # -- protocol / notProtocol -----------------------------------------------------
    ("tcp", TCP, "", allow("-p tcp")),
    ("udp", {"action": "Allow", "protocol": "UDP"}, "", allow("-p udp")),
    ("sctp", {"action": "Allow", "protocol": "SCTP"}, "", allow("-p sctp")),
    ("udplite", {"action": "Allow", "protocol": "UDPLite"}, "", allow("-p udplite")),
    ("icmp", {"action": "Allow", "protocol": "ICMP"}, "", allow("-p icmp")),
    ("number", {"action": "Allow", "protocol": 47}, "", allow("-p 47")),
    ("tcp by number", {"action": "Allow", "protocol": 6}, "", allow("-p 6")),
    ("not udp", {"action": "Allow", "notProtocol": "UDP"}, "", allow("! -p udp")),
    ("not a number", {"action": "Allow", "notProtocol": 50}, "", allow("! -p 50")),
    ("tcp and not udp", {"action": "Allow", "protocol": "TCP", "notProtocol": "UDP"}, "",
     allow("-p tcp ! -p udp")),
    ("icmpv6 is not IPv4", {"action": "Allow", "protocol": "ICMPv6"}, "", []),
    # (by number too: "-p 58 -m icmp" would fail the whole iptables-restore)
    ("icmpv6 by number is not IPv4", {"action": "Allow", "protocol": 58,
                                      "icmp": {"type": 128}}, "", []),
    ("not icmpv6 by number", {"action": "Allow", "notProtocol": 58}, "", allow("! -p 58")),
    # -- ports / notPorts -------------------------------------------------------------
    ("one port", {**TCP, "destination": {"ports": [80]}}, "",
     allow("-p tcp -m multiport --dports 80")),
    ("ports and a range", {**TCP, "destination": {"ports": [80, 443, "8000:8080"]}}, "",
     allow("-p tcp -m multiport --dports 80,443,8000:8080")),
    ("source ports", {"action": "Allow", "protocol": "UDP", "source": {"ports": [53]}}, "",
     allow("-p udp -m multiport --sports 53")),
    ("both sides", {**TCP, "source": {"ports": ["1024:65535"]}, "destination": {"ports": [22]}},
     "", allow("-p tcp -m multiport --sports 1024:65535 -m multiport --dports 22")),
    ("not ports", {**TCP, "destination": {"notPorts": [22, "100:200"]}}, "",
     allow("-p tcp -m multiport ! --dports 22,100:200")),
    ("not source ports", {**TCP, "source": {"notPorts": [7]}}, "",
     allow("-p tcp -m multiport ! --sports 7")),
    ("ports and not ports", {**TCP, "destination": {"ports": ["1:1000"], "notPorts": [22]}}, "",
     allow("-p tcp -m multiport ! --dports 22 -m multiport --dports 1:1000")),
    ("fifteen slots fit one multiport", {**TCP, "destination": {"ports": list(range(1, 16))}},
     "", allow("-p tcp -m multiport --dports " + ",".join(map(str, range(1, 16))))),
    ("seven ranges and a port fit", {**TCP, "destination": {
        "ports": [f"{i}0:{i}9" for i in range(1, 8)] + [99]}}, "",
     allow("-p tcp -m multiport --dports 10:19,20:29,30:39,40:49,50:59,60:69,70:79,99")),
    # more than one multiport: OR-ed in a match block (Felix's), the rule needs its bit
    ("sixteen slots: a match block", {**TCP, "destination": {"ports": list(range(1, 17))}},
     "", [BLOCK_START,
          f"-p tcp -m multiport --dports {','.join(map(str, range(1, 16)))} {SET0}",
          f"-p tcp -m multiport --dports 16 {SET0}",
          f"-p tcp {NEED0} {ACCEPT}", RET_ACCEPT]),
    ("eight ranges: the eighth starts a piece", {**TCP, "destination": {
        "ports": [f"{i}0:{i}9" for i in range(1, 9)]}}, "",
     [BLOCK_START, "-p tcp -m multiport --dports 10:19,20:29,30:39,40:49,50:59,60:69,70:79 "
      f"{SET0}", f"-p tcp -m multiport --dports 80:89 {SET0}", f"-p tcp {NEED0} {ACCEPT}",
      RET_ACCEPT]),
    ("a block on each side: the second ANDs its bit in", {
        "action": "Deny", "protocol": "UDP", "source": {"ports": list(range(1, 17))},
        "destination": {"ports": list(range(101, 117))}}, "",
     [BLOCK_START,
      f"-p udp -m multiport --sports {','.join(map(str, range(1, 16)))} {SET0}",
      f"-p udp -m multiport --sports 16 {SET0}",
      f"-p udp -m multiport --dports {','.join(map(str, range(101, 116)))} {SET1}",
      f"-p udp -m multiport --dports 116 {SET1}", AND1,
      f"-p udp {NEED0} -j DROP"]),
    ("a log rule in a block logs once", {"action": "Log", "protocol": "TCP", "destination": {
        "ports": list(range(1, 16)) + [15]}}, "",
     [BLOCK_START, f"-p tcp -m multiport --dports {','.join(map(str, range(1, 16)))} {SET0}",
      f"-p tcp -m multiport --dports 15 {SET0}", f"-p tcp {NEED0} {LOG}"]),
    ("sixteen negated slots: two matches, all must hold",
     {**TCP, "destination": {"notPorts": list(range(1, 17))}}, "",
     allow("-p tcp -m multiport ! --dports " + ",".join(map(str, range(1, 16)))
           + " -m multiport ! --dports 16")),
    # -- named ports: hash:ip,port sets per (selector, protocol, name) ------------------------
    ("a named port", {**TCP, "destination": {"ports": ["http"]}}, "",
     allow("-p tcp -m set --match-set <p:all();tcp;http> dst,dst")),
    ("a named port without a protocol is TCP's", {"action": "Deny", "destination": {
        "ports": ["http"]}}, "", ["-m set --match-set <p:all();tcp;http> dst,dst -j DROP"]),
    ("a UDP named port", {"action": "Allow", "protocol": "UDP", "destination": {
        "ports": ["dns"]}}, "", allow("-p udp -m set --match-set <p:all();udp;dns> dst,dst")),
    ("an SCTP named port by number", {"action": "Allow", "protocol": 132, "destination": {
        "ports": ["x"]}}, "", allow("-p 132 -m set --match-set <p:all();sctp;x> dst,dst")),
    ("a source named port", {**TCP, "source": {"ports": ["metrics"]}}, "",
     allow("-p tcp -m set --match-set <p:all();tcp;metrics> src,src")),
    ("a named port filtered by the selector, which needs no set of its own",
     {**TCP, "destination": {"selector": "app == 'web'", "ports": ["http"]}}, "",
     allow("-p tcp -m set --match-set <p:app == 'web';tcp;http> dst,dst")),
    ("namespaced: the set is filtered by the namespaced selector",
     {**TCP, "destination": {"selector": "app == 'web'", "ports": ["http"]}}, "prod",
     allow("-p tcp -m set --match-set "
           "<p:projectcalico.org/namespace == 'prod' && app == 'web';tcp;http> dst,dst")),
    ("named and numeric: a block, and the selector set for the numeric part",
     {**TCP, "destination": {"selector": "app == 'web'", "ports": [8080, "http"]}}, "",
     [BLOCK_START, f"-p tcp -m multiport --dports 8080 {SET0}",
      f"-m set --match-set <p:app == 'web';tcp;http> dst,dst {SET0}",
      f"-p tcp -m set --match-set <s:app == 'web'> dst {NEED0} {ACCEPT}", RET_ACCEPT]),
    ("two names: a block, no selector set", {**TCP, "destination": {
        "selector": "app == 'web'", "ports": ["http", "https", "http"]}}, "",
     [BLOCK_START, f"-m set --match-set <p:app == 'web';tcp;http> dst,dst {SET0}",
      f"-m set --match-set <p:app == 'web';tcp;https> dst,dst {SET0}",
      f"-p tcp {NEED0} {ACCEPT}", RET_ACCEPT]),
    ("a negated named port", {**TCP, "destination": {"notPorts": ["ssh"]}}, "",
     allow("-p tcp -m set ! --match-set <p:all();tcp;ssh> dst,dst")),
    ("negated names, filtered by the positive selector", {"action": "Deny", "protocol": "TCP",
                                                          "destination": {
        "selector": "app == 'db'", "notPorts": ["ssh", 22, "admin"]}}, "",
     ["-p tcp -m set --match-set <s:app == 'db'> dst -m multiport ! --dports 22 "
      "-m set ! --match-set <p:app == 'db';tcp;ssh> dst,dst "
      "-m set ! --match-set <p:app == 'db';tcp;admin> dst,dst -j DROP"]),
    ("named ports on both sides", {**TCP, "source": {"ports": ["client"]},
                                   "destination": {"ports": ["http"]}}, "",
     allow("-p tcp -m set --match-set <p:all();tcp;client> src,src "
           "-m set --match-set <p:all();tcp;http> dst,dst")),
    # -- ICMP type / code, notICMP --------------------------------------------------------
    ("icmp type", {"action": "Allow", "protocol": "ICMP", "icmp": {"type": 8}}, "",
     allow("-p icmp -m icmp --icmp-type 8")),
    ("icmp type and code", {"action": "Allow", "protocol": "ICMP",
                            "icmp": {"type": 3, "code": 4}}, "",
     allow("-p icmp -m icmp --icmp-type 3/4")),
    ("not icmp type", {"action": "Allow", "protocol": "ICMP", "notICMP": {"type": 8}}, "",
     allow("-p icmp -m icmp ! --icmp-type 8")),
    ("not icmp type and code", {"action": "Deny", "protocol": "ICMP",
                                "notICMP": {"type": 3, "code": 1}}, "",
     ["-p icmp -m icmp ! --icmp-type 3/1 -j DROP"]),
    ("icmp and not icmp", {"action": "Allow", "protocol": "ICMP", "icmp": {"type": 3},
                           "notICMP": {"type": 3, "code": 4}}, "",
     allow("-p icmp -m icmp --icmp-type 3 -m icmp ! --icmp-type 3/4")),
    ("icmp by number", {"action": "Allow", "protocol": 1, "icmp": {"type": 0}}, "",
     allow("-p 1 -m icmp --icmp-type 0")),
    # -- nets / notNets -----------------------------------------------------------------
    ("one source net", {"action": "Allow", "source": {"nets": ["10.0.0.0/8"]}}, "",
     allow("-s 10.0.0.0/8")),
    ("one destination net", {"action": "Allow", "destination": {"nets": ["198.19.0.0/16"]}},
     "", allow("-d 198.19.0.0/16")),
    ("several source nets: a set", {"action": "Allow", "source": {
        "nets": ["10.1.0.0/16", "10.0.0.0/16"]}}, "",
     allow("-m set --match-set <n:10.0.0.0/16,10.1.0.0/16> src")),
    ("one not net", {"action": "Allow", "destination": {"notNets": ["10.0.0.0/8"]}}, "",
     allow("! -d 10.0.0.0/8")),
    ("several not nets", {"action": "Allow", "source": {
        "notNets": ["10.0.0.0/8", "172.16.0.0/12"]}}, "",
     allow("-m set ! --match-set <n:10.0.0.0/8,172.16.0.0/12> src")),
    ("net and not net", {"action": "Allow", "source": {"nets": ["10.0.0.0/8"],
                                                        "notNets": ["10.1.0.0/16"]}}, "",
     allow("-s 10.0.0.0/8 ! -s 10.1.0.0/16")),
    ("nets both sides", {"action": "Deny", "source": {"nets": ["10.0.0.0/8"]},
                         "destination": {"nets": ["10.2.0.0/16", "10.3.0.0/16"]}}, "",
     ["-s 10.0.0.0/8 -m set --match-set <n:10.2.0.0/16,10.3.0.0/16> dst -j DROP"]),
    ("IPv6 nets only: not for IPv4", {"action": "Allow", "source": {
        "nets": ["2001:db8::/64"]}}, "", []),
    # as Felix filters a rule to a family: IPv6 notNets make it an IPv6 rule
    ("IPv6 not nets only: not for IPv4 either", {"action": "Allow", "destination": {
        "notNets": ["2001:db8::/64"]}}, "", []),
    ("nets as the kernel keeps them", {"action": "Allow", "source": {
        "nets": ["10.0.0.1/8"]}, "destination": {"notNets": ["198.19.0.7"]}}, "",
     allow("-s 10.0.0.0/8 ! -d 198.19.0.7/32")),
    ("a set of nets as the kernel keeps them", {"action": "Deny", "source": {
        "nets": ["10.9.9.9/16", "10.1.0.0/16", "10.9.0.0/16"]}}, "",
     ["-m set --match-set <n:10.1.0.0/16,10.9.0.0/16> src -j DROP"]),
    # -- selector / notSelector -----------------------------------------------------------
    ("source selector", {"action": "Allow", "source": {"selector": "app == 'a'"}}, "",
     allow("-m set --match-set <s:app == 'a'> src")),
    ("destination not selector", {"action": "Allow", "destination": {
        "notSelector": "app == 'a'"}}, "",
     allow("-m set ! --match-set <s:app == 'a'> dst")),
    ("selector and not selector", {"action": "Deny", "source": {
        "selector": "has(app)", "notSelector": "app == 'db'"}}, "",
     ["-m set --match-set <s:has(app)> src -m set ! --match-set <s:app == 'db'> src -j DROP"]),
    ("selector, net and port", {**TCP, "source": {"selector": "app == 'a'",
                                                   "nets": ["198.19.0.0/16"]},
                                "destination": {"ports": [80]}}, "",
     allow("-p tcp -s 198.19.0.0/16 -m set --match-set <s:app == 'a'> src "
           "-m multiport --dports 80")),
    ("namespaced selector", {"action": "Allow", "source": {"selector": "app == 'a'"}}, "prod",
     allow("-m set --match-set <s:projectcalico.org/namespace == 'prod' && app == 'a'> src")),
    ("namespaced not selector alone: the namespace on the positive side",
     {"action": "Allow", "source": {"notSelector": "app == 'a'"}}, "prod",
     allow("-m set --match-set <s:projectcalico.org/namespace == 'prod'> src "
           "-m set ! --match-set <s:app == 'a'> src")),
    ("namespaced rule without a selector: anyone", {"action": "Allow", "source": {
        "nets": ["10.0.0.0/8"]}}, "prod", allow("-s 10.0.0.0/8")),
    ("service account names", {"action": "Allow", "source": {
        "serviceAccounts": {"names": ["sa1", "sa2"]}}}, "prod",
     allow("-m set --match-set <s:projectcalico.org/namespace == 'prod' && "
           "projectcalico.org/serviceaccount in {'sa1', 'sa2'}> src")),
    # -- namespaceSelector ------------------------------------------------------------------
    ("namespace selector", {"action": "Allow", "source": {"namespaceSelector": "env == 'x'"}},
     "", allow("-m set --match-set <s:pcns.env == 'x'> src")),
    ("namespace selector replaces the policy's namespace",
     {"action": "Allow", "source": {"namespaceSelector": "env == 'x'",
                                    "selector": "app == 'a'"}}, "prod",
     allow("-m set --match-set <s:pcns.env == 'x' && app == 'a'> src")),
    ("all(): every namespace", {"action": "Allow", "source": {"namespaceSelector": "all()"}},
     "prod", allow("-m set --match-set <s:has(projectcalico.org/namespace)> src")),
    ("all() and a selector", {"action": "Allow", "destination": {
        "namespaceSelector": "all()", "selector": "app == 'a'"}}, "prod",
     allow("-m set --match-set <s:has(projectcalico.org/namespace) && app == 'a'> dst")),
    ("global(): no namespace", {"action": "Allow", "source": {
        "namespaceSelector": "global()"}}, "",
     allow("-m set --match-set <s:!has(projectcalico.org/namespace)> src")),
    ("global() and a selector", {"action": "Allow", "source": {
        "namespaceSelector": "global()", "selector": "role == 'gw'"}}, "prod",
     allow("-m set --match-set <s:!has(projectcalico.org/namespace) && role == 'gw'> src")),
    # -- ipVersion --------------------------------------------------------------------------
    ("ipVersion 6 is skipped", {"action": "Allow", "ipVersion": 6}, "", []),
    ("ipVersion 6 deny is skipped too", {"action": "Deny", "ipVersion": 6,
                                         "protocol": "ICMPv6"}, "", []),
    ("ipVersion 4", {"action": "Allow", "ipVersion": 4, "protocol": "ICMP"}, "",
     allow("-p icmp")),
]


@pytest.mark.parametrize("rule,namespace,want", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_rule_renders_exactly(rule, namespace, want):
    assert R.render_rule(brule(rule, namespace)) == [expand(line) for line in want]


def test_chain_title_and_trailing_returns():
    """A chain: every rule in order, the title on its first line, and the
    last rule's RETURN left out (falling off the end returns anyway)."""
    rules = [brule({"action": "Deny", "protocol": "UDP"}), brule({"action": "Allow"})]
    assert R.render_rules(rules, "GlobalNetworkPolicy x ingress") == [
        '-m comment --comment "GlobalNetworkPolicy x ingress" -p udp -j DROP', ACCEPT]
    assert R.render_rules([], "nothing") == []
    assert R.render_rules([brule({"action": "Allow", "ipVersion": 6})], "v6 only") == []


def _one_endpoint_with(*policies: dict, whole: bool = False) -> Any:
    import json

    from pybgp.agent.calc import Calc
    from pybgp.agent.config import effective
    from pybgp.agent.inputs import Inputs

    inputs = Inputs("node-a")
    base = "/calico/resources/v3/projectcalico.org/"
    wep = {"apiVersion": "projectcalico.org/v3", "kind": "WorkloadEndpoint",
           "metadata": {"name": "node--a-k8s-a-eth0", "namespace": "default",
                        "labels": {"app": "a"}},
           "spec": {"orchestrator": "k8s", "node": "node-a", "pod": "a", "endpoint": "eth0",
                    "ipNetworks": ["198.19.0.1/32"], "interfaceName": "calia",
                    "profiles": ["p"]}}
    inputs.apply(f"{base}workloadendpoints/default/{wep['metadata']['name']}",
                 json.dumps(wep).encode())
    inputs.apply(f"{base}profiles/p", json.dumps({
        "apiVersion": "projectcalico.org/v3", "kind": "Profile", "metadata": {"name": "p"},
        "spec": {"ingress": [{"action": "Allow"}], "egress": [{"action": "Allow"}]}}).encode())
    for spec in policies:
        name = spec.pop("name")
        inputs.apply(f"{base}globalnetworkpolicies/{name}", json.dumps({
            "apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
            "metadata": {"name": name}, "spec": spec}).encode())
    desired = Calc().compute(inputs, effective(None, None))
    return desired if whole else desired.chains["filter"]


HEAD = ("-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        "-m conntrack --ctstate INVALID -j DROP", "-j MARK --set-xmark 0x0/0x30000")
FW_HEAD = HEAD + (
    '-p udp -m udp --dport 4789 -m comment --comment "Drop VXLAN encapped packets '
    'originating in workloads" -j DROP',
    '-p ipencap -m comment --comment "Drop IPinIP encapped packets originating in '
    'workloads" -j DROP')
TIER = '-m comment --comment "Start of tier default" -j MARK --set-xmark 0x0/0x20000'
END_OF_TIER = ('-m mark --mark 0x0/0x20000 -m comment --comment "End of tier default. '
               'Drop if no policies passed packet" -j DROP')
POLICY_ACCEPTED = ('-m mark --mark 0x10000/0x10000 -m comment --comment '
                   '"Return if policy accepted" -j RETURN')


def profiles(direction: str) -> tuple[str, ...]:
    return (f"-j cali-pr{'i' if direction == 'in' else 'o'}-p",
            '-m mark --mark 0x10000/0x10000 -m comment --comment "Return if profile accepted"'
            " -j RETURN", '-m comment --comment "Drop if no profiles matched" -j DROP')


def test_a_policy_of_one_type_leaves_the_other_direction_to_the_profiles():
    chains = _one_endpoint_with({"name": "in-only", "selector": "app == 'a'",
                                 "ingress": [{"action": "Allow", "protocol": "TCP"}]})
    assert chains["cali-tw-calia"] == HEAD + (
        TIER, "-m mark --mark 0x0/0x20000 -j cali-pi-gnp/in-only", POLICY_ACCEPTED,
        END_OF_TIER) + profiles("in")
    assert chains["cali-fw-calia"] == FW_HEAD + profiles("out")  # no tier at all
    assert chains["cali-pi-gnp/in-only"] == (
        f'-m comment --comment "GlobalNetworkPolicy in-only ingress" -p tcp {ACCEPT}',)
    assert "cali-po-gnp/in-only" not in chains


def test_an_egress_type_without_rules_denies_all_egress():
    chains = _one_endpoint_with({"name": "out-only", "selector": "app == 'a'",
                                 "types": ["Egress"]})
    assert chains["cali-fw-calia"] == FW_HEAD + (
        TIER, "-m mark --mark 0x0/0x20000 -j cali-po-gnp/out-only", POLICY_ACCEPTED,
        END_OF_TIER) + profiles("out")
    assert chains["cali-po-gnp/out-only"] == ()  # nothing allows: the tier's end drops
    assert chains["cali-tw-calia"] == HEAD + profiles("in")
    assert "cali-pi-gnp/out-only" not in chains



def test_a_set_of_nets_is_what_ipset_save_reads_back():
    """Members spelled as the kernel keeps them: once loaded, a refresh that
    reads ``ipset save`` back finds nothing to change (a member spelled
    ``10.0.0.1/8`` was re-added and deleted — so lost — on every refresh)."""
    from pybgp.agent import ipsets

    desired = _one_endpoint_with({"name": "nets", "selector": "all()", "ingress": [
        {"action": "Allow", "source": {"nets": ["10.0.0.1/8", "198.19.0.7", "198.19.0.7/32"]}}]},
        whole=True)
    name = S.nets_set(("10.0.0.0/8", "198.19.0.7/32"))
    assert desired.ipsets[name].members == {"10.0.0.0/8", "198.19.0.7"}
    sync = ipsets.IpsetSync()
    sync.load(ipsets.parse_save(f"create {name} hash:net family inet\n"
                                f"add {name} 10.0.0.0/8\nadd {name} 198.19.0.7\n"))
    assert sync.plan_adds({name: ipsets.KernelSet("hash:net", desired.ipsets[name].members)}) \
        == ""


def test_a_set_with_the_whole_ipv4_space_holds_its_two_halves():
    """hash:net refuses 0.0.0.0/0 and the whole ``ipset restore`` with it: one
    policy listing it among several nets stopped every apply of the agent."""
    desired = _one_endpoint_with({"name": "all", "selector": "all()", "ingress": [
        {"action": "Allow", "source": {"nets": ["10.0.0.0/8", "0.0.0.0/0"]}}]}, whole=True)
    name = S.nets_set(("0.0.0.0/0", "10.0.0.0/8"))
    assert desired.ipsets[name].members == {"0.0.0.0/1", "128.0.0.0/1", "10.0.0.0/8"}
