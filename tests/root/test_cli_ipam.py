"""`pybgp ipam show|check|release` as a user runs them, against a real etcd.

Addresses are allocated through `pybgp.ipam.IPAM` directly (what the CNI
plugin does), endpoints written as WorkloadEndpoint resources; then the real
`pybgp` executable reads them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pybgp.datastore.etcdv3 import EtcdClient, EtcdConfig
from pybgp.datastore.resources import ResourceStore
from pybgp.ipam import IPAM, Pool
from pybgp.model import parse_resource

CLI = str(Path(sys.executable).with_name("pybgp"))
POOL = Pool("198.19.0.0/16", name="pool1")


def pybgp(etcd, *argv: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, ETCD_ENDPOINTS=etcd.endpoint)
    return subprocess.run([CLI, *argv], env=env, capture_output=True, text=True, timeout=30)


@pytest.fixture
def kv(etcd):
    client = EtcdClient(EtcdConfig(endpoints=[etcd.endpoint]))
    ResourceStore(client).create(parse_resource(
        {"apiVersion": "projectcalico.org/v3", "kind": "IPPool", "metadata": {"name": "pool1"},
         "spec": {"cidr": "198.19.0.0/16", "blockSize": 26}}))
    return client


def allocate(kv, node: str, cid: str, count: int = 1) -> list[str]:
    ipam = IPAM(kv, node, block_order="sequential")
    return [str(i.ip) for i in ipam.auto_assign(f"k8s-pod-network.{cid}", count=count,
                                                 attrs={"node": node}, pools=[POOL])]


def add_wep(kv, node: str, cid: str, ips: list[str]) -> None:
    ResourceStore(kv).create(parse_resource(
        {"apiVersion": "projectcalico.org/v3", "kind": "WorkloadEndpoint",
         "metadata": {"name": f"{node}-k8s-{cid}-eth0", "namespace": "default"},
         "spec": {"orchestrator": "k8s", "node": node, "pod": cid, "endpoint": "eth0",
                  "containerID": cid, "ipNetworks": [f"{ip}/32" for ip in ips],
                  "interfaceName": "cali0123456789a"}}))


def test_show_counts_what_ipam_allocated(etcd, kv):
    a = allocate(kv, "node1", "c1", count=3)
    allocate(kv, "node2", "c2")
    proc = pybgp(etcd, "ipam", "show")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[1].split("|")[1:-1] == [" GROUPING ", "     CIDR      ", " IPS TOTAL ",
                                          " IPS IN USE ", "   IPS FREE   "]
    assert lines[3] == "| IP Pool  | 198.19.0.0/16 |     65536 | 4 (0%)     | 65532 (100%) |"
    assert "Block" not in proc.stdout

    proc = pybgp(etcd, "ipam", "show", "--show-blocks")
    blocks = [line for line in proc.stdout.splitlines() if line.startswith("| Block")]
    assert len(blocks) == 2, proc.stdout
    assert any("3 (5%)" in b and "61 (95%)" in b for b in blocks), proc.stdout

    doc = json.loads(pybgp(etcd, "ipam", "show", "-o", "json").stdout)
    assert doc["pools"][0]["inUse"] == 4
    by_node = {b["node"]: b for b in doc["blocks"]}
    assert by_node["node1"]["inUse"] == 3 and by_node["node2"]["inUse"] == 1
    assert a[0].startswith("198.19.")


def test_check_finds_leaks_and_passes_when_clean(etcd, kv):
    ips = allocate(kv, "node1", "c1")
    leaked = allocate(kv, "node1", "c2")
    add_wep(kv, "node1", "c1", ips)
    proc = pybgp(etcd, "ipam", "check")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[0].startswith(f"leaked-address: {leaked[0]} is allocated")
    assert "1 problem(s) found" in proc.stdout
    doc = json.loads(pybgp(etcd, "ipam", "check", "-o", "json").stdout)
    assert [p["kind"] for p in doc["problems"]] == ["leaked-address"]

    proc = pybgp(etcd, "ipam", "release", "--ip", leaked[0])
    assert proc.returncode == 0, proc.stderr
    assert f"Successfully released {leaked[0]}" in proc.stdout
    proc = pybgp(etcd, "ipam", "check")
    assert proc.returncode == 0, proc.stdout
    assert "no problems found" in proc.stdout and "1 endpoints" in proc.stdout


def test_check_reports_an_endpoint_without_allocation(etcd, kv):
    add_wep(kv, "node1", "ghost", ["198.19.7.7"])
    proc = pybgp(etcd, "ipam", "check")
    assert proc.returncode == 1
    assert "missing-allocation: endpoint ghost uses 198.19.7.7" in proc.stdout


def test_release_refuses_in_use_unless_forced(etcd, kv):
    ips = allocate(kv, "node1", "c1")
    add_wep(kv, "node1", "c1", ips)
    proc = pybgp(etcd, "ipam", "release", "--ip", ips[0])
    assert proc.returncode == 1
    assert f"{ips[0]} is in use by WorkloadEndpoint default/node1-k8s-c1-eth0" in proc.stderr
    assert json.loads(pybgp(etcd, "ipam", "show", "-o", "json").stdout)["pools"][0]["inUse"] == 1

    proc = pybgp(etcd, "ipam", "release", "--ip", ips[0], "--force")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(pybgp(etcd, "ipam", "show", "-o", "json").stdout)["pools"][0]["inUse"] == 0
    # the endpoint now uses an address IPAM does not hold: check says so
    assert "missing-allocation" in pybgp(etcd, "ipam", "check").stdout


def test_release_of_unallocated_address_fails(etcd, kv):
    proc = pybgp(etcd, "ipam", "release", "--ip", "198.19.3.3")
    assert proc.returncode == 1
    assert "198.19.3.3 is not allocated" in proc.stderr


def test_unreachable_datastore_is_one_line_error(etcd):
    env = dict(os.environ, ETCD_ENDPOINTS="unix:///nonexistent/pybgp-test.sock:0")
    proc = subprocess.run([CLI, "ipam", "show"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error:") and "Traceback" not in proc.stderr
