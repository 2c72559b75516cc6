"""The agent on one node, judged by real packets.

One node in a namespace, the real ``pybgp agent`` in it, real etcd, pods made
by the real CNI plugin in two Kubernetes namespaces, and an "outside" host on
the fabric. Every cell of every matrix sends packets: what policy allows must
arrive, what it denies must not. The cluster is shared by the module; each
test removes the policy it applied.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from agent_net import (
    PROBE,
    apply,
    cali_rules,
    cali_rules_in,
    delete,
    fresh_cluster,
    http_get,
    ping,
    reach,
    sampling,
    serve,
    settle,
    tcp,
    wait_ready,
)

from pybgp.datastore.kv import Delete
from pybgp.testing.cluster import wait_until

NODE_IP = "198.18.0.11"
OUTSIDE_IP = "198.18.0.50"
FLOATING_IP = "198.19.200.10"
GNP = "GlobalNetworkPolicy"
NP = "NetworkPolicy"


@pytest.fixture(scope="module")
def lab(etcd_server, session_run_id, tmp_path_factory):
    with fresh_cluster(etcd_server, session_run_id,
                       str(tmp_path_factory.mktemp("agent-node"))) as cluster:
        topo = cluster.topo
        cluster.add_node("node-a", f"{NODE_IP}/24")
        outside = topo.add_external_router("outside", f"{OUTSIDE_IP}/24")
        cluster.namespace_profile("default")
        cluster.namespace_profile("prod", {"env": "prod"})
        # quick refreshes, so a hand-made drift is repaired within a test
        apply(cluster, "FelixConfiguration", "default", {
            "iptablesRefreshInterval": "2s", "routeRefreshInterval": "2s",
            "ipsetsRefreshInterval": "2s", "reportingInterval": "1s"})
        pods = {}
        for name, ns, app in (("web", "default", "web"), ("client", "default", "client"),
                              ("other", "default", "other"), ("sink", "default", "sink"),
                              ("pclient", "prod", "client")):
            pods[name] = cluster.add_pod("node-a", name, cni=True, namespace=ns)
            cluster.update_endpoint(pods[name], labels={"app": app})
        serve(topo, pods["web"], 80, 8080, 9000)
        serve(topo, pods["other"], 80)
        serve(topo, pods["client"], 80)
        serve(topo, pods["sink"], 7000)
        serve(topo, outside, 7000)
        cluster.start_agent("node-a")
        wait_ready(cluster, "node-a")
        yield cluster, pods, outside


def node_of(cluster):
    return cluster.nodes["node-a"].node


def test_profiles_allow_routes_neighbours_and_unknown_interfaces(lab):
    cluster, pods, _ = lab
    topo = cluster.topo
    web, client, sink = pods["web"], pods["client"], pods["sink"]
    # no policy: the namespace profile (allow all) decides
    assert reach(topo, client, web, 80)
    assert ping(topo, client, web) and ping(topo, pods["pclient"], sink)
    node = node_of(cluster)
    routes = topo.exec(node, "ip", "route", "show", "proto", "80").stdout
    neigh = topo.exec(node, "ip", "neigh", "show", "nud", "permanent").stdout
    for pod in pods.values():
        assert f"{pod.addr} dev {pod.host_iface}" in routes
        mac = topo.exec(pod, "cat", f"/sys/class/net/{pod.iface}/address").stdout.strip()
        assert f"{pod.addr} dev {pod.host_iface} lladdr {mac} PERMANENT" in neigh
        rp = topo.exec(node, "sysctl", "-n", f"net.ipv4.conf.{pod.host_iface}.rp_filter")
        assert rp.stdout.strip() == "1"
    # a cali interface without an endpoint passes nothing, either way
    stray = topo.add_pod(node, "stray", "198.19.250.88")
    try:
        assert not ping(topo, stray, sink)
        assert not ping(topo, sink, stray.addr)
        # its route is not the agent's (protocol boot): left alone
        assert f"{stray.addr} dev {stray.host_iface}" in topo.exec(node, "ip", "route").stdout
    finally:
        topo.ip(node, "link", "del", stray.host_iface)


def test_policy_matrix_ingress_egress_labels_namespaces_and_changes(lab):
    cluster, pods, _ = lab
    topo = cluster.topo
    web, client, other, pclient = pods["web"], pods["client"], pods["other"], pods["pclient"]
    w = web.addr
    web_allow = {"order": 100, "selector": "app == 'web'", "types": ["Ingress"], "ingress": [
        {"action": "Allow", "protocol": "TCP", "source": {"selector": "app == 'client'"},
         "destination": {"ports": [80]}},
        {"action": "Allow", "protocol": "ICMP", "source": {"selector": "app == 'client'"}},
        {"action": "Allow", "protocol": "TCP", "source": {"namespaceSelector": "env == 'prod'"},
         "destination": {"ports": [8080]}}]}
    client_egress = {"order": 100, "types": ["Egress"],
                     "selector": "app == 'client' && projectcalico.org/namespace == 'default'",
                     "egress": [{"action": "Deny", "destination": {"selector": "app == 'other'"}},
                                {"action": "Allow"}]}
    apply(cluster, NP, "web-allow", web_allow, namespace="default")
    apply(cluster, GNP, "client-egress", client_egress)
    try:
        settle(lambda: not reach(topo, other, web, 80), what="web-allow to apply")
        settle(lambda: not reach(topo, client, other, 80), what="client-egress to apply")
        got = tcp(topo, client, f"{w}:80", f"{w}:8080", f"{w}:9000", f"{other.addr}:80")
        assert got == {f"{w}:80": client.addr, f"{w}:8080": "", f"{w}:9000": "",
                       f"{other.addr}:80": ""}, "from client (default)"
        assert ping(topo, client, web), "ICMP from client is allowed"
        got = tcp(topo, other, f"{w}:80", f"{client.addr}:80")
        assert got == {f"{w}:80": "", f"{client.addr}:80": other.addr}, "from other"
        assert not ping(topo, other, web), "ICMP only from app == client"
        # same label in another namespace: the namespaced selector does not
        # match it, the namespaceSelector rule does
        got = tcp(topo, pclient, f"{w}:80", f"{w}:8080")
        assert got == {f"{w}:80": "", f"{w}:8080": pclient.addr}, "from pclient (prod)"
        assert not ping(topo, pclient, web)
        # a policy change takes effect
        web_allow["ingress"][0]["destination"]["ports"] = [80, 9000]
        apply(cluster, NP, "web-allow", web_allow, namespace="default")
        settle(lambda: reach(topo, client, web, 9000), what="the changed policy")
        assert not reach(topo, other, web, 9000)
    finally:
        delete(cluster, NP, "web-allow", "default")
        delete(cluster, GNP, "client-egress")
    settle(lambda: reach(topo, client, web, 8080) and reach(topo, client, other, 80),
           what="the policies to go")


def test_named_port_follows_the_endpoint(lab):
    """A policy that allows TCP to a named port only: the port the endpoint
    calls by that name is reached, its other ports are not; when the
    endpoint's port number changes, the hash:ip,port set follows."""
    cluster, pods, _ = lab
    topo = cluster.topo
    node = node_of(cluster)
    web, client = pods["web"], pods["client"]
    w = web.addr
    cluster.update_endpoint(web, ports=[{"name": "web-alt", "protocol": "TCP", "port": 8080},
                                        {"name": "web-alt", "protocol": "UDP", "port": 9000}])
    apply(cluster, NP, "web-named", {"selector": "app == 'web'", "ingress": [
        {"action": "Allow", "protocol": "TCP", "destination": {"ports": ["web-alt"]}}]},
          namespace="default")
    try:
        settle(lambda: not reach(topo, client, web, 80), what="web-named")
        got = tcp(topo, client, f"{w}:80", f"{w}:8080", f"{w}:9000")
        assert got == {f"{w}:80": "", f"{w}:8080": client.addr, f"{w}:9000": ""}
        sets = topo.exec(node, "ipset", "list", "-o", "save").stdout
        assert f"{w},tcp:8080" in sets and f"{w},udp:9000" not in sets  # TCP's only
        assert "hash:ip,port" in sets
        cluster.update_endpoint(web, ports=[{"name": "web-alt", "protocol": "TCP",
                                             "port": 9000}])
        settle(lambda: reach(topo, client, web, 9000), what="the new port number")
        got = tcp(topo, client, f"{w}:80", f"{w}:8080", f"{w}:9000")
        assert got == {f"{w}:80": "", f"{w}:8080": "", f"{w}:9000": client.addr}
        sets = topo.exec(node, "ipset", "list", "-o", "save").stdout
        assert f"{w},tcp:9000" in sets and f"{w},tcp:8080" not in sets
    finally:
        delete(cluster, NP, "web-named", "default")
        cluster.update_endpoint(web, ports=[])
    settle(lambda: reach(topo, client, web, 80), what="web-named to go")


