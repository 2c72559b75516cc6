"""`pybgp ipam` rendering and commands over an in-memory store (no root, no etcd)."""

from __future__ import annotations

import json

import pytest

from pybgp.cli import ipam as cli
from pybgp.cli.main import main
from pybgp.datastore.memory import MemoryKV
from pybgp.datastore.resources import ResourceStore
from pybgp.ipam import IPAM, BlockUsage, Pool, PoolUsage, Problem, Usage, usage
from pybgp.model import parse_resource

POOL_DOC = {"apiVersion": "projectcalico.org/v3", "kind": "IPPool",
            "metadata": {"name": "pool1"}, "spec": {"cidr": "198.19.0.0/16"}}


def usage_fixture() -> Usage:
    return Usage(
        pools=[PoolUsage("pool1", "198.19.0.0/16", 65536, 3, 65533, 2, False)],
        blocks=[BlockUsage("198.19.0.0/26", "pool1", "node1", "confirmed", 64, 2, 62, 0),
                BlockUsage("198.19.0.64/26", "pool1", "node2", "confirmed", 64, 1, 63, 0),
                BlockUsage("198.18.9.0/26", None, "node3", None, 64, 64, 0, 0)])


def test_pool_table_is_calicoctl_shaped():
    text = cli.render_usage(usage_fixture())
    assert text == (
        "+----------+---------------+-----------+------------+--------------+\n"
        "| GROUPING |     CIDR      | IPS TOTAL | IPS IN USE |   IPS FREE   |\n"
        "+----------+---------------+-----------+------------+--------------+\n"
        "| IP Pool  | 198.19.0.0/16 |     65536 | 3 (0%)     | 65533 (100%) |\n"
        "+----------+---------------+-----------+------------+--------------+\n"
    )


def test_show_blocks_rows_follow_their_pool_and_orphans_come_last():
    rows = cli.usage_rows(usage_fixture(), show_blocks=True)
    assert [r[:2] for r in rows] == [("IP Pool", "198.19.0.0/16"), ("Block", "198.19.0.0/26"),
                                     ("Block", "198.19.0.64/26"), ("Block", "198.18.9.0/26")]
    assert rows[1][2:] == ("64", "2 (3%)", "62 (97%)")
    assert rows[3][2:] == ("64", "64 (100%)", "0 (0%)")
    lines = cli.render_usage(usage_fixture(), True).splitlines()
    assert lines[4] == "| Block    | 198.19.0.0/26  |        64 | 2 (3%)     | 62 (97%)     |"
    assert len({len(line) for line in lines}) == 1  # every line equally wide


def test_big_numbers_use_go_g_format():
    u = Usage([PoolUsage("big", "198.0.0.0/8", 1 << 24, 0, 1 << 24, 0, False)], [])
    assert cli.usage_rows(u, False)[0][2:] == ("1.6777e+07", "0 (0%)", "1.6777e+07 (100%)")


def test_empty_table_and_headings_centred_with_extra_space_right():
    text = cli.render_table(("A", "BBBB"), [])
    assert text.splitlines()[1] == "| A | BBBB |"
    assert cli.render_table(("AB",), [("abcde",)]).splitlines()[1] == "|  AB   |"


def test_usage_json_has_pools_and_blocks():
    doc = cli.usage_json(usage_fixture())
    assert doc["pools"][0] == {"name": "pool1", "cidr": "198.19.0.0/16", "total": 65536,
                               "inUse": 3, "free": 65533, "blocks": 2, "disabled": False}
    assert doc["blocks"][2]["pool"] is None and doc["blocks"][0]["node"] == "node1"


def test_problem_lines_and_summary():
    probs = [Problem("leaked-address", "198.19.0.5 is allocated to handle h but no endpoint "
                     "uses it", ("198.19.0.5", "h"))]
    text = cli.render_problems(probs, {"blocks": 1, "endpoints": 0})
    assert text.splitlines() == [
        "leaked-address: 198.19.0.5 is allocated to handle h but no endpoint uses it",
        "Checked 1 blocks, 0 endpoints: 1 problem(s) found"]
    assert cli.render_problems([], {"blocks": 0}).endswith("no problems found\n")
    assert cli.problems_json(probs, {"blocks": 1})["summary"] == {"blocks": 1, "problems": 1}


# ------------------------------------------------------------- commands, in-memory store
@pytest.fixture
def kv(monkeypatch) -> MemoryKV:
    store = MemoryKV()
    ResourceStore(store).create(parse_resource(POOL_DOC))
    monkeypatch.setattr(cli, "open_kv", lambda args: store)
    return store


def add_wep(kv: MemoryKV, cid: str, ip: str) -> None:
    doc = {"apiVersion": "projectcalico.org/v3", "kind": "WorkloadEndpoint",
           "metadata": {"name": f"node1-k8s-{cid}-eth0", "namespace": "default"},
           "spec": {"orchestrator": "k8s", "node": "node1", "pod": cid, "endpoint": "eth0",
                    "containerID": cid, "ipNetworks": [f"{ip}/32"],
                    "interfaceName": "cali0123456789a"}}
    ResourceStore(kv).create(parse_resource(doc))


def assign(kv: MemoryKV, cid: str) -> str:
    pools = cli.read_pools(kv)
    ipam = IPAM(kv, "node1", block_order="sequential")
    return str(ipam.auto_assign(f"net1.{cid}", pools=pools)[0].ip)


def test_show_command(kv, capsys):
    assign(kv, "c1")
    assert main(["ipam", "show", "--show-blocks"]) == 0
    out = capsys.readouterr().out
    assert "| IP Pool  | 198.19.0.0/16 |" in out and "| Block    | 198.19.0.0/26 |" in out
    assert "1 (2%)" in out
    assert main(["ipam", "show", "-o", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["pools"][0]["inUse"] == 1


def test_check_command_exit_status(kv, capsys):
    ip = assign(kv, "c1")
    assert main(["ipam", "check"]) == 1  # allocated, no endpoint: leaked
    out = capsys.readouterr().out
    assert f"leaked-address: {ip}" in out and "1 problem(s) found" in out
    add_wep(kv, "c1", ip)  # the handle net1.c1 matches the WEP's containerID c1
    assert main(["ipam", "check", "-o", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["problems"] == [] and doc["summary"]["endpoints"] == 1


def test_release_refuses_an_address_in_use(kv, capsys):
    ip = assign(kv, "c1")
    add_wep(kv, "c1", ip)
    assert main(["ipam", "release", "--ip", ip]) == 1
    err = capsys.readouterr().err
    assert "in use by WorkloadEndpoint default/node1-k8s-c1-eth0" in err
    assert "nothing was released" in err
    assert usage(kv, [Pool("198.19.0.0/16", name="pool1")]).pools[0].in_use == 1
    assert main(["ipam", "release", "--ip", ip, "--force"]) == 0
    assert f"Successfully released {ip}" in capsys.readouterr().out


def test_release_free_and_unallocated(kv, capsys):
    ip = assign(kv, "c1")
    assert main(["ipam", "release", "--ip", ip, "--ip", "198.19.200.1"]) == 1
    out = capsys.readouterr()
    assert f"Successfully released {ip}" in out.out
    assert "198.19.200.1 is not allocated" in out.err
    assert main(["ipam", "check"]) == 0


def test_release_rejects_a_non_address(kv, capsys):
    assert main(["ipam", "release", "--ip", "nope"]) == 1
    assert "'nope' is not an IP address" in capsys.readouterr().err
