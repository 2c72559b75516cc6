"""The agent's pure core: inputs, selectors, rule rendering, the calculation,
iptables-save parsing and restore planning, ipset planning, config, metrics."""

from __future__ import annotations

import json

import pytest

from pybgp.agent import calc as C
from pybgp.agent import ipsets as ips
from pybgp.agent import iptables as ipt
from pybgp.agent import rules as R
from pybgp.agent import selectors as S
from pybgp.agent.config import effective
from pybgp.agent.inputs import Inputs
from pybgp.agent.metrics import Metrics
from pybgp.agent.status import desired_status, endpoint_key
from pybgp.model import parse_resource
from pybgp.model.felix import FelixConfigurationSpec
from pybgp.model.selector import parse

P = "/calico/resources/v3/projectcalico.org/"


def doc(kind, name, spec, **meta):
    return {"apiVersion": "projectcalico.org/v3", "kind": kind,
            "metadata": {"name": name, **meta}, "spec": spec}


def put(inputs, plural, d, ns=None):
    key = f"{P}{plural}/{ns + '/' if ns else ''}{d['metadata']['name']}"
    return key, inputs.apply(key, json.dumps(d).encode())


def wep(inputs, node, pod, ip, iface, labels=None, ns="default", profiles=None, **spec):
    name = f"{node.replace('-', '--')}-k8s-{pod}-eth0"
    d = doc("WorkloadEndpoint", name, {
        "orchestrator": "k8s", "node": node, "pod": pod, "endpoint": "eth0",
        "ipNetworks": [f"{ip}/32"], "interfaceName": iface, "mac": "ee:00:00:00:00:01",
        "profiles": [f"kns.{ns}"] if profiles is None else profiles, **spec},
        namespace=ns, labels=labels or {})
    return put(inputs, "workloadendpoints", d, ns)[0]


def rule(**kw):
    return R.backend_rule(parse_resource(doc("GlobalNetworkPolicy", "x", {
        "ingress": [kw]})).spec.ingress[0])


# -- selectors ---------------------------------------------------------------------

def test_namespaced_rule_selectors_follow_libcalico():
    sel = S.entity_selector("", "app == 'db'", None, "", "prod")
    assert str(sel) == "(projectcalico.org/namespace == 'prod' && app == 'db')"
    assert S.entity_selector("", "", None, "", "prod") is None  # no selector: any source
    ns = S.entity_selector("env == 'x'", "", None, "", "prod")
    assert str(ns) == "pcns.env == 'x'"
    assert str(S.entity_selector("all()", "", None, "", "")) == \
        "has(projectcalico.org/namespace)"
    assert str(S.entity_selector("global()", "", None, "", "")) == \
        "!has(projectcalico.org/namespace)"
    # a notSelector alone still limits the positive side to the namespace
    assert str(S.entity_selector("", "", None, "a == 'b'", "prod")) == \
        "projectcalico.org/namespace == 'prod'"
    assert str(S.service_accounts(["sa1"], "role == 'x'")) == \
        "(projectcalico.org/serviceaccount in {'sa1'} && pcsa.role == 'x')"


def test_global_policy_all_means_in_a_namespace_or_with_a_service_account():
    """libcalico-go rewrites all() in a GlobalNetworkPolicy's namespaceSelector
    to has(projectcalico.org/namespace) and in its serviceAccountSelector to
    has(projectcalico.org/serviceaccount); a NetworkPolicy's is left alone."""
    ns_any = S.policy_selector("", namespace_selector="all()")
    assert str(ns_any) == "(all() && has(projectcalico.org/namespace))"
    assert not ns_any.matches({"app": "a"})
    assert ns_any.matches({"projectcalico.org/namespace": "x"})
    sa_any = S.policy_selector("app == 'a'", service_account_selector="all()")
    assert not sa_any.matches({"app": "a"})
    assert sa_any.matches({"app": "a", "projectcalico.org/serviceaccount": "sa"})
    assert S.policy_selector("", namespace="ns", service_account_selector="all()").matches(
        {"projectcalico.org/namespace": "ns"})