def test_pass_and_order(lab):
    cluster, pods, _ = lab
    topo = cluster.topo
    other, pclient, web = pods["other"], pods["pclient"], pods["web"]
    prod = "projectcalico.org/namespace == 'prod'"
    a_pass = {"order": 10, "selector": "app == 'other'", "ingress": [
        {"action": "Log"}, {"action": "Pass", "source": {"selector": prod}}]}
    apply(cluster, GNP, "a-pass", a_pass)
    apply(cluster, GNP, "b-deny", {"order": 20, "selector": "app == 'other'",
                                   "ingress": [{"action": "Deny"}]})
    apply(cluster, GNP, "c-allow", {"selector": "app == 'other'",  # no order: last
                                    "ingress": [{"action": "Allow"}]})
    try:
        settle(lambda: not reach(topo, web, other, 80), what="b-deny to apply")
        # Pass skips the rest of the tier (b-deny, c-allow): the profile allows
        assert reach(topo, pclient, other, 80)
        assert not ping(topo, web, other)
        # the deny ordered first wins
        a_pass["order"] = 30
        apply(cluster, GNP, "a-pass", a_pass)
        settle(lambda: not reach(topo, pclient, other, 80), what="the new order")
        assert not reach(topo, web, other, 80)
    finally:
        for name in ("a-pass", "b-deny", "c-allow"):
            delete(cluster, GNP, name)
    settle(lambda: reach(topo, web, other, 80), what="the policies to go")


