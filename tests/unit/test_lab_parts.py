"""The lab's pure parts: the plan, the reports (tables, ping matrix, agents),
what each agent should program (the agent's own calculation), the SVG
picture, and the router configurations (checked by BIRD's and GoBGP's own
parsers)."""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pybgp.agent.inputs import Inputs
from pybgp.lab import agents, picture
from pybgp.lab.peers import bird_config, gobgp_config
from pybgp.lab.plan import (
    MAX_NODES,
    MAX_REFLECTORS,
    PEER_ADDRESS,
    REFLECTOR_CLUSTER_ID,
    SUN_PATH_MAX,
    Paths,
    Plan,
    PlanError,
    bgp_configuration,
    check_pod_name,
    make_plan,
    pod_labels,
)
from pybgp.lab.report import (
    AgentStatus,
    Matrix,
    matrix_pairs,
    missing_routes,
    node_status,
    nodes_table,
    parse_metrics,
    reflector_sessions_table,
    reflector_status,
    reflectors_table,
)
from pybgp.model import KEY_PREFIX
from pybgp.testing.names import check_node_address

SVG = "{http://www.w3.org/2000/svg}"


# ----- plan -------------------------------------------------------------------------
def test_plan_names_and_addresses_are_lab_ones() -> None:
    plan = make_plan(3, 2, "bird")
    assert plan.node_names == ["node-1", "node-2", "node-3"]
    assert [n.ip for n in plan.nodes] == ["198.18.0.11/24", "198.18.0.12/24", "198.18.0.13/24"]
    assert plan.nodes[1].pods == ("pod-2-1", "pod-2-2")
    assert all(check_node_address(n.ip) for n in plan.nodes)
    assert plan.expected_sessions("node-1") == 3  # two mesh, one peer
    assert make_plan(1, 0).expected_sessions("node-1") == 0
    assert Plan.from_dict(plan.to_dict()) == plan
    big = make_plan(200, 0)
    assert ipaddress.ip_interface(big.nodes[-1].ip).ip < ipaddress.ip_address("198.18.0.254")


def test_plan_with_reflectors_turns_the_mesh_off() -> None:
    plan = make_plan(3, 3, "bird", reflectors=2)
    assert not plan.mesh and bgp_configuration(plan)["nodeToNodeMeshEnabled"] is False
    assert make_plan(3, 3).mesh and bgp_configuration(make_plan(3, 3))["nodeToNodeMeshEnabled"]
    assert plan.reflector_names == ["rr-1", "rr-2"]
    assert [r.ip for r in plan.reflectors] == ["198.18.0.241/24", "198.18.0.242/24"]
    assert plan.expected_sessions("node-1") == 3  # two reflectors and the peer, no mesh
    assert plan.reflector_expected_sessions() == 3  # every node is a client
    assert plan.describe() == "3 nodes × 3 pods, 2 reflectors (mesh off), peer bird"
    assert make_plan(2, 1).describe() == "2 nodes × 1 pods, full mesh"
    assert Plan.from_dict(plan.to_dict()) == plan
    # every address a lab host's, none taken twice, the cluster id no host's
    most = make_plan(MAX_NODES, 0, "gobgp", reflectors=MAX_REFLECTORS)
    hosts = [n.ip for n in most.nodes] + [r.ip for r in most.reflectors]
    assert all(check_node_address(ip) for ip in hosts)
    addrs = [ip.split("/")[0] for ip in hosts] + [PEER_ADDRESS, "198.18.0.1"]
    assert len(set(addrs)) == len(addrs) and REFLECTOR_CLUSTER_ID not in addrs


@pytest.mark.parametrize("args, message", [
    ((0, 1), "--nodes 0"), ((201, 1), "--nodes 201"), ((2, -1), "--pods-per-node -1"),
    ((2, 51), "--pods-per-node 51"), ((2, 1, "frr"), "--peer 'frr'"),
    ((2, 1, None, "Bad"), "bad prefix"), ((2, 1, None, "lab", 9), "--reflectors 9"),
    ((2, 1, None, "lab", -1), "--reflectors -1"),
])
def test_plan_refuses_what_cannot_be_built(args, message) -> None:
    with pytest.raises(PlanError, match=message):
        make_plan(*args)