def test_policy_selector_and_ipset_names():
    sel = S.policy_selector("app == 'a'", namespace="ns1")
    assert sel.matches({"app": "a", "projectcalico.org/namespace": "ns1"})
    assert not sel.matches({"app": "a", "projectcalico.org/namespace": "ns2"})
    gsel = S.policy_selector("", namespace_selector="env == 'p'")
    assert gsel.matches({"pcns.env": "p"}) and not gsel.matches({"env": "p"})
    name = S.selector_set(parse("app == 'a'"))
    assert name.startswith("cali40s:") and len(name) == 31
    assert name == S.selector_set(parse("app=='a'"))  # same canonical text, same set


# -- rules ---------------------------------------------------------------------------

def test_allow_rule_sets_the_accept_mark_and_returns():
    out = R.render_rule(rule(action="Allow", protocol="TCP", source={"nets": ["10.0.0.0/8"]},
                             destination={"ports": [80, "1000:2000"]}))
    assert out == ["-p tcp -s 10.0.0.0/8 -m multiport --dports 80,1000:2000 "
                   "-j MARK --set-xmark 0x10000/0x10000",
                   "-m mark --mark 0x10000/0x10000 -j RETURN"]


def test_deny_pass_log_and_negations():
    assert R.render_rule(rule(action="Deny", protocol="ICMP", icmp={"type": 8, "code": 0},
                              notICMP={"type": 3})) == [
        "-p icmp -m icmp --icmp-type 8/0 -m icmp ! --icmp-type 3 -j DROP"]
    out = R.render_rule(rule(action="Pass", notProtocol="UDP",
                             source={"notNets": ["10.1.0.0/16", "10.2.0.0/16"],
                                     "notSelector": "x == 'y'"}))
    assert out[0].startswith("! -p udp -m set ! --match-set cali40n:")
    assert "-m set ! --match-set cali40s:" in out[0] and out[0].endswith("0x20000/0x20000")
    assert R.render_rule(rule(action="Log")) == [
        '-j LOG --log-prefix "calico-packet: " --log-level 5']


def test_services_fail_closed():
    allow = rule(action="Allow", protocol="TCP", destination={"services": {"name": "db"}})
    assert allow.unsupported == "services" and R.render_rule(allow) == []
    deny = rule(action="Deny", protocol="TCP", destination={"services": {"name": "db"}})
    assert R.render_rule(deny) == ["-p tcp -j DROP"]  # denies more, never less


def test_chain_names_are_limited_like_felix():
    assert R.limited_name("cali-pi-", "gnp/short") == "cali-pi-gnp/short"
    long = R.limited_name("cali-pi-", "np/some-namespace/a-very-long-policy-name")
    assert len(long) == 28 and long.startswith("cali-pi-_")


# -- inputs --------------------------------------------------------------------------

def test_inputs_skip_invalid_values_and_forget_the_old_one():
    inputs = Inputs("node-a")
    key, changed = put(inputs, "globalnetworkpolicies", doc("GlobalNetworkPolicy", "p", {
        "selector": "all()", "ingress": [{"action": "Allow"}]}))
    assert changed == "globalnetworkpolicies" and key in inputs.policies
    assert inputs.apply(key, b"{not json") == "globalnetworkpolicies"
    assert key not in inputs.policies and "invalid JSON" in inputs.errors[key]
    bad = json.dumps(doc("GlobalNetworkPolicy", "p", {"selector": "a =="})).encode()
    inputs.apply(key, bad)
    assert "selector" in inputs.errors[key]
    assert inputs.apply(key, None) is None or key not in inputs.errors
    assert key not in inputs.errors
    # a value stored under another name's key is refused
    other = json.dumps(doc("GlobalNetworkPolicy", "q", {})).encode()
    inputs.apply(key, other)
    assert "stored under the key" in inputs.errors[key]


def test_inputs_survive_a_value_that_breaks_the_json_decoder():
    """A JSON document nested deeper than Python's recursion limit raised
    RecursionError out of the syncer callback, which stopped the agent."""
    inputs = Inputs("node-a")
    key, _ = put(inputs, "globalnetworkpolicies", doc("GlobalNetworkPolicy", "p", {
        "selector": "all()"}))
    assert inputs.apply(key, b'{"a":' * 100_000) == "globalnetworkpolicies"
    assert key not in inputs.policies and inputs.errors[key].startswith("RecursionError")