def _udp_seen(topo, sink, sends) -> list[str]:
    listener = topo.popen(sink, *PROBE, "udp-listen", "5000", "--seconds", "3",
                          stdout=subprocess.PIPE, text=True)
    assert listener.stdout is not None and listener.stdout.readline().strip() == "ready"
    for src, source in sends:
        topo.exec(src, *PROBE, "udp-send", f"{sink.addr}:5000", "--source", source)
    out, _ = listener.communicate(timeout=10)
    return json.loads(out)


def test_spoofed_sources_are_dropped(lab):
    cluster, pods, _ = lab
    topo = cluster.topo
    client, sink, other = pods["client"], pods["sink"], pods["other"]
    spoof = "198.19.250.5"
    for addr in (spoof, other.addr):
        topo.ip(client, "addr", "add", f"{addr}/32", "dev", "eth0")
    try:
        seen = _udp_seen(topo, sink, [(client, client.addr), (client, spoof),
                                      (client, other.addr)])
        assert client.addr in seen
        assert spoof not in seen and other.addr not in seen
        # allowSpoofedSourcePrefixes lets that prefix through, nothing else
        cluster.update_endpoint(client, allowSpoofedSourcePrefixes=["198.19.250.0/24"])
        settle(lambda: spoof in _udp_seen(topo, sink, [(client, spoof)]),
               what="allowSpoofedSourcePrefixes")
        assert other.addr not in _udp_seen(topo, sink, [(client, other.addr)])
    finally:
        cluster.update_endpoint(client, allowSpoofedSourcePrefixes=[])
        for addr in (spoof, other.addr):
            topo.ip(client, "addr", "del", f"{addr}/32", "dev", "eth0", check=False)


def test_nat_outgoing(lab):
    cluster, pods, outside = lab
    topo = cluster.topo
    client, web = pods["client"], pods["web"]
    target = f"{OUTSIDE_IP}:7000"
    apply(cluster, "IPPool", "default-pool", {"cidr": "198.19.0.0/16", "natOutgoing": True})
    try:
        # the outside host has no route to the pods: only a masqueraded source answers
        settle(lambda: tcp(topo, client, target)[target] == NODE_IP, what="masquerade")
        assert tcp(topo, client, f"{web.addr}:80")[f"{web.addr}:80"] == client.addr, \
            "pod to pod inside the pools is not NATed"
    finally:
        apply(cluster, "IPPool", "default-pool", {"cidr": "198.19.0.0/16"})
    topo.route(outside, "198.19.0.0/16", via=NODE_IP)
    try:
        settle(lambda: tcp(topo, client, target)[target] == client.addr,
               what="natOutgoing off")
    finally:
        topo.ip(outside, "route", "del", "198.19.0.0/16")