def test_pod_names_are_checked() -> None:
    plan = make_plan(2, 1)
    check_pod_name(plan, "node-1", "web", set())
    for node, pod, message in [("node-9", "web", "no node 'node-9'"),
                               ("node-1", "Web", "pod name"),
                               ("node-1", "a-very-long-pod-name", "at most 20"),
                               ("node-1", "pod-1-1", "exists"),
                               ("node-1", "node-2", "taken")]:
        with pytest.raises(PlanError, match=message):
            check_pod_name(plan, node, pod, {"pod-1-1"})
    with pytest.raises(PlanError, match="taken by a node, a reflector"):
        check_pod_name(make_plan(2, 1, reflectors=1), "node-1", "rr-1", set())


def test_socket_paths_must_fit(tmp_path: Path) -> None:
    plan = make_plan(12, 0)
    Paths(tmp_path).check(plan)
    deep = tmp_path / ("d" * (SUN_PATH_MAX - len(str(tmp_path)) - 10))
    with pytest.raises(PlanError, match="longer than 107 bytes"):
        Paths(deep).check(plan)
    owned = Paths(tmp_path).owned(plan)
    assert owned[-1] == tmp_path / "lab.json" and tmp_path / "node-12" in owned
    assert all(tmp_path in p.parents for p in owned)
    with_rr = make_plan(1, 0, reflectors=1)
    assert tmp_path / "rr-1" in Paths(tmp_path).owned(with_rr)



# ----- reports ----------------------------------------------------------------------
PROTOCOLS = [
    {"name": "Mesh_198_18_0_12", "proto": "BGP",
     "bgp": {"state": "Established", "neighbor_address": "198.18.0.12"}},
    {"name": "Global_198_18_0_254", "proto": "BGP",
     "bgp": {"state": "Active", "neighbor_address": "198.18.0.254"}},
    {"name": "kernel1", "proto": "Kernel", "bgp": None},
]
ROUTES = [
    {"prefix": "198.19.1.0/26", "dest": "blackhole", "source": "static", "primary": True},
    {"prefix": "198.19.1.0/32", "dest": "dev", "source": "inherit", "primary": True},
    {"prefix": "198.19.2.0/26", "dest": "via", "source": "BGP", "primary": True},
    {"prefix": "198.19.3.0/26", "dest": "via", "source": "BGP", "primary": False},
]


def test_node_status_from_the_speakers_json() -> None:
    st = node_status("node-1", "198.18.0.11", PROTOCOLS, ROUTES)
    assert st.sessions == {"Mesh_198_18_0_12": "Established", "Global_198_18_0_254": "Active"}
    assert st.established == 1
    assert (st.blocks, st.local, st.learned) == (["198.19.1.0/26"], ["198.19.1.0/32"],
                                                 ["198.19.2.0/26"])
    text = nodes_table([st], {"node-1": 2})
    assert "1/2" in text and "Global_198_18_0_254: Active" in text


RR_PROTOCOLS = [
    {"name": "Node_198_18_0_11", "proto": "BGP", "stats": {"imported": 1, "exported": 2},
     "bgp": {"state": "Established", "neighbor_address": "198.18.0.11"}},
    {"name": "Node_198_18_0_12", "proto": "BGP", "stats": {"imported": 1, "exported": 2},
     "bgp": {"state": "Established", "neighbor_address": "198.18.0.12"}},
    {"name": "Node_198_18_0_13", "proto": "BGP", "stats": {"imported": 0, "exported": 0},
     "bgp": {"state": "Active", "neighbor_address": "198.18.0.13"}},
]
RR_ROUTES = [{"prefix": "198.19.1.0/26", "primary": True},
             {"prefix": "198.19.1.0/26", "primary": False},
             {"prefix": "198.19.2.0/26", "primary": True}]


def test_reflector_status_and_its_tables() -> None:
    rr = reflector_status("rr-1", "198.18.0.241", RR_PROTOCOLS, RR_ROUTES)
    assert (rr.established, rr.prefixes, rr.paths, rr.reflected) == (2, 2, 3, 4)
    assert rr.states == {"198.18.0.11": "Established", "198.18.0.12": "Established",
                         "198.18.0.13": "Active"}
    assert rr.to_dict()["sessions"] == rr.states
    rows = reflectors_table([rr], 3).splitlines()
    assert rows[1].split() == ["rr-1", "198.18.0.241", "2/3", "2", "3", "4",
                               "Node_198_18_0_13:", "Active"]
    # each node's view of its session to the reflector
    up = node_status("node-1", "198.18.0.11", [
        {"name": "Global_198_18_0_241", "proto": "BGP",
         "bgp": {"state": "Established", "neighbor_address": "198.18.0.241"}}], [])
    down = node_status("node-2", "198.18.0.12", [
        {"name": "Global_198_18_0_241", "proto": "BGP",
         "bgp": {"state": "Connect", "neighbor_address": "198.18.0.241"}}], [])
    none = node_status("node-3", "198.18.0.13", [], [])
    text = reflector_sessions_table([up, down, none], [rr])
    assert [line.split()[1:] for line in text.splitlines()[1:]] == [["✓"], ["✗", "Connect"],
                                                                   ["-"]]


