"""Naming and address rules of the test harness (pure; no root, creates nothing)."""

from __future__ import annotations

import ipaddress

import pytest

from pybgp.testing.names import (
    IFNAMSIZ,
    LabAddressError,
    cali_name,
    check_ifname,
    check_lab_destination,
    check_lab_network,
    check_node_address,
    check_part,
    check_pod_address,
    fabric_port_name,
    make_run_id,
    ns_marker,
    ns_name,
)
from pybgp.testing.netns import Topology


def test_run_id_is_short_hex_and_avoids_taken() -> None:
    rid = make_run_id()
    assert len(rid) == 4 and int(rid, 16) >= 0
    taken = {f"{i:04x}" for i in range(65536)} - {"beef"}
    assert make_run_id(taken) == "beef"


def test_ns_name_carries_prefix_and_run_id() -> None:
    assert ns_name("pbt", "1a2b", "node-a") == "pbt-1a2b-node-a"
    assert ns_name("pbt", "1a2b", "node-a").startswith(ns_marker("pbt", "1a2b"))
    for bad in ("Node", "a_b", "-a", "a-", "", "x" * 21, "a b", "a/b"):
        with pytest.raises(ValueError):
            check_part(bad)
    with pytest.raises(ValueError):
        ns_name("PBT", "1a2b", "a")
    with pytest.raises(ValueError):
        ns_name("pbt", "xyz!", "a")


def test_interface_names_fit_the_kernel_limit() -> None:
    assert fabric_port_name("1a2b", "a", 1) == "f1a2b-a"
    long = fabric_port_name("1a2b", "a-very-long-node", 7)
    assert long == "f1a2b-n7" and len(long) <= IFNAMSIZ
    assert check_ifname("cali182c452fe96") == "cali182c452fe96"
    for bad in ("", "x" * 16, "a/b", "a:b", "a b"):
        with pytest.raises(ValueError):
            check_ifname(bad)


def test_cali_name_is_calicos() -> None:
    # cali + first 11 hex chars of sha1("default.p1")
    assert cali_name("default", "p1") == "cali182c452fe96"
    assert len(cali_name("kube-system", "coredns-abcdef-12345")) == IFNAMSIZ


@pytest.mark.parametrize("good", ["198.18.0.11/24", "198.18.255.254/16", "198.18.3.1/30",
                                  "2001:db8::11/64", "2001:db8:ffff::1/48"])
def test_node_address_accepted(good: str) -> None:
    assert check_node_address(good) == ipaddress.ip_interface(good)


@pytest.mark.parametrize("bad", ["198.18.0.11", "10.0.0.1/24", "198.18.0.1/15", "198.19.0.5/24",
                                 "192.168.1.1/24", "198.18.0.0/24", "198.18.0.255/24",
                                 "2001:db9::1/64", "2001:db8::1/31", "fe80::1/64", "nonsense/24"])
def test_node_address_refused(bad: str) -> None:
    with pytest.raises(LabAddressError):
        check_node_address(bad)


@pytest.mark.parametrize("good", ["198.19.0.5", "198.19.0.5/32", "198.19.255.1",
                                  "2001:db8:1::5", "2001:db8:1::5/128"])
def test_pod_address_accepted(good: str) -> None:
    assert str(check_pod_address(good)) == good.split("/")[0]


@pytest.mark.parametrize("bad", ["198.19.0.5/24", "198.18.0.5", "10.244.0.5", "8.8.8.8",
                                 "2001:db9::5", "::1", "198.19.0.256"])
def test_pod_address_refused(bad: str) -> None:
    with pytest.raises(LabAddressError):
        check_pod_address(bad)


def test_lab_destinations_and_networks() -> None:
    for ok in ("198.18.0.1", "198.19.3.4", "2001:db8::1"):
        check_lab_destination(ok)
    for bad in ("127.0.0.1", "8.8.8.8", "169.254.1.1", "fe80::1", "::1", "198.20.0.1"):
        with pytest.raises(LabAddressError):
            check_lab_destination(bad)
    assert str(check_lab_network("198.19.0.0/26")) == "198.19.0.0/26"
    for bad in ("0.0.0.0/0", "198.18.0.0/15", "10.0.0.0/8", "::/0", "198.19.0.1/24"):
        with pytest.raises(LabAddressError):
            check_lab_network(bad)


def test_topology_refuses_before_touching_anything() -> None:
    """Validation happens before any command runs, so this needs no root."""
    topo = Topology(prefix="pbu")
    assert topo.marker == f"pbu-{topo.run_id}-"
    with pytest.raises(LabAddressError):
        topo.add_node("a", "10.0.0.1/24")
    with pytest.raises(LabAddressError):
        topo.add_node("a", "198.18.0.11/24", ip6="2001:db9::1/64")
    with pytest.raises(ValueError):
        topo.add_node("a", "198.18.0.1/24")  # the fabric gateway
    with pytest.raises(LabAddressError):
        topo.ping("whatever", "8.8.8.8")
    with pytest.raises(ValueError):
        topo.exec("not-ours", "true")  # never exec into a namespace we did not create
    assert topo.namespaces == [] and topo.links == []
    topo.close()
    topo.close()