def test_inputs_felix_configuration_and_unchanged_updates():
    inputs = Inputs("node-a")
    _, changed = put(inputs, "felixconfigurations", doc("FelixConfiguration", "node.node-a", {
        "routeRefreshInterval": "5s"}))
    assert changed == "felixconfigurations"
    assert inputs.felix_node is not None
    _, again = put(inputs, "felixconfigurations", doc("FelixConfiguration", "node.node-a", {
        "routeRefreshInterval": "5s"}))
    assert again is None
    _, elsewhere = put(inputs, "felixconfigurations", doc("FelixConfiguration", "node.node-b",
                                                          {}))
    assert elsewhere is None


def test_config_precedence():
    d = FelixConfigurationSpec.decode({"routeRefreshInterval": "10s", "healthPort": 1000}, "s")
    n = FelixConfigurationSpec.decode({"routeRefreshInterval": "3s"}, "s")
    cfg = effective(d, n, {"health_port": 2000, "metrics_port": None})
    assert cfg.route_refresh == 3.0 and cfg.health_port == 2000 and cfg.metrics_port == 9091
    assert effective(None, None).iptables_refresh == 180.0


# -- the calculation -----------------------------------------------------------------

def build():
    inputs = Inputs("node-a")
    put(inputs, "profiles", doc("Profile", "kns.default", {
        "ingress": [{"action": "Allow"}], "egress": [{"action": "Allow"}],
        "labelsToApply": {"pcns.env": "dev"}}))
    wep(inputs, "node-a", "web", "198.19.0.5", "caliweb", {"app": "web"})
    wep(inputs, "node-a", "db", "198.19.0.6", "calidb", {"app": "db"})
    wep(inputs, "node-b", "cli", "198.19.1.5", "calicli", {"app": "client"})
    put(inputs, "globalnetworkpolicies", doc("GlobalNetworkPolicy", "b", {
        "order": 20, "selector": "app == 'web'", "ingress": [
            {"action": "Allow", "source": {"selector": "app == 'client'"}}]}))
    put(inputs, "globalnetworkpolicies", doc("GlobalNetworkPolicy", "a", {
        "order": 10, "selector": "app == 'web'", "types": ["Ingress", "Egress"],
        "ingress": [{"action": "Pass", "source": {"namespaceSelector": "env == 'dev'"}}]}))
    put(inputs, "networkpolicies", doc("NetworkPolicy", "c", {
        "selector": "all()", "egress": [{"action": "Allow"}]}, namespace="default"),
        ns="default")
    return inputs


def test_calc_orders_policies_and_builds_endpoint_chains():
    inputs = build()
    d = C.Calc().compute(inputs, effective(None, None))
    web = d.endpoints["caliweb"]
    assert [p.name for p in web.ingress] == ["a", "b"]  # order 10 before 20
    assert [p.name for p in web.egress] == ["a", "c"]  # a has Egress (no rules); c: unordered
    assert set(d.endpoints) == {"caliweb", "calidb"}  # node-b's endpoint is not local
    tw = d.chains["filter"]["cali-tw-caliweb"]
    jumps = [line for line in tw if "-j cali-p" in line]
    assert jumps == ["-m mark --mark 0x0/0x20000 -j cali-pi-gnp/a",
                     "-m mark --mark 0x0/0x20000 -j cali-pi-gnp/b",
                     "-j cali-pri-kns.default"]
    assert any("End of tier default" in line for line in tw)
    assert tw[-1].endswith("-j DROP")
    # db: no ingress policy applies, so straight to the profile
    assert not any("-j cali-pi-" in line for line in d.chains["filter"]["cali-tw-calidb"])
    # the client on node-b is in the selector's ipset
    name = S.selector_set(parse("app == 'client'"))
    assert d.ipsets[name].members == {"198.19.1.5"}
    # profile labels (pcns.env) apply: the namespaceSelector set holds all three
    ns_set = S.selector_set(S.entity_selector("env == 'dev'", "", None, "", ""))
    assert d.ipsets[ns_set].members == {"198.19.0.5", "198.19.0.6", "198.19.1.5"}
    assert d.routes == {"198.19.0.5/32": "caliweb", "198.19.0.6/32": "calidb"}
    assert d.neighbours[("caliweb", "198.19.0.5")] == "ee:00:00:00:00:01"
    assert d.sysctls["/proc/sys/net/ipv4/conf/caliweb/rp_filter"] == "1"
    assert d.hooks["filter"]["FORWARD"] == "-j cali-FORWARD"