def test_missing_routes_names_what_each_node_lacks() -> None:
    a = node_status("a", "198.18.0.11", [], ROUTES)  # learned 198.19.2.0/26 only
    b = node_status("b", "198.18.0.12", [], [
        {"prefix": "198.19.2.0/26", "dest": "blackhole", "source": "static", "primary": True}])
    assert missing_routes([a, b]) == {"b": ["198.19.1.0/26"]}
    b.learned.append("198.19.1.0/26")
    assert missing_routes([a, b]) == {}


def test_matrix_renders_every_measured_pair() -> None:
    labels = ["p1", "p2", "p3"]
    pairs = matrix_pairs(labels)
    assert len(pairs) == 6 and ("p1", "p1") not in pairs
    m = Matrix(labels, {p: p != ("p3", "p1") for p in pairs})
    text = m.render()
    assert text.splitlines()[0].split() == ["FROM", "\\", "TO", "1", "2", "3"]
    assert text.splitlines()[3].split() == ["3", "p3", "✗", "✓", "·"]
    assert "5/6 pairs answer" in text
    assert not m.all_ok and m.failed == [("p3", "p1")]
    assert m.to_dict()["failed"] == [["p3", "p1"]]
    partial = Matrix(labels, {("p1", "p2"): True})
    assert partial.cell("p2", "p1") == "?" and not Matrix(labels, {}).all_ok


# ----- agents -----------------------------------------------------------------------
def test_agent_status_is_settled_only_when_ready_and_counts_match() -> None:
    ok = AgentStatus("node-1", answered=True, ready=True, detail="ok", endpoints=2,
                     policies=1, want_endpoints=2, want_policies=1)
    assert ok.settled and ok.state == "ready" and ok.problem() == ""
    behind = AgentStatus("node-1", answered=True, ready=True, endpoints=2, policies=0,
                         want_endpoints=2, want_policies=1)
    assert not behind.settled
    assert behind.problem() == "agent behind etcd: 2/2 endpoints, 0/1 policies"
    syncing = AgentStatus("node-1", answered=True, detail="datastore not in sync")
    assert (syncing.state, syncing.problem()) == ("not ready",
                                                  "agent not ready: datastore not in sync")
    down = AgentStatus("node-1", detail="no answer on 127.0.0.1:9099 (Connection refused)")
    assert down.state == "down" and not down.settled and "Connection refused" in down.problem()
    assert down.to_dict()["endpoints"] is None and ok.to_dict()["settled"] is True


def test_parse_metrics_reads_the_agents_text() -> None:
    text = ("# HELP felix_active_local_endpoints Number of active endpoints on this host.\n"
            "# TYPE felix_active_local_endpoints gauge\n"
            "felix_active_local_endpoints 3\n"
            'felix_int_dataplane_apply_time_seconds_bucket{le="+Inf"} 7\n'
            "felix_int_dataplane_apply_time_seconds_sum 0.125\n"
            "garbage line here\n\n")
    assert parse_metrics(text) == {
        "felix_active_local_endpoints": 3.0,
        'felix_int_dataplane_apply_time_seconds_bucket{le="+Inf"}': 7.0,
        "felix_int_dataplane_apply_time_seconds_sum": 0.125}


def test_nodes_table_shows_each_agent() -> None:
    st = node_status("node-1", "198.18.0.11", PROTOCOLS[:1], ROUTES)
    down = node_status("node-2", "198.18.0.12", [], [])
    down.error = "speaker not answering"
    table = nodes_table([st, down], {"node-1": 1, "node-2": 1}, {
        "node-1": AgentStatus("node-1", answered=True, ready=True, endpoints=1, policies=1,
                              want_endpoints=1, want_policies=2)})
    head, row1, row2 = table.splitlines()
    assert head.split()[6:] == ["AGENT", "ENDPOINTS", "POLICIES", "NOT", "UP"]
    assert row1.split()[6:9] == ["ready", "1/1", "1/2"] and "agent behind etcd" in row1
    assert row2.split()[6:9] == ["-", "-", "-"] and "speaker not answering" in row2
    assert "AGENT" not in nodes_table([st], {"node-1": 1})  # without agents: as before


