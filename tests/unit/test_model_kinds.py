"""Kind registry, aliases, etcd keys, WEP names, table columns, scalar values."""

from __future__ import annotations

from pathlib import Path

import pytest

from pybgp.errors import ValidationError
from pybgp.model import (
    KINDS,
    Duration,
    IPPoolSpec,
    Metadata,
    Resource,
    key_for,
    kind_from_key,
    lookup_kind,
    new_resource,
    parse_documents,
    parse_key,
    parse_resource,
    prefix_for,
)
from pybgp.model.columns import columns, table_rows
from pybgp.model.names import split_wep_name, wep_name
from pybgp.model.values import as_number, port

EXAMPLES = Path(__file__).resolve().parents[2] / "configs" / "examples"
EXAMPLE_FILES = sorted(EXAMPLES.glob("*.yaml"))


@pytest.mark.parametrize("alias, kind", [
    ("ippool", "IPPool"), ("IPPools", "IPPool"), ("pool", "IPPool"), ("pools", "IPPool"),
    ("bgppeer", "BGPPeer"), ("bgpp", "BGPPeer"), ("node", "Node"), ("NODES", "Node"),
    ("wep", "WorkloadEndpoint"), ("workloadendpoints", "WorkloadEndpoint"),
    ("netpol", "NetworkPolicy"), ("policy", "NetworkPolicy"), ("gnp", "GlobalNetworkPolicy"),
    ("felixconfig", "FelixConfiguration"), ("bgpconfig", "BGPConfiguration"),
    ("profile", "Profile"), ("hep", "HostEndpoint"), ("clusterinfo", "ClusterInformation"),
    ("GlobalNetworkPolicy", "GlobalNetworkPolicy"),
])
def test_lookup_kind_aliases(alias, kind):
    assert lookup_kind(alias).kind == kind


def test_lookup_unknown_kind():
    with pytest.raises(ValidationError, match="unknown resource kind 'widget'"):
        lookup_kind("widget")


def test_only_wep_and_netpol_are_namespaced():
    assert {k for k, i in KINDS.items() if i.namespaced} == {"WorkloadEndpoint",
                                                              "NetworkPolicy"}


def test_keys():
    pool = lookup_kind("ippool")
    assert key_for(pool, "p1") == "/calico/resources/v3/projectcalico.org/ippools/p1"
    wep = lookup_kind("wep")
    key = key_for(wep, "n-k8s-p-eth0", "default")
    assert key == "/calico/resources/v3/projectcalico.org/workloadendpoints/default/n-k8s-p-eth0"
    assert parse_key(key) == (wep, "default", "n-k8s-p-eth0")
    assert parse_key(key_for(pool, "p1")) == (pool, None, "p1")
    assert kind_from_key(key).kind == "WorkloadEndpoint"
    assert prefix_for(wep, "ns") == "/calico/resources/v3/projectcalico.org/workloadendpoints/ns/"
    assert prefix_for(pool) == "/calico/resources/v3/projectcalico.org/ippools/"
    with pytest.raises(ValidationError):
        key_for(wep, "x")
    with pytest.raises(ValidationError):
        key_for(pool, "x", "default")
    for bad in ("/calico/ipam/v2/handle/x", "/calico/resources/v3/projectcalico.org/widgets/x",
                "/calico/resources/v3/projectcalico.org/workloadendpoints/x"):
        with pytest.raises(ValidationError):
            parse_key(bad)


def test_wep_names():
    assert wep_name("node-1", "k8s", "web-0", "eth0") == "node--1-k8s-web--0-eth0"
    assert wep_name("n1", "cni", endpoint="eth0", container_id="abc-1") == "n1-cni-abc--1-eth0"
    assert wep_name("n1", "openstack", endpoint="tap0", workload="vm-1") == \
        "n1-openstack-vm--1-tap0"
    assert split_wep_name("node--1-k8s-web--0-eth0") == ["node-1", "k8s", "web-0", "eth0"]
    with pytest.raises(ValidationError) as info:
        wep_name("node-1", "k8s", "", "eth0")
    assert info.value.field == "spec.pod"
    with pytest.raises(ValidationError) as info:
        wep_name("-node", "k8s", "p", "eth0")
    assert info.value.field == "spec.node"


def test_new_resource_applies_defaults_and_validates():
    res = new_resource("pool", "p", IPPoolSpec(cidr="198.19.0.0/16"))
    assert res.kind == "IPPool" and res.spec.block_size == 26
    with pytest.raises(ValidationError):
        new_resource("pool", "p", IPPoolSpec(cidr="198.19.0.0/16", block_size=8))
    built = Resource("IPPool", Metadata(name="p"), IPPoolSpec(cidr="198.19.0.0/16"))
    assert built.to_dict()["spec"] == {"cidr": "198.19.0.0/16"}
    assert built.validated().to_dict()["spec"]["blockSize"] == 26