def test_floating_ip(lab):
    cluster, pods, outside = lab
    topo = cluster.topo
    sink = pods["sink"]
    node = node_of(cluster)
    fip = f"{FLOATING_IP}:7000"
    topo.route(outside, f"{FLOATING_IP}/32", via=NODE_IP)
    cluster.update_endpoint(sink, ipNATs=[{"internalIP": sink.addr, "externalIP": FLOATING_IP}])
    try:
        settle(lambda: tcp(topo, outside, fip)[fip] == OUTSIDE_IP, what="the DNAT")
        routes = topo.exec(node, "ip", "route", "show", "proto", "80").stdout
        assert f"{FLOATING_IP} dev {sink.host_iface}" in routes
        # the workload reaching its own floating IP is SNATed to it (hairpin)
        assert tcp(topo, sink, fip)[fip] == FLOATING_IP
    finally:
        cluster.update_endpoint(sink, ipNATs=[])
        settle(lambda: not tcp(topo, outside, fip)[fip], what="the DNAT to go")
        topo.ip(outside, "route", "del", f"{FLOATING_IP}/32")


def test_interface_that_appears_after_its_endpoint(lab):
    cluster, pods, _ = lab
    topo = cluster.topo
    node = node_of(cluster)
    iface, ip, mac = "calilate000001", "198.19.250.77", "ee:00:00:00:00:77"
    from pybgp.testing.cluster import resource

    wep = resource("WorkloadEndpoint", "node--a-k8s-late-eth0", {
        "orchestrator": "k8s", "node": "node-a", "pod": "late", "endpoint": "eth0",
        "ipNetworks": [f"{ip}/32"], "interfaceName": iface, "mac": mac,
        "profiles": ["kns.default"]}, namespace="default")
    status_key = ("/calico/felix/v2/no-region/host/node-a/workload/k8s/default%2flate/"
                  "endpoint/eth0")
    cluster.store.apply([wep])

    def status() -> str:
        item = cluster.kv.get(status_key)
        return json.loads(item.value)["status"] if item else ""

    try:
        settle(lambda: status() == "down", what="status down")
        assert ip not in topo.exec(node, "ip", "route").stdout
        topo.ip(node, "link", "add", iface, "type", "veth", "peer", "name", "latepeer0")
        topo.ip(node, "link", "set", "latepeer0", "up")
        topo.ip(node, "link", "set", iface, "up")
        settle(lambda: f"{ip} dev {iface} proto 80" in topo.exec(node, "ip", "route").stdout,
               what="the route once the interface is up")
        neigh = topo.exec(node, "ip", "neigh", "show", "dev", iface).stdout
        assert f"{ip} lladdr {mac} PERMANENT" in neigh
        settle(lambda: status() == "up", what="status up")
    finally:
        topo.ip(node, "link", "del", iface, check=False)
        cluster.store.delete("WorkloadEndpoint", wep.name, "default")
    settle(lambda: status() == "", what="the status key to go")