def test_equal_orders_tie_break_on_felixs_policy_names():
    """libcalico-go names a NetworkPolicy ``<namespace>/<name>`` for Felix, and
    Felix breaks equal orders on that name: GlobalNetworkPolicy ``b`` comes
    before NetworkPolicy ``default/a``, and ``a`` (global) before both."""
    inputs = Inputs("node-a")
    wep(inputs, "node-a", "web", "198.19.0.5", "caliweb", {"app": "web"})
    for kind, plural, name, ns in (("NetworkPolicy", "networkpolicies", "a", "default"),
                                   ("GlobalNetworkPolicy", "globalnetworkpolicies", "b", None),
                                   ("GlobalNetworkPolicy", "globalnetworkpolicies", "a", None),
                                   ("NetworkPolicy", "networkpolicies", "0", "default")):
        meta = {"namespace": ns} if ns else {}
        put(inputs, plural, doc(kind, name, {"order": 5, "selector": "all()"}, **meta), ns)
    plan = C.Calc().compute(inputs, effective(None, None)).endpoints["caliweb"]
    assert [p.id for p in plan.ingress] == ["gnp/a", "gnp/b", "np/default/0", "np/default/a"]


def test_calc_is_the_same_fresh_or_memoised():
    inputs = build()
    cfg = effective(None, None)
    memo = C.Calc()
    first = memo.compute(inputs, cfg)
    wep(inputs, "node-b", "cli2", "198.19.1.6", "calicli2", {"app": "client"})
    put(inputs, "globalnetworkpolicies", doc("GlobalNetworkPolicy", "b", {
        "order": 5, "selector": "app == 'web'", "ingress": [{"action": "Deny"}]}))
    again = memo.compute(inputs, cfg)
    fresh = C.Calc().compute(inputs, cfg)
    assert again.chains == fresh.chains and again.ipsets == fresh.ipsets
    assert again.chains != first.chains


def test_named_port_sets_hold_ip_proto_port_of_matching_endpoints():
    inputs = Inputs("node-a")
    http = [{"name": "http", "protocol": "TCP", "port": 8080},
            {"name": "dns", "protocol": "UDP", "port": 53}]
    wep(inputs, "node-a", "web", "198.19.0.5", "caliweb", {"app": "web"}, ports=http)
    wep(inputs, "node-b", "web2", "198.19.1.5", "caliweb2", {"app": "web"},
        ports=[{"name": "http", "protocol": 6, "port": 80}])  # another node, by number
    wep(inputs, "node-a", "db", "198.19.0.6", "calidb", {"app": "db"}, ports=http)
    wep(inputs, "node-a", "udp", "198.19.0.7", "caliudp", {"app": "web"},
        ports=[{"name": "http", "protocol": "UDP", "port": 8080}])  # UDP: not TCP's http
    wep(inputs, "node-a", "none", "198.19.0.8", "calinone", {"app": "web"})  # no such port
    put(inputs, "globalnetworkpolicies", doc("GlobalNetworkPolicy", "np", {
        "selector": "all()", "ingress": [
            {"action": "Allow", "protocol": "TCP",
             "destination": {"selector": "app == 'web'", "ports": ["http"]}},
            {"action": "Allow", "protocol": "UDP", "destination": {"ports": ["dns"]}},
            {"action": "Deny", "protocol": "TCP", "source": {"notPorts": ["http"]}}]}))
    cfg = effective(None, None)
    calc = C.Calc()
    d = calc.compute(inputs, cfg)
    web_http = S.named_port_set(parse("app == 'web'"), "tcp", "http")
    any_dns = S.named_port_set(parse("all()"), "udp", "dns")
    any_http = S.named_port_set(parse("all()"), "tcp", "http")
    assert d.ipsets[web_http] == C.IPSet("hash:ip,port", frozenset(
        {"198.19.0.5,tcp:8080", "198.19.1.5,tcp:80"}))
    assert d.ipsets[any_dns].members == {"198.19.0.5,udp:53", "198.19.0.6,udp:53"}
    assert d.ipsets[any_http].members == {"198.19.0.5,tcp:8080", "198.19.1.5,tcp:80",
                                          "198.19.0.6,tcp:8080"}
    assert S.selector_set(parse("app == 'web'")) not in d.ipsets  # the named set is filtered
    assert all(name.startswith("cali40p:") and len(name) == 31
               for name in (web_http, any_dns, any_http))
    assert not d.errors
    # the set follows an endpoint whose port number changes, and one that drops it
    wep(inputs, "node-b", "web2", "198.19.1.5", "caliweb2", {"app": "web"},
        ports=[{"name": "http", "protocol": "TCP", "port": 8000}])
    wep(inputs, "node-a", "web", "198.19.0.5", "caliweb", {"app": "web"})
    again = calc.compute(inputs, cfg)
    assert again.ipsets[web_http].members == {"198.19.1.5,tcp:8000"}
    assert again.ipsets == C.Calc().compute(inputs, cfg).ipsets  # memo or not


