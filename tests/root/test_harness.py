"""The harness itself against the real world: etcd, namespaces, veths, packets."""

from __future__ import annotations

import os
import subprocess

import pytest

from pybgp.testing.etcd import EtcdError, EtcdServer
from pybgp.testing.names import cali_name
from pybgp.testing.netns import CommandError, Topology, leftover_namespaces, list_namespaces

pytestmark = pytest.mark.root


# ----- etcd ------------------------------------------------------------------
def test_etcd_put_get_wipe(etcd: EtcdServer) -> None:
    assert etcd.endpoint == f"http://127.0.0.1:{etcd.client_port}"
    assert {etcd.client_port, etcd.peer_port}.isdisjoint({2379, 2380})
    etcd.put("/calico/a", "1")
    etcd.put(b"\x00binary", b"\xff")
    assert etcd.get("/calico/a") == b"1"
    assert etcd.wipe() == 2
    assert etcd.get("/calico/a") is None


def test_etcd_starts_empty_in_each_test(etcd: EtcdServer) -> None:
    assert etcd.get("/calico/a") is None


def test_etcd_restart_and_crash_keep_data(etcd: EtcdServer) -> None:
    etcd.put("/k", "v")
    etcd.restart()
    assert etcd.get("/k") == b"v"
    pid = etcd.proc.pid if etcd.proc else None
    etcd.kill()
    assert not etcd.running and pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    etcd.start()
    assert etcd.get("/k") == b"v"


def test_etcd_stopped_by_a_test_is_restarted_by_the_fixture(etcd: EtcdServer) -> None:
    etcd.stop()  # the next test's `etcd` fixture must bring it back


def test_etcd_compaction(etcd: EtcdServer) -> None:
    r1 = etcd.put("/k", "one")
    r2 = etcd.put("/k", "two")
    assert etcd.get("/k", revision=r1) == b"one"
    assert etcd.compact(r2) == r2
    with pytest.raises(EtcdError, match="compacted"):
        etcd.get("/k", revision=r1)
    assert etcd.get("/k") == b"two"


def test_etcd_own_server_close_and_start_failure() -> None:
    with EtcdServer() as first:
        assert first.running
        second = EtcdServer(start=False)
        try:
            second.client_port = first.client_port  # already in use: start must fail
            with pytest.raises(EtcdError, match="address already in use"):
                second.start(timeout=10)
            assert not second.running
        finally:
            second.close()
        assert not second.data_root.exists()
        pid, root = first.proc.pid if first.proc else 0, first.data_root
    assert not root.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    first.close()  # idempotent


# ----- namespaces --------------------------------------------------------------
def test_nodes_and_pods_ping(topology: Topology) -> None:
    a = topology.add_node("a", "198.18.0.11/24", ip6="2001:db8::11/64")
    b = topology.add_node("b", "198.18.0.12/24", ip6="2001:db8::12/64")
    pa = topology.add_pod(a, "pa", "198.19.0.5", ip6="2001:db8:1::5")
    pb = topology.add_pod("b", "pb", "198.19.1.5", k8s_namespace="kube-system")
    assert all(ns.startswith(topology.marker) for ns in topology.namespaces)
    assert pa.host_iface == cali_name("default", "pa")
    assert pb.host_iface == cali_name("kube-system", "pb")

    assert topology.ping(a, b.addr)
    assert topology.ping(a, b.addr6 or "")
    assert topology.ping(pa, a.addr)
    assert topology.ping(pa, a.addr6 or "")
    assert topology.ping(a, pa.addr)
    assert not topology.ping(pa, pb.addr, timeout=0.5)  # no routes between nodes yet

    topology.route(b, "198.19.0.5/32", via=a.addr)
    topology.route(a, "198.19.1.5/32", via=b.addr)
    assert topology.ping(pa, b.addr)
    assert topology.ping(pa, pb.addr)
    assert topology.ping(pb, pa.addr)

    inside = topology.exec(pa, "ip", "route").stdout
    assert "default via 169.254.1.1 dev eth0" in inside
    assert "169.254.1.1 dev eth0 scope link" in inside
    sysctl = topology.exec(a, "sysctl", "-n", f"net.ipv4.conf.{pa.host_iface}.proxy_arp",
                           f"net.ipv4.conf.{pa.host_iface}.forwarding", "net.ipv4.ip_forward")
    assert sysctl.stdout.split() == ["1", "1", "1"]