def test_a_cni_route_waits_for_its_endpoint(lab):
    """The route race at pod creation: the CNI plugin writes a pod's
    ``proto 80`` route before its endpoint. A resync in between keeps it;
    the endpoint then arrives and the route is never deleted (no flap); a
    route that nothing explains is deleted once the grace period is over."""
    from pybgp.agent.routegrace import CLEANUP_GRACE
    from pybgp.model import KINDS, key_for
    from pybgp.testing.cluster import resource

    cluster, pods, _ = lab
    topo = cluster.topo
    node = node_of(cluster)
    lost, found = ("caligrace0001", "198.19.250.61"), ("caligrace0002", "198.19.250.62")
    wep = resource("WorkloadEndpoint", "node--a-k8s-grace-eth0", {
        "orchestrator": "k8s", "node": "node-a", "pod": "grace", "endpoint": "eth0",
        "ipNetworks": [f"{found[1]}/32"], "interfaceName": found[0],
        "mac": "ee:00:00:00:00:62", "profiles": ["kns.default"]}, namespace="default")
    monitor = topo.popen(node, "ip", "-o", "monitor", "route", stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True)
    try:
        for i, (iface, ip) in enumerate((lost, found)):  # as the CNI plugin wires a pod
            topo.ip(node, "link", "add", iface, "type", "veth", "peer", "name", f"grpeer{i}")
            topo.ip(node, "link", "set", f"grpeer{i}", "up")
            topo.ip(node, "link", "set", iface, "up")
            topo.ip(node, "route", "add", f"{ip}/32", "dev", iface, "proto", "80")

        def kept(ip: str) -> bool:
            return ("keeping a workload route no endpoint explains yet "
                    f"prefix={ip}/32") in cluster.agent_log("node-a")

        # the links appearing and the 2 s route refresh make the agent read the
        # routes back; it says it keeps them, and they are there
        settle(lambda: kept(lost[1]) and kept(found[1]), timeout=CLEANUP_GRACE / 2,
               what="a route refresh to see the CNI routes")
        routes = topo.exec(node, "ip", "route", "show", "proto", "80").stdout
        assert f"{lost[1]} dev {lost[0]}" in routes and f"{found[1]} dev {found[0]}" in routes
        cluster.store.apply([wep])  # the pod's endpoint, late
        settle(lambda: "PERMANENT" in topo.exec(node, "ip", "neigh", "show", "dev",
                                                found[0]).stdout, what="the endpoint")
        settle(lambda: f"{lost[1]} " not in topo.exec(node, "ip", "route").stdout,
               timeout=CLEANUP_GRACE + 10, what="the unexplained route to go after the grace")
        assert ("deleted a workload route no endpoint explains "
                f"prefix={lost[1]}/32") in cluster.agent_log("node-a")
        time.sleep(2.5)  # another route refresh, well after the grace period
        assert f"{found[1]} dev {found[0]} proto 80" in topo.exec(node, "ip", "route").stdout
    finally:
        monitor.terminate()
        seen, _ = monitor.communicate(timeout=10)
        for iface, _ in (lost, found):
            topo.ip(node, "link", "del", iface, check=False)
        wep_key = key_for(KINDS["WorkloadEndpoint"], wep.name, "default")
        if cluster.kv.get(wep_key) is not None:  # (written unless the test failed first)
            cluster.store.delete("WorkloadEndpoint", wep.name, "default")
    deleted = [line for line in seen.splitlines() if line.startswith("Deleted")]
    assert any(f"{lost[1]} dev {lost[0]}" in line for line in deleted), seen  # it saw that
    assert not any(f"{found[1]} " in line for line in deleted), "the pod's route flapped"


def test_resync_repairs_hand_made_drift(lab):
    cluster, pods, _ = lab
    topo = cluster.topo
    node = node_of(cluster)
    web = pods["web"]
    before = cali_rules(topo, node)
    # both deletions and the read-back in one go: the 2 s refresh may repair
    # them at any moment after (that is what this test is for)
    after = topo.exec(node, "sh", "-c", "iptables -D cali-FORWARD 4 && "  # policy accepted
                      "iptables -t raw -D PREROUTING 1 && iptables-save").stdout  # a hook rule
    assert cali_rules_in(after) < before
    topo.ip(node, "route", "del", f"{web.addr}/32", "dev", web.host_iface)
    topo.exec(node, "ipset", "flush", "cali40all-ipam-pools")
    settle(lambda: cali_rules(topo, node) == before, what="the iptables refresh")
    settle(lambda: f"{web.addr} dev {web.host_iface}" in topo.exec(node, "ip", "route").stdout,
           what="the route")
    settle(lambda: "198.19.0.0/16" in topo.exec(node, "ipset", "list",
                                                "cali40all-ipam-pools").stdout,
           what="the ipset refresh")
    assert reach(topo, pods["client"], web, 80)