def test_memo_of_applying_policies_never_mixes_generations():
    """The memo was keyed on np + gnp * 1_000_003 generations: 1_000_003
    NetworkPolicy changes looked like one GlobalNetworkPolicy change."""
    inputs = Inputs("node-a")
    wep(inputs, "node-a", "web", "198.19.0.5", "caliweb", {"app": "web"})
    calc, cfg = C.Calc(), effective(None, None)
    inputs.generation["globalnetworkpolicies"] = 1
    assert calc.compute(inputs, cfg).endpoints["caliweb"].ingress == ()
    put(inputs, "networkpolicies", doc("NetworkPolicy", "p", {"selector": "all()"},
                                       namespace="default"), "default")
    inputs.generation["networkpolicies"] = 1_000_003
    inputs.generation["globalnetworkpolicies"] = 0
    assert [p.name for p in calc.compute(inputs, cfg).endpoints["caliweb"].ingress] == ["p"]


def test_more_than_256_ipsets_is_no_error():
    """CONFIG_IP_SET_MAX (256) is where the kernel's table starts, not a limit
    (it grows on demand): 300 selectors are no calculation error."""
    inputs = Inputs("node-a")
    wep(inputs, "node-a", "web", "198.19.0.5", "caliweb", {"app": "web"})
    put(inputs, "globalnetworkpolicies", doc("GlobalNetworkPolicy", "many", {
        "selector": "all()", "ingress": [{"action": "Allow", "source": {
            "selector": f"app == 'a{i}'"}} for i in range(300)]}))
    d = C.Calc().compute(inputs, effective(None, None))
    assert len(d.ipsets) == 302 and d.errors == []


def test_missing_profile_is_default_drop_and_links_gate_routes():
    inputs = Inputs("node-a")
    wep(inputs, "node-a", "x", "198.19.0.9", "calix", profiles=["nope"])
    d = C.Calc().compute(inputs, effective(None, None), links={"calix": False})
    assert d.chains["filter"]["cali-pri-nope"][0].endswith("-j DROP")
    assert d.endpoints["calix"].missing_profiles == ("nope",)
    assert not d.routes and not d.sysctls and not d.endpoints["calix"].up