def _put(inputs: Inputs, plural: str, kind: str, name: str, spec: dict, ns: str | None = None,
         labels: dict | None = None) -> None:
    meta = {"name": name, **({"namespace": ns} if ns else {}), "labels": labels or {}}
    key = f"{KEY_PREFIX}{plural}/{ns + '/' if ns else ''}{name}"
    inputs.apply(key, json.dumps({"apiVersion": "projectcalico.org/v3", "kind": kind,
                                  "metadata": meta, "spec": spec}).encode())


def test_what_each_agent_should_program_is_the_agents_calculation() -> None:
    inputs = Inputs("")
    _put(inputs, "profiles", "Profile", "kns.default",
         {"ingress": [{"action": "Allow"}], "egress": [{"action": "Allow"}]})
    for i, (node, pod) in enumerate([("node-1", "pod-1-1"), ("node-2", "pod-2-1"),
                                     ("node-2", "pod-2-2")]):
        name = f"{node.replace('-', '--')}-k8s-{pod.replace('-', '--')}-eth0"
        _put(inputs, "workloadendpoints", "WorkloadEndpoint", name, {
            "orchestrator": "k8s", "node": node, "pod": pod, "endpoint": "eth0",
            "ipNetworks": [f"198.19.0.{i + 1}/32"], "interfaceName": f"cali{i:011d}",
            "mac": "ee:00:00:00:00:01", "profiles": ["kns.default"]},
            ns="default", labels=pod_labels(node, pod))
    assert agents.expected(inputs, ["node-1", "node-2", "node-3"]) == {
        "node-1": (1, 0), "node-2": (2, 0), "node-3": (0, 0)}
    # one policy on one pod of node-2 (by the lab's labels), one for every pod;
    # one in another namespace applies nowhere
    _put(inputs, "networkpolicies", "NetworkPolicy", "one", {
        "selector": "pod == 'pod-2-1'", "types": ["Ingress"],
        "ingress": [{"action": "Allow", "source": {"selector": "node == 'node-1'"}}]},
        ns="default")
    _put(inputs, "globalnetworkpolicies", "GlobalNetworkPolicy", "all", {
        "selector": "all()", "types": ["Egress"], "egress": [{"action": "Allow"}]})
    _put(inputs, "networkpolicies", "NetworkPolicy", "elsewhere", {
        "selector": "all()", "types": ["Ingress"], "ingress": [{"action": "Allow"}]},
        ns="prod")
    assert agents.expected(inputs, ["node-1", "node-2"]) == {"node-1": (1, 1),
                                                             "node-2": (2, 2)}


# ----- picture ----------------------------------------------------------------------
def test_svg_shows_nodes_sessions_and_peers() -> None:
    a = node_status("node-1", "198.18.0.11", PROTOCOLS, ROUTES)
    b = node_status("node-2", "198.18.0.12", [
        {"name": "Mesh_198_18_0_11", "proto": "BGP",
         "bgp": {"state": "Established", "neighbor_address": "198.18.0.11"}}], [])
    peer = picture.Peer("peer", "198.18.0.254", "BIRD 2")
    doc = picture.render([a, b], {"node-1": [("web<1>", "198.19.1.0")]}, [peer],
                         title="lab & co")
    root = ET.fromstring(doc)  # well-formed, with the text escaped
    assert root.tag == f"{SVG}svg"
    groups = {g.get("id"): g for g in root.iter(f"{SVG}g")}
    assert set(groups) == {"node-node-1", "node-node-2", "peer-peer"}
    texts = [t.text for t in groups["node-node-1"].iter(f"{SVG}text")]
    assert texts == ["node-1", "198.18.0.11", "block 198.19.1.0/26", "web<1>  198.19.1.0"]
    lines = {p.find(f"{SVG}title").text.split(":")[0]: p.get("stroke")
             for p in root.iter(f"{SVG}path")}
    assert lines == {"node-1 — node-2": picture.UP, "node-1 — peer": picture.DOWN}