def test_invalid_policy_is_reported_and_skipped(lab):
    cluster, pods, _ = lab
    topo = cluster.topo
    web, client, other = pods["web"], pods["client"], pods["other"]
    apply(cluster, NP, "web-80", {"selector": "app == 'web'", "ingress": [
        {"action": "Allow", "protocol": "TCP", "source": {"selector": "app == 'client'"},
         "destination": {"ports": [80]}}]}, namespace="default")
    bad_key = "/calico/resources/v3/projectcalico.org/globalnetworkpolicies/broken"
    junk_key = "/calico/resources/v3/projectcalico.org/networkpolicies/default/junk"
    try:
        settle(lambda: not reach(topo, other, web, 80), what="web-80")
        cluster.etcd.put(bad_key, json.dumps({
            "apiVersion": "projectcalico.org/v3", "kind": GNP, "metadata": {"name": "broken"},
            "spec": {"selector": "app ==", "ingress": [{"action": "Deny"}]}}))
        cluster.etcd.put(junk_key, "{not json")
        settle(lambda: bad_key in cluster.agent_log("node-a")
               and junk_key in cluster.agent_log("node-a"), what="the error in the log")
        assert "skipping invalid resource" in cluster.agent_log("node-a")
        status, body = http_get(topo, node_of(cluster), 9091, "/metrics")
        assert status == 200 and "pybgp_agent_invalid_resources 2" in body
        assert http_get(topo, node_of(cluster), 9099, "/readiness")[0] == 200
        assert reach(topo, client, web, 80) and not reach(topo, other, web, 80)
    finally:
        cluster.kv.txn([], [Delete(bad_key), Delete(junk_key)])
        delete(cluster, NP, "web-80", "default")
    settle(lambda: reach(topo, other, web, 80), what="web-80 to go")


def test_rules_the_kernel_would_refuse_do_not_stop_the_agent(lab):
    """ICMPv6 by number with a type (``-p 58 -m icmp`` fails iptables-restore)
    and a set of nets holding 0.0.0.0/0 (hash:net refuses /0) are valid Calico:
    the policy applies, and the agent goes on applying."""
    cluster, pods, _ = lab
    topo = cluster.topo
    client, sink = pods["client"], pods["sink"]
    apply(cluster, GNP, "odd-rules", {"selector": "app == 'sink'", "ingress": [
        {"action": "Allow", "protocol": 58, "icmp": {"type": 128}},
        {"action": "Allow", "protocol": "TCP", "source": {"nets": ["0.0.0.0/0", "10.99.0.0/16"]},
         "destination": {"ports": [7000]}}]})
    try:
        settle(lambda: not ping(topo, client, sink), what="odd-rules")
        assert reach(topo, client, sink, 7000)
        assert http_get(topo, node_of(cluster), 9099, "/readiness")[0] == 200
    finally:
        delete(cluster, GNP, "odd-rules")
    settle(lambda: ping(topo, client, sink), what="odd-rules to go")


def test_failsafe_host_ports_stay_open_under_deny_all(lab):
    cluster, pods, outside = lab
    topo = cluster.topo
    node = node_of(cluster)
    listener = serve(topo, node, 22, 179, 2379)
    apply(cluster, GNP, "deny-all", {"selector": "all()", "types": ["Ingress", "Egress"]})
    try:
        settle(lambda: not reach(topo, pods["client"], pods["web"], 80), what="deny-all")
        got = tcp(topo, outside, *(f"{NODE_IP}:{p}" for p in (22, 179, 2379)))
        assert all(seen == OUTSIDE_IP for seen in got.values()), got
        # workloads reach the host only as DefaultEndpointToHostAction says (Drop)
        assert not reach(topo, pods["sink"], NODE_IP, 22)
    finally:
        delete(cluster, GNP, "deny-all")
        listener.kill()
    settle(lambda: reach(topo, pods["client"], pods["web"], 80), what="deny-all to go")


def test_health_and_metrics(lab):
    cluster, pods, _ = lab
    node = node_of(cluster)
    assert http_get(cluster.topo, node, 9099, "/liveness")[0] == 200
    status, body = http_get(cluster.topo, node, 9099, "/readiness")
    assert status == 200 and json.loads(body)["healthy"] is True
    status, body = http_get(cluster.topo, node, 9091, "/metrics")
    assert status == 200
    values = {line.split()[0]: float(line.split()[1]) for line in body.splitlines()
              if line and not line.startswith("#")}
    assert values["felix_active_local_endpoints"] == len(pods)
    assert values["felix_iptables_restore_calls"] >= 1
    assert values["felix_int_dataplane_apply_time_seconds_count"] >= 1
    assert values["felix_cluster_num_hosts"] == 1
    assert values['felix_int_dataplane_apply_time_seconds_bucket{le="+Inf"}'] >= 1
    assert http_get(cluster.topo, node, 9099, "/nothing")[0] == 404