def test_nat_outgoing_floating_ips_and_dispatch_split():
    inputs = Inputs("node-a")
    put(inputs, "ippools", doc("IPPool", "p", {"cidr": "198.19.0.0/16", "natOutgoing": True}))
    wep(inputs, "node-a", "f", "198.19.0.7", "calif",
        ipNATs=[{"internalIP": "198.19.0.7", "externalIP": "198.19.200.1"}])
    for i in range(20):
        wep(inputs, "node-a", f"p{i}", f"198.19.2.{i}", f"cali{i % 3}x{i:04d}")
    d = C.Calc().compute(inputs, effective(None, None))
    nat = d.chains["nat"]
    assert nat["cali-nat-outgoing"] == (
        "-m set --match-set cali40masq-ipam-pools src -m set ! --match-set "
        "cali40all-ipam-pools dst -j MASQUERADE --random-fully",)
    assert nat["cali-fip-dnat"] == ("-d 198.19.200.1/32 -j DNAT --to-destination 198.19.0.7",)
    assert nat["cali-fip-snat"] == (
        "-s 198.19.0.7/32 -d 198.19.0.7/32 -j SNAT --to-source 198.19.200.1",)
    assert d.routes["198.19.200.1/32"] == "calif"
    assert d.ipsets["cali40masq-ipam-pools"].members == {"198.19.0.0/16"}
    root = d.chains["filter"]["cali-from-wl-dispatch"]
    assert "-i cali0+ -g cali-from-wl-dispatch-0" in root and root[-1].endswith("-j DROP")
    assert "-i cali0x0000 -g cali-fw-cali0x0000" in d.chains["filter"]["cali-from-wl-dispatch-0"]


def test_status_values_and_keys():
    inputs = build()
    d = C.Calc().compute(inputs, effective(None, None), links={"caliweb": True})
    st = desired_status("node-a", d.endpoints.values())
    assert st[endpoint_key("node-a", "k8s", "default", "web", "eth0")] == b'{"status": "up"}'
    assert st[endpoint_key("node-a", "k8s", "default", "db", "eth0")] == b'{"status": "down"}'
    assert endpoint_key("n", "k8s", "ns", "p", "eth0") == \
        "/calico/felix/v2/no-region/host/n/workload/k8s/ns%2fp/endpoint/eth0"


# -- iptables --------------------------------------------------------------------------

SAVE = """# Generated by iptables-save
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER - [0:0]
:cali-a - [0:0]
-A INPUT -j DOCKER
-A FORWARD -m comment --comment "cali:{hook}" -j cali-FORWARD
-A cali-a -m comment --comment "cali:{h0}" -j ACCEPT
-A cali-a -j DROP
COMMIT
"""


def test_parse_save_and_plan_only_what_differs():
    chains = {"cali-a": ("-j ACCEPT",), "cali-FORWARD": ("-j cali-a",)}
    hooks = {"FORWARD": "-j cali-FORWARD"}
    table = ipt.TableSync("filter")
    h0 = table.hashes("cali-a", ("-j ACCEPT",))[0]
    text = SAVE.format(hook=ipt.hook_hash("FORWARD", "-j cali-FORWARD"), h0=h0)
    state = ipt.parse_save(text)["filter"]
    assert state.chains["cali-a"] == [h0, None]  # a hand-added rule without a hash
    assert state.builtins["INPUT"] == ["-j DOCKER"]
    table.load(state)
    body, write, delete = table.plan(chains, hooks)
    assert sorted(write) == ["cali-FORWARD", "cali-a"] and delete == []
    assert ":INPUT" not in body and "DOCKER" not in body  # never declares built-ins
    assert "-I FORWARD" not in body  # the hook is first already
    table.committed(chains, hooks, write, delete)
    assert table.plan(chains, hooks) == ("", [], [])


def test_plan_moves_hooks_first_and_deletes_unwanted_cali_chains():
    table = ipt.TableSync("filter")
    hook = ipt.tagged(ipt.hook_hash("FORWARD", "-j cali-FORWARD"), "-j cali-FORWARD")
    state = ipt.TableState(chains={"cali-old": ["x" * 16]},
                           builtins={"FORWARD": ["-j KUBE-FORWARD", hook, hook]})
    table.load(state)
    body, write, delete = table.plan({"cali-FORWARD": ()}, {"FORWARD": "-j cali-FORWARD"})
    lines = body.splitlines()
    assert lines.count(f"-D FORWARD {hook}") == 2
    assert lines.index(f"-I FORWARD 1 {hook}") > lines.index(f"-D FORWARD {hook}")
    assert lines[-2:] == ["-X cali-old", "COMMIT"] and delete == ["cali-old"]
    assert ":cali-old - [0:0]" in lines  # flushed before it is deleted