def test_close_removes_namespaces_and_processes() -> None:
    topo = Topology(prefix="pbh")
    with topo:
        a = topo.add_node("a", "198.18.0.11/24")
        topo.add_external_router("r1", "198.18.0.254/24")
        topo.add_pod(a, "p1", "198.19.0.5")
        proc = topo.popen(a, "sleep", "300")
        stray = topo.popen(a, "sh", "-c", "sleep 300 & sleep 300")  # a child too
        names = list(topo.namespaces)
        assert len(names) == 4 and set(names) <= set(list_namespaces())
    assert proc.poll() is not None and stray.poll() is not None
    assert leftover_namespaces(topo.marker) == []
    topo.close()  # idempotent
    with pytest.raises(RuntimeError):
        topo.add_node("b", "198.18.0.12/24")


def test_close_after_a_failed_step() -> None:
    topo = Topology(prefix="pbh")
    with pytest.raises(CommandError), topo:
        a = topo.add_node("a", "198.18.0.11/24")
        # Occupy the pod's host-side name so add_pod fails half-way (after its netns).
        topo.ip(a, "link", "add", cali_name("default", "p2"), "type", "dummy")
        topo.add_pod(a, "p2", "198.19.0.6")
    assert leftover_namespaces(topo.marker) == []


def test_failed_command_reports_stderr(topology: Topology) -> None:
    a = topology.add_node("a", "198.18.0.11/24")
    with pytest.raises(CommandError, match="Cannot find device"):
        topology.ip(a, "link", "set", "nope", "up")
    assert topology.exec(a, "false", check=False).returncode == 1
    with pytest.raises(subprocess.TimeoutExpired):
        topology.exec(a, "sleep", "5", timeout=0.5)


# ----- persistence: another process removes what this one made ---------------------
def test_restored_topology_closes_what_the_journal_names(tmp_path) -> None:
    from pybgp.testing.journal import Journal

    journal = Journal(tmp_path / "state.json")
    topo = Topology(prefix="pbh", journal=journal)
    a = topo.add_node("a", "198.18.0.11/24")
    topo.add_pod(a, "p1", "198.19.0.5")
    proc = topo.popen(a, "sleep", "300")
    snap = Journal.load(journal.path).get("topology")
    assert snap["namespaces"] == topo.namespaces and snap["pending"] is None
    assert [r["pid"] for r in snap["processes"]] == [proc.pid]

    # as `lab down` would, from the file alone
    again = Topology.restore(snap)
    assert again.nodes["a"] == a and again.pods["p1"].ip == topo.pods["p1"].ip
    assert again.ping(a, "198.19.0.5")  # a restored topology runs things as well
    again.close()
    assert proc.wait(10) is not None
    assert leftover_namespaces(topo.marker) == []
    again.close()  # idempotent
    topo.close()  # the original tolerates its namespaces being gone


def test_a_namespace_being_made_is_in_the_journal_first(tmp_path) -> None:
    from pybgp.testing.journal import Journal

    journal = Journal(tmp_path / "state.json")
    topo = Topology(prefix="pbh", journal=journal)
    seen: list[object] = []
    real_update = journal.update

    def spy(key, value):
        real_update(key, value)
        seen.append(value["pending"])

    journal.update = spy  # type: ignore[method-assign]
    ns = topo.add_namespace("x")
    assert seen[0] == ns  # recorded before `ip netns add`
    assert seen[-1] is None and ns in Journal.load(journal.path).get("topology")["namespaces"]
    # a crash right after `ip netns add` leaves it pending: a restored close removes it
    snap = dict(Journal.load(journal.path).get("topology"), namespaces=[], pending=ns)
    Topology.restore(snap).close()
    assert ns not in list_namespaces()
    topo.close()
    with pytest.raises(ValueError, match="not of run"):
        Topology.restore(dict(snap, pending="pbh-ffff-someone-else"))


def test_persistent_etcd_outlives_and_is_restored(tmp_path) -> None:
    from pybgp.testing.journal import Journal

    journal = Journal(tmp_path / "state.json")
    srv = EtcdServer(name="pybgp-persist-test", data_root=tmp_path / "etcd", persistent=True,
                     journal=journal)
    srv.put("/k", "v")
    desc = Journal.load(journal.path).get("etcd")
    assert desc["process"]["pid"] == srv.proc.pid  # type: ignore[union-attr]
    again = EtcdServer.restore(desc)
    assert again.running and again.get("/k") == b"v"
    again.close()
    assert not again.running and not (tmp_path / "etcd").exists()
    with pytest.raises(ProcessLookupError):
        os.kill(desc["process"]["pid"], 0)
    srv.proc = None  # its process is gone: the original's close must not fail
    srv.close()