def _pybgp(cluster, *args):
    import sys
    from pathlib import Path

    exe = str(Path(sys.executable).with_name("pybgp"))
    out = subprocess.run([exe, *args, "--etcd-endpoints", cluster.etcd.endpoint],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_show_endpoints_and_policy(lab):
    cluster, pods, _ = lab
    web = pods["web"]
    apply(cluster, GNP, "second", {"order": 20, "selector": "app == 'web'",
                                   "ingress": [{"action": "Deny", "protocol": "UDP"}]})
    apply(cluster, NP, "first", {"order": 5, "selector": "app == 'web'", "ingress": [
        {"action": "Allow", "protocol": "TCP", "destination": {"ports": [80]}}]},
          namespace="default")
    try:
        eps = json.loads(_pybgp(cluster, "show", "endpoints", "-o", "json"))
        mine = {e["interface"]: e for e in eps}
        assert set(mine) == {p.host_iface for p in pods.values()}
        assert mine[web.host_iface]["ingress_policies"] == ["np/default/first", "gnp/second"]
        assert mine[web.host_iface]["status"] == "up"
        text = _pybgp(cluster, "show", "endpoints")
        assert text.splitlines()[0].split()[:3] == ["NAMESPACE", "NAME", "NODE"]
        got = json.loads(_pybgp(cluster, "show", "policy", "web", "-o", "json"))
        chains = [p["chain"] for p in got["ingress"]["policies"]]
        assert chains == ["cali-pi-np/default/first", "cali-pi-gnp/second"]
        assert got["ingress"]["chain"] == f"cali-tw-{web.host_iface}"
        assert got["ingress"]["profiles"][0]["name"] == "kns.default"
        # what it shows is what the agent programmed
        node = node_of(cluster)
        settle(lambda: "-A cali-pi-gnp/second" in topo_save(cluster, node), what="the chains")
        for chain in chains:
            assert f":{chain} " in topo_save(cluster, node)
        text = _pybgp(cluster, "show", "policy", web.host_iface)
        assert "INGRESS" in text and "cali-pi-np/default/first" in text
    finally:
        delete(cluster, GNP, "second")
        delete(cluster, NP, "first", "default")


def topo_save(cluster, node) -> str:
    return cluster.topo.exec(node, "iptables-save").stdout


def test_kill_9_and_restart_keeps_rules_and_connections(lab):
    cluster, pods, _ = lab
    topo = cluster.topo
    node = node_of(cluster)
    web, client = pods["web"], pods["client"]
    apply(cluster, NP, "web-80", {"selector": "app == 'web'", "ingress": [
        {"action": "Allow", "protocol": "TCP", "source": {"selector": "app == 'client'"},
         "destination": {"ports": [80]}}]}, namespace="default")
    try:
        settle(lambda: not reach(topo, pods["other"], web, 80), what="web-80")
        time.sleep(1.0)  # let the status writes and refreshes settle
        before = cali_rules(topo, node)
        hold = topo.popen(client, *PROBE, "hold", f"{web.addr}:80", "--seconds", "6",
                          "--interval", "0.05", stdout=subprocess.PIPE, text=True)
        with sampling(topo, node) as samples:
            time.sleep(0.5)
            cluster.kill_agent("node-a")
            time.sleep(0.5)
            cluster.start_agent("node-a")
            wait_ready(cluster, "node-a")
            time.sleep(0.5)
        out, _ = hold.communicate(timeout=30)
        result = json.loads(out)
        assert hold.returncode == 0 and result["errors"] == [], result
        assert samples and all(before <= s for s in samples), \
            "a rule was missing while the agent restarted"
        assert cali_rules(topo, node) == before
        status, body = http_get(topo, node, 9091, "/metrics")
        values = {line.split()[0]: float(line.split()[1]) for line in body.splitlines()
                  if line and not line.startswith("#")}
        # the restarted agent found everything right and wrote nothing
        assert values["felix_iptables_restore_calls"] == 0
        assert values["felix_route_table_writes"] == 0
        assert reach(topo, client, web, 80) and not reach(topo, pods["other"], web, 80)
    finally:
        delete(cluster, NP, "web-80", "default")
    wait_until(lambda: reach(topo, pods["other"], web, 80), 10, "web-80 to go")