def test_rule_hashes_depend_on_position_and_chain():
    a = ipt.rule_hashes("c", ("-j A", "-j B"))
    assert a != ipt.rule_hashes("c", ("-j B", "-j A"))
    assert a != ipt.rule_hashes("d", ("-j A", "-j B"))
    assert a == ipt.rule_hashes("c", ("-j A", "-j B"))


# -- ipsets --------------------------------------------------------------------------

def test_ipset_plan_add_del_swap_and_removals():
    saved = ("create cali40s:a hash:net family inet hashsize 1024 maxelem 1048576\n"
             "add cali40s:a 198.19.0.1\nadd cali40s:a 198.19.0.2\n"
             "create cali40s:b hash:ip family inet\n"
             "create cali40gone hash:net family inet\n"
             "create other hash:net family inet\nadd other 10.0.0.1\n")
    sets = ips.parse_save(saved)
    assert "other" not in sets and sets["cali40s:a"].members == {"198.19.0.1", "198.19.0.2"}
    sync = ips.IpsetSync()
    sync.load(sets)
    want = {"cali40s:a": ips.KernelSet("hash:net", frozenset({"198.19.0.2", "198.19.0.3"})),
            "cali40s:b": ips.KernelSet("hash:net", frozenset({"198.19.0.9"})),
            "cali40s:c": ips.KernelSet("hash:net", frozenset())}
    adds = sync.plan_adds(want).splitlines()
    assert "add cali40s:a 198.19.0.3" in adds and "del cali40s:a 198.19.0.1" in adds
    assert adds[adds.index("create cali4ts:b hash:net family inet maxelem 1048576") + 1:][:3] == [
        "add cali4ts:b 198.19.0.9", "swap cali4ts:b cali40s:b", "destroy cali4ts:b"]
    assert "create cali40s:c hash:net family inet maxelem 1048576" in adds
    assert sync.plan_removals(want) == "destroy cali40gone\n"
    sync.added(want)
    sync.removed(want)
    assert sync.plan_adds(want) == "" and sync.plan_removals(want) == ""


def test_metrics_render_prometheus_text():
    m = Metrics()
    m.set("felix_active_local_endpoints", 3)
    m.inc("felix_iptables_restore_calls")
    m.apply_time.observe(0.02)
    m.apply_time.observe(50)
    text = m.render()
    assert "felix_active_local_endpoints 3\n" in text
    assert "# TYPE felix_int_dataplane_apply_time_seconds histogram" in text
    assert 'felix_int_dataplane_apply_time_seconds_bucket{le="0.025"} 1' in text
    assert 'felix_int_dataplane_apply_time_seconds_bucket{le="+Inf"} 2' in text
    assert "felix_int_dataplane_apply_time_seconds_count 2" in text


@pytest.mark.parametrize("text", ["-A cali-x -m comment --comment cali:abcdefghijklmnop -j X",
                                  '-A cali-x -m comment --comment "cali:abcdefghijklmnop" -j X'])
def test_hash_read_with_or_without_quotes(text):
    assert ipt.parse_save(f"*filter\n{text}\nCOMMIT\n")["filter"].chains["cali-x"] == [
        "abcdefghijklmnop"]


def test_the_shell_turns_every_tool_failure_into_a_kernel_error(tmp_path, monkeypatch):
    """A hung or missing ipset / iptables-save raised TimeoutExpired or
    FileNotFoundError out of the apply, which stopped the agent; a
    KernelError is reported and retried. (Stand-ins on PATH, no root.)"""
    from pybgp.errors import KernelError

    slow = tmp_path / "ipset"
    slow.write_text("#!/bin/sh\nexec /bin/sleep 30\n")
    slow.chmod(0o755)
    failing = tmp_path / "iptables-save"
    failing.write_text("#!/bin/sh\necho 'no table' >&2\nexit 3\n")
    failing.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(KernelError, match="ipset save took longer than 0.2s"):
        ips.save(timeout=0.2)
    with pytest.raises(KernelError, match="iptables-save failed: no table"):
        ipt.save()
    with pytest.raises(KernelError, match="iptables-restore failed to start"):
        ipt.start_restore("*filter\nCOMMIT\n")