POOL_YAML = """
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: p1}
spec: {cidr: 198.19.0.0/16, natOutgoing: true}
---
apiVersion: projectcalico.org/v3
kind: IPPoolList
items:
  - apiVersion: projectcalico.org/v3
    kind: IPPool
    metadata: {name: p2}
    spec: {cidr: 198.19.0.0/16, blockSize: 33}
"""


def test_parse_documents_locates_errors():
    with pytest.raises(ValidationError) as info:
        parse_documents(POOL_YAML, "pools.yaml")
    assert str(info.value) == ("pools.yaml: document 2 item 1: field spec.blockSize: "
                               "invalid blockSize 33 for an IPv4 pool (must be 20..32)")
    with pytest.raises(ValidationError, match="invalid YAML"):
        parse_documents("a: [", "bad.yaml")


def test_yaml_timestamps_are_kept_as_rfc3339():
    res = parse_documents(POOL_YAML.split("---")[0].replace(
        "metadata: {name: p1}", "metadata: {name: p1, creationTimestamp: 2026-01-02T03:04:05Z}"))
    assert res[0].metadata.creation_timestamp == "2026-01-02T03:04:05Z"


def test_columns():
    pool = parse_resource({"apiVersion": "projectcalico.org/v3", "kind": "IPPool",
                           "metadata": {"name": "p"},
                           "spec": {"cidr": "198.19.0.0/16", "natOutgoing": True}})
    assert [h for h, _ in columns("ippool", False)] == ["NAME", "CIDR", "SELECTOR"]
    assert table_rows("ippool", [pool], wide=True) == [
        ["NAME", "CIDR", "NAT", "IPIPMODE", "VXLANMODE", "DISABLED", "DISABLEBGPEXPORT",
         "SELECTOR"],
        ["p", "198.19.0.0/16", "true", "Never", "Never", "false", "false", "all()"]]
    assert [h for h, _ in columns("node", True)] == ["NAME", "ASN", "IPV4", "IPV6"]
    assert [h for h, _ in columns("bgppeer", False)] == ["NAME", "PEERIP", "NODE", "ASN"]
    assert [h for h, _ in columns("wep", False)] == ["NAMESPACE", "WORKLOAD", "NODE",
                                                     "NETWORKS", "INTERFACE"]
    for kind in KINDS:
        assert columns(kind, False) and columns(kind, True)


def test_columns_render_every_example():
    for path in EXAMPLE_FILES:
        for res in parse_documents(path.read_text(), path.name):
            rows = table_rows(res.kind, [res], wide=True)
            assert all(isinstance(cell, str) for cell in rows[1])
    peer = parse_documents((EXAMPLES / "bgppeer.yaml").read_text())
    assert [c(peer[0]) for _, c in columns("bgppeer", False)] == \
        ["tor-router", "198.18.0.1", "(global)", "64513"]


@pytest.mark.parametrize("text, seconds, canonical", [
    ("120s", 120, "2m0s"), ("2m", 120, "2m0s"), ("1h30m", 5400, "1h30m0s"),
    ("500ms", 0.5, "500ms"), ("1.5s", 1.5, "1.5s"), ("0s", 0, "0s"), ("0", 0, "0s"),
    ("90s", 90, "1m30s"), ("3600s", 3600, "1h0m0s"),
])
def test_durations(text, seconds, canonical):
    d = Duration.parse(text)
    assert d.seconds == pytest.approx(seconds)
    assert str(d) == canonical
    assert Duration.parse(str(d)) == d


@pytest.mark.parametrize("bad", ["", "s", "10", "1x", "1h 2m", "m5"])
def test_bad_durations(bad):
    with pytest.raises(ValueError):
        Duration.parse(bad)


def test_as_numbers_and_ports():
    assert as_number(64512, "f") == 64512
    assert as_number("64512", "f") == 64512
    assert as_number("1.10", "f") == 65546
    for bad in ("1.70000", "-1", "x", 1.5, True):
        with pytest.raises(ValidationError):
            as_number(bad, "f")
    assert port(80, "p").dump() == 80
    assert port("80:90", "p").dump() == "80:90"
    assert port("http", "p").name == "http"
    for bad in (0, "0:10", "http_alt", "-x", "a" * 16):
        with pytest.raises(ValidationError):
            port(bad, "p")
