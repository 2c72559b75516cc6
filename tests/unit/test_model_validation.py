"""Each validation rule of parse_resource has a failing case naming its field."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from pybgp.errors import ValidationError
from pybgp.model import parse_resource


def doc(kind: str, spec: dict[str, Any], name: str = "x", **meta: Any) -> dict[str, Any]:
    return {"apiVersion": "projectcalico.org/v3", "kind": kind,
            "metadata": {"name": name, **meta}, "spec": spec}


POOL = doc("IPPool", {"cidr": "198.19.0.0/16"})
PEER = doc("BGPPeer", {"peerIP": "198.18.0.1", "asNumber": 64513})
WEP_SPEC = {"orchestrator": "k8s", "node": "node-1", "pod": "web-0", "endpoint": "eth0",
            "interfaceName": "cali0ef24b1d5ac", "ipNetworks": ["198.19.0.4/32"]}


def with_spec(base: dict[str, Any], **spec: Any) -> dict[str, Any]:
    out = copy.deepcopy(base)
    out["spec"].update(spec)
    return out


def fails(document: Any, field: str | None, *fragments: str) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        parse_resource(document)
    err = info.value
    assert err.field == field, str(err)
    for fragment in fragments:
        assert fragment in str(err), str(err)
    assert "\n" not in str(err)
    return err


# --- envelope ----------------------------------------------------------------

def test_api_version_and_kind():
    fails({**POOL, "apiVersion": "projectcalico.org/v1"}, "apiVersion", "projectcalico.org/v1")
    fails({**POOL, "kind": "IpPool"}, "kind", "unknown resource kind 'IpPool'")
    fails({**POOL, "extra": 1}, "extra", "unknown field")
    fails("nope", None, "expected a resource object")


def test_metadata_rules():
    fails(doc("IPPool", {"cidr": "198.19.0.0/16"}, name=""), "metadata.name", "required")
    fails(doc("IPPool", {"cidr": "198.19.0.0/16"}, name="Bad_Name"), "metadata.name",
          "'Bad_Name'")
    fails(doc("IPPool", {"cidr": "198.19.0.0/16"}, namespace="default"),
          "metadata.namespace", "not namespaced")
    fails(doc("IPPool", {"cidr": "198.19.0.0/16"}, generateName="x"),
          "metadata.generateName", "unknown field")
    fails(doc("IPPool", {"cidr": "198.19.0.0/16"}, labels={"bad key!": "x"}),
          "metadata.labels", "invalid label key")
    fails(doc("GlobalNetworkPolicy", {}, name="a.b.c"), "metadata.name", "'a.b.c'")


def test_namespace_defaults_to_default():
    res = parse_resource(doc("NetworkPolicy", {}, name="p"))
    assert res.namespace == "default"
    assert res.etcd_key().endswith("/networkpolicies/default/p")


def test_unknown_and_mistyped_spec_fields():
    fails(with_spec(POOL, natOutgoin=True), "spec.natOutgoin", "unknown field")
    fails(with_spec(POOL, natOutgoing="yes"), "spec.natOutgoing", "true or false", "'yes'")
    fails(with_spec(POOL, blockSize="26"), "spec.blockSize", "integer")
    fails(with_spec(POOL, blockSize=True), "spec.blockSize", "boolean")


# --- IPPool ------------------------------------------------------------------

def test_ippool_defaults():
    spec = parse_resource(POOL).spec
    assert (spec.block_size, spec.node_selector, spec.ipip_mode, spec.vxlan_mode) == \
        (26, "all()", "Never", "Never")
    assert spec.allowed_uses == ["Workload", "Tunnel"]
    assert parse_resource(doc("IPPool", {"cidr": "2001:db8:1::/48"})).spec.block_size == 122


def test_ippool_cidr_rules():
    fails(with_spec(POOL, cidr="10.0.0.0/33"), "spec.cidr", "invalid CIDR '10.0.0.0/33'")
    assert str(fails(with_spec(POOL, cidr="10.0.0.0/33"), "spec.cidr")) == \
        "field spec.cidr: invalid CIDR '10.0.0.0/33'"
    fails(with_spec(POOL, cidr="198.19.0.1/16"), "spec.cidr", "not strictly masked")
    fails(with_spec(POOL, cidr="198.19.0.0"), "spec.cidr", "invalid CIDR")
    fails(with_spec(POOL, cidr="169.254.0.0/16"), "spec.cidr", "link-local")
    fails(doc("IPPool", {}), "spec.cidr", "required")
    assert parse_resource(with_spec(POOL, cidr="2001:DB8:1:0::/64")).spec.cidr == \
        "2001:db8:1::/64"


def test_ippool_block_size_rules():
    fails(with_spec(POOL, blockSize=33), "spec.blockSize", "33")
    fails(with_spec(POOL, blockSize=19), "spec.blockSize", "20..32")
    fails(with_spec(POOL, cidr="198.19.0.0/26", blockSize=24), "spec.blockSize",
          "smaller than its blockSize")
    fails(doc("IPPool", {"cidr": "2001:db8::/64", "blockSize": 26}), "spec.blockSize",
          "116..128")
    # A disabled pool may be smaller than a block (Calico's rule).
    parse_resource(with_spec(POOL, cidr="198.19.0.0/28", disabled=True))


def test_ippool_encapsulation_rules():
    fails(with_spec(POOL, ipipMode="Always", vxlanMode="CrossSubnet"), "spec.ipipMode",
          "cannot both be enabled")
    fails(with_spec(POOL, ipipMode="always"), "spec.ipipMode", "'always'")
    fails(doc("IPPool", {"cidr": "2001:db8::/64", "ipipMode": "Always"}), "spec.ipipMode",
          "IPv6")


def test_ippool_selector_rules():
    fails(with_spec(POOL, nodeSelector="rack == "), "spec.nodeSelector", "invalid selector")
    fails(with_spec(POOL, nodeSelector="global()"), "spec.nodeSelector", "global()")
    fails(with_spec(POOL, allowedUses=["Workload", "LoadBalancer"]), "spec.allowedUses")
    fails(with_spec(POOL, allowedUses=["Pods"]), "spec.allowedUses[0]", "'Pods'")


# --- BGPPeer / BGPConfiguration / Node -----------------------------------------

def test_bgppeer_accepts_calico_forms():
    spec = parse_resource(with_spec(PEER, peerIP="[2001:db8::1]:1179", asNumber="1.10",
                                    password={"secretKeyRef": {"name": "s", "key": "k"}},
                                    maxRestartTime="2m")).spec
    assert (spec.peer_address, spec.peer_port, spec.as_number) == ("2001:db8::1", 1179, 65546)
    assert str(spec.max_restart_time) == "2m0s"
    assert spec.password.secret_key_ref.key == "k"
    assert parse_resource(with_spec(PEER, asNumber="64513")).spec.as_number == 64513


def test_bgppeer_rules():
    fails(with_spec(PEER, peerIP="198.18.0.300"), "spec.peerIP", "'198.18.0.300'")
    fails(with_spec(PEER, peerIP="198.18.0.1:99999"), "spec.peerIP")
    fails(with_spec(PEER, asNumber="AS64513"), "spec.asNumber", "'AS64513'")
    fails(with_spec(PEER, asNumber=2**32), "spec.asNumber")
    fails(with_spec(PEER, node="node-1", nodeSelector="all()"), "spec.nodeSelector",
          "cannot both be set")
    fails(with_spec(PEER, peerSelector="all()"), "spec.peerSelector", "cannot both be set")
    fails(doc("BGPPeer", {"peerSelector": "all()", "asNumber": 64512}), "spec.asNumber")
    fails(doc("BGPPeer", {"asNumber": 64513}), "spec.peerIP", "required")
    fails(doc("BGPPeer", {"peerIP": "198.18.0.1"}), "spec.asNumber", "required")
    fails(with_spec(PEER, maxRestartTime="2 minutes"), "spec.maxRestartTime", "duration")
    fails(with_spec(PEER, password={"secretKeyRef": {"name": "s"}}),
          "spec.password.secretKeyRef.key", "required")
    fails(with_spec(PEER, password="hunter2"), "spec.password", "expected an object")


def test_bgpconfiguration_rules():
    base = doc("BGPConfiguration", {}, name="default")
    assert parse_resource(base).spec.mesh_enabled is True
    off = parse_resource(with_spec(base, nodeToNodeMeshEnabled=False))
    assert off.to_dict()["spec"] == {"nodeToNodeMeshEnabled": False}
    fails(with_spec(base, listenPort=0), "spec.listenPort")
    fails(with_spec(base, logSeverityScreen="Loud"), "spec.logSeverityScreen", "'Loud'")
    fails(with_spec(base, nodeToNodeMeshEnabled=False, nodeMeshMaxRestartTime="120s"),
          "spec.nodeMeshMaxRestartTime")
    fails(with_spec(base, serviceClusterIPs=[{"cidr": "nope"}]),
          "spec.serviceClusterIPs[0].cidr", "invalid CIDR 'nope'")
    fails(with_spec(base, bindMode="All"), "spec.bindMode")


def test_node_rules():
    node = doc("Node", {"bgp": {"ipv4Address": "198.18.0.11/24"}}, name="node-1")
    res = parse_resource(node)
    assert res.spec.bgp.ipv4 == "198.18.0.11"
    fails(with_spec(node, bgp={"ipv4Address": "2001:db8::1/64"}), "spec.bgp.ipv4Address")
    fails(with_spec(node, bgp={"ipv6Address": "198.18.0.11/24"}), "spec.bgp.ipv6Address")
    fails(with_spec(node, bgp={"routeReflectorClusterID": "x"}),
          "spec.bgp.routeReflectorClusterID")
    fails(with_spec(node, bgp={"asNumber": -1}), "spec.bgp.asNumber")
    fails(with_spec(node, orchRefs=[{"orchestrator": "k8s", "nodeName": 3}]),
          "spec.orchRefs[0].nodeName")


def test_node_status_and_nulls_are_accepted():
    node = doc("Node", {"bgp": {"ipv4Address": "198.18.0.11/24"}}, name="node-1",
               creationTimestamp=None)
    node["status"] = {}
    res = parse_resource(node)
    assert res.status == {} and res.to_dict()["status"] == {}
    assert "creationTimestamp" not in res.to_dict()["metadata"]


# --- WorkloadEndpoint --------------------------------------------------------

def test_wep_name_is_computed_and_checked():
    res = parse_resource(doc("WorkloadEndpoint", WEP_SPEC, name=""))
    assert res.name == "node--1-k8s-web--0-eth0"
    assert res.labels["projectcalico.org/namespace"] == "default"
    assert res.labels["projectcalico.org/orchestrator"] == "k8s"
    fails(doc("WorkloadEndpoint", WEP_SPEC, name="node-1-k8s-web-0-eth0"), "metadata.name",
          "expected 'node--1-k8s-web--0-eth0'")


def test_wep_rules():
    wep = doc("WorkloadEndpoint", WEP_SPEC, name="")
    fails(with_spec(wep, ipNetworks=["198.19.0.0/26"]), "spec.ipNetworks[0]",
          "multiple addresses")
    fails(with_spec(wep, ipNATs=[{"internalIP": "198.19.9.9", "externalIP": "198.18.5.5"}]),
          "spec.ipNATs[0].internalIP", "not in the endpoint")
    fails(with_spec(wep, interfaceName="cali-name-too-long-x"), "spec.interfaceName")
    fails(with_spec(wep, ipv4Gateway="2001:db8::1"), "spec.ipv4Gateway")
    fails(with_spec(wep, mac="zz:zz"), "spec.mac")
    fails(with_spec(wep, ports=[{"name": "http", "protocol": "ICMP", "port": 80}]),
          "spec.ports[0].protocol")
    without_iface = copy.deepcopy(wep)
    del without_iface["spec"]["interfaceName"]
    fails(without_iface, "spec.interfaceName", "required")


# --- policy ------------------------------------------------------------------

def rule(**kw: Any) -> dict[str, Any]:
    return {"action": "Allow", **kw}


def np(**spec: Any) -> dict[str, Any]:
    return doc("NetworkPolicy", spec, name="p")


def test_policy_types_default_like_calico():
    assert parse_resource(np()).spec.types == ["Ingress"]
    assert parse_resource(np(egress=[rule()])).spec.types == ["Egress"]
    assert parse_resource(np(ingress=[rule()], egress=[rule()])).spec.types == \
        ["Ingress", "Egress"]


def test_rule_rules():
    fails(np(ingress=[{"action": "Accept"}]), "spec.ingress[0].action", "'Accept'")
    fails(np(ingress=[{}]), "spec.ingress[0].action", "required")
    fails(np(ingress=[rule(protocol="GRE")]), "spec.ingress[0].protocol", "'GRE'")
    fails(np(ingress=[rule(protocol=0)]), "spec.ingress[0].protocol")
    fails(np(ingress=[rule(destination={"ports": [80]})]),
          "spec.ingress[0].destination.ports", "needs a protocol")
    fails(np(ingress=[rule(protocol="ICMP", destination={"ports": [80]})]),
          "spec.ingress[0].destination.ports", "does not support ports")
    fails(np(ingress=[rule(protocol="TCP", destination={"ports": ["90:80"]})]),
          "spec.ingress[0].destination.ports[0]", "'90:80'")
    fails(np(ingress=[rule(protocol="TCP", destination={"ports": [70000]})]),
          "spec.ingress[0].destination.ports[0]")
    fails(np(ingress=[rule(icmp={"type": 8})]), "spec.ingress[0].icmp", "ICMP")
    fails(np(ingress=[rule(protocol="ICMP", icmp={"code": 0})]), "spec.ingress[0].icmp.code")
    fails(np(ingress=[rule(protocol="ICMPv6", ipVersion=4)]), "spec.ingress[0].ipVersion")
    fails(np(ingress=[rule(source={"nets": ["198.18.0.0/16"], "notNets": ["2001:db8::/32"]})]),
          "spec.ingress[0].source.notNets", "mixes IPv4 and IPv6")
    fails(np(ingress=[rule(source={"notNets": ["0.0.0.0/0"]})]),
          "spec.ingress[0].source.notNets[0]", "catch-all")
    fails(np(ingress=[rule(source={"selector": "global()"})]),
          "spec.ingress[0].source.selector", "global()")
    fails(np(ingress=[rule(source={"selector": "a = 'b'"})]),
          "spec.ingress[0].source.selector", "position")
    fails(np(ingress=[rule(source={"nets": ["198.18.0.0/33"]})]),
          "spec.ingress[0].source.nets[0]", "'198.18.0.0/33'")
    fails(np(ingress=[rule(source={"ports": ["http"]}, sorce={})]), "spec.ingress[0].sorce")
    # Named ports need no protocol; global() is fine inside a namespaceSelector.
    parse_resource(np(ingress=[rule(destination={"ports": ["http"]},
                                    source={"namespaceSelector": "global()"})]))


def test_policy_ports_round_trip_as_calico_writes_them():
    res = parse_resource(np(ingress=[rule(protocol="tcp",
                                          destination={"ports": ["80", 443, "8000:8080",
                                                                 "http"]})]))
    r = res.to_dict()["spec"]["ingress"][0]
    assert r["protocol"] == "TCP"
    assert r["destination"]["ports"] == [80, 443, "8000:8080", "http"]


def test_gnp_rules():
    def gnp(**spec: Any) -> dict[str, Any]:
        return doc("GlobalNetworkPolicy", spec, name="g")
    fails(gnp(doNotTrack=True, preDNAT=True, applyOnForward=True), "spec.preDNAT")
    fails(gnp(preDNAT=True, applyOnForward=True, egress=[rule()]), "spec.egress")
    fails(gnp(doNotTrack=True), "spec.applyOnForward")
    fails(gnp(selector="global()"), "spec.selector", "global()")
    fails(gnp(types=["Sideways"]), "spec.types[0]")
    fails(gnp(order="first"), "spec.order", "number")
    assert parse_resource(gnp(order=10.5)).to_dict()["spec"]["order"] == 10.5


def test_profile_rules():
    fails(doc("Profile", {"labelsToApply": {"a": 1}}), "spec.labelsToApply.a", "string")
    fails(doc("Profile", {"ingress": [{"action": "Allow", "protocol": "TCP",
                                       "destination": {"ports": [0]}}]}),
          "spec.ingress[0].destination.ports[0]")


# --- FelixConfiguration / others ---------------------------------------------

def test_felixconfiguration_keeps_other_calico_fields():
    d = doc("FelixConfiguration", {"bpfEnabled": True, "wireguardMTU": 1400,
                                   "healthPort": 9099}, name="default")
    res = parse_resource(d)
    assert res.spec.extra == {"bpfEnabled": True, "wireguardMTU": 1400}
    assert res.spec.health_port == 9099
    assert res.to_dict()["spec"] == d["spec"]
    fails(with_spec(d, bpfEnabeld=True), "spec.bpfEnabeld", "unknown field")
    fails(with_spec(d, routeRefreshInterval="90"), "spec.routeRefreshInterval", "duration")
    fails(with_spec(d, failsafeInboundHostPorts=[{"protocol": "tcp"}]),
          "spec.failsafeInboundHostPorts[0].port", "required")
    fails(with_spec(d, routeTableRange={"min": 10, "max": 5}), "spec.routeTableRange.min")


def test_hostendpoint_and_clusterinformation():
    parse_resource(doc("HostEndpoint", {"node": "node-1", "interfaceName": "eth0",
                                        "expectedIPs": ["198.18.0.11"]}, name="node-1-eth0"))
    fails(doc("HostEndpoint", {"node": "node-1"}, name="h"), "spec.interfaceName")
    fails(doc("HostEndpoint", {"interfaceName": "*"}, name="h"), "spec.node")
    parse_resource(doc("ClusterInformation", {"datastoreReady": True}, name="default"))
    fails(doc("ClusterInformation", {}, name="other"), "metadata.name")