def test_svg_draws_reflectors_and_only_the_sessions_reported() -> None:
    """Mesh off: no node-to-node line; a line is green only when both ends say
    Established (the reflector's own view counts)."""
    def node(name: str, ip: str, state: str):
        return node_status(name, ip, [
            {"name": "Global_198_18_0_241", "proto": "BGP",
             "bgp": {"state": state, "neighbor_address": "198.18.0.241"}}], [])

    nodes = [node("node-1", "198.18.0.11", "Established"),
             node("node-2", "198.18.0.12", "Established"),
             node("node-3", "198.18.0.13", "Active")]
    rr = picture.Peer("rr-1", "198.18.0.241", "reflector",
                      {"198.18.0.11": "Established", "198.18.0.12": "Active",
                       "198.18.0.13": "Active", "198.18.0.99": "Established"}, reflector=True)
    bird = picture.Peer("peer", "198.18.0.254", "BIRD 2", {})
    root = ET.fromstring(picture.render(nodes, {}, [rr, bird]))
    groups = {g.get("id"): g.get("class") for g in root.iter(f"{SVG}g")}
    assert groups == {"node-node-1": "node", "node-node-2": "node", "node-node-3": "node",
                      "reflector-rr-1": "reflector", "peer-peer": "peer"}
    lines = {p.find(f"{SVG}title").text.split(":")[0]: p.get("stroke")
             for p in root.iter(f"{SVG}path")}
    assert lines == {"node-1 — rr-1": picture.UP, "node-2 — rr-1": picture.DOWN,
                     "node-3 — rr-1": picture.DOWN}
    # the centre row fits between the nodes: no pill overlaps a node's box
    rects = {g.get("id"): g.find(f"{SVG}rect") for g in root.iter(f"{SVG}g")}

    def box(r):
        x, y = float(r.get("x")), float(r.get("y"))
        return x, y, x + float(r.get("width")), y + float(r.get("height"))

    for centre in ("reflector-rr-1", "peer-peer"):
        cx0, cy0, cx1, cy1 = box(rects[centre])
        for n in ("node-node-1", "node-node-2", "node-node-3"):
            x0, y0, x1, y1 = box(rects[n])
            assert cx1 <= x0 or x1 <= cx0 or cy1 <= y0 or y1 <= cy0, (centre, n)


def test_svg_sessions_go_around_the_boxes_they_do_not_end_at() -> None:
    """Five nodes, two reflectors and a router at the centre: no session's
    curve passes through a node box or a pill other than its own two ends."""
    centre = [("rr-1", "198.18.0.241"), ("rr-2", "198.18.0.242"), ("peer", "198.18.0.254")]
    nodes = [node_status(f"node-{i}", f"198.18.0.{10 + i}", [
        {"name": f"Global_{a}", "proto": "BGP",
         "bgp": {"state": "Established", "neighbor_address": a}} for _, a in centre],
        [{"prefix": "198.19.1.0/26", "dest": "blackhole"}]) for i in range(1, 6)]
    peers = [picture.Peer(n, a, "reflector", reflector=n != "peer") for n, a in centre]
    root = ET.fromstring(picture.render(nodes, {}, peers))
    boxes = {}
    for g in root.iter(f"{SVG}g"):
        r = g.find(f"{SVG}rect")
        x, y = float(r.get("x")), float(r.get("y"))
        boxes[g.get("id").split("-", 1)[1]] = (x, y, x + float(r.get("width")),
                                               y + float(r.get("height")))
    paths = list(root.iter(f"{SVG}path"))
    assert len(paths) == 15
    for path in paths:
        ends = path.find(f"{SVG}title").text.split(":")[0].split(" — ")
        _, x1, y1, _, cx, cy, x2, y2 = path.get("d").split()
        a, c, b = (float(x1), float(y1)), (float(cx), float(cy)), (float(x2), float(y2))
        hit = [n for n, box in boxes.items()
               if n not in ends and picture._crosses(a, c, b, box, margin=0)]
        assert hit == [], (ends, hit)


def test_svg_of_one_node_and_no_sessions() -> None:
    root = ET.fromstring(picture.render([node_status("n", "198.18.0.11", [], [])], {}))
    assert not list(root.iter(f"{SVG}path"))


# ----- router configurations, parsed by the routers themselves -------------------------------
def _need(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        pytest.fail(f"{binary} not found: install Debian's bird2 / gobgpd", pytrace=False)
    return path


def test_bird_accepts_its_config(tmp_path: Path) -> None:
    conf = tmp_path / "bird.conf"
    conf.write_text(bird_config(["198.18.0.11", "198.18.0.12"]))
    proc = subprocess.run([_need("bird"), "-p", "-c", str(conf)], capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert conf.read_text().count("protocol bgp node_") == 2


def test_gobgp_accepts_its_config(tmp_path: Path) -> None:
    conf = tmp_path / "gobgpd.toml"
    conf.write_text(gobgp_config(["198.18.0.11", "198.18.0.12"]))
    proc = subprocess.run([_need("gobgpd"), "-f", str(conf), "-d"], capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert conf.read_text().count("[[neighbors]]") == 2
