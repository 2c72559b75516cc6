"""BIRD 1.6 control-socket replies, byte for byte, and their parsers' view
(calicoctl's row splitting, prometheus-bird-exporter's regexes)."""

from __future__ import annotations

import re

import pytest
from speaker_samples import GLOBAL_DOWN, MESH, OTHERS

from pybgp.speaker.birdfmt import (
    SYNTAX_ERROR,
    WELCOME,
    BgpStatus,
    ParseError,
    ProtocolInfo,
    ShowProtocols,
    ShowRoute,
    ShowStatus,
    bird_time,
    parse_command,
    render_protocols,
    render_status,
    reply,
)
from pybgp.speaker.birdroutes import BgpAttrs, RouteLine, render_routes
from pybgp.speaker.calicoctl_status import calicoctl_status_table, wrap_words

ALL = [*OTHERS, MESH, GLOBAL_DOWN]


@pytest.mark.parametrize("line, expected", [
    ("show status", ShowStatus()),
    ("show protocols", ShowProtocols()),
    ("show proto", ShowProtocols()),
    ("sh pro all", ShowProtocols(all=True)),
    ("show protocols all Mesh_198_18_0_12", ShowProtocols(all=True, name="Mesh_198_18_0_12")),
    ('show protocols "Mesh*"', ShowProtocols(pattern="Mesh*")),
    ("sh ro", ShowRoute()),
    ("show route all", ShowRoute(all=True)),
    ("show route for 198.19.1.7", ShowRoute(for_addr="198.19.1.7")),
    ("show route 198.19.1.64/26 all", ShowRoute(prefix="198.19.1.64/26", all=True)),
    ("show route count", ShowRoute(count=True)),
    ("show route protocol kernel1 count", ShowRoute(protocol="kernel1", count=True)),
    ("show route protocol static1 stats", ShowRoute(protocol="static1", stats=True)),
    ("sh r", ShowRoute()),
    ("sh i", ParseError(SYNTAX_ERROR)),  # interfaces: a real command pybgp does not serve
    ("show route primary", ShowRoute(primary=True)),
    ("   ", None),
])
def test_parse_commands(line: str, expected: object) -> None:
    assert parse_command(line) == expected


@pytest.mark.parametrize("line", ["bogus", "show", "show s", "show foo", "show status now",
                                  "show protocols x y", "show route for",
                                  "show route 1.2.3.4 5.6.7.8",
                                  "show route protocol", "show protocols 1abc",
                                  "show route pro static1", "sh ro a",
                                  "configure", "show route table master"])
def test_parse_errors(line: str) -> None:
    res = parse_command(line)
    assert isinstance(res, ParseError) and res.reply == SYNTAX_ERROR == "9001 syntax error\n"


def test_unterminated_string() -> None:
    res = parse_command('show protocols "Mesh')
    assert isinstance(res, ParseError) and res.reply.startswith("9001 ")


def test_welcome_and_framing() -> None:
    assert WELCOME == "0001 BIRD 1.6.8 ready.\n"
    assert reply([(1, "a"), (1, "b"), (2, "c")], (13, "x")) == "0001-a\n b\n0002-c\n0013 x\n"


def test_status() -> None:
    assert render_status("198.18.0.11", "2026-05-01 10:00:00", "2026-05-01 09:00:00",
                         "2026-05-01 09:00:01") == (
        "1000-BIRD 1.6.8\n"
        "1011-Router ID is 198.18.0.11\n"
        " Current server time is 2026-05-01 10:00:00\n"
        " Last reboot on 2026-05-01 09:00:00\n"
        " Last reconfiguration on 2026-05-01 09:00:01\n"
        "0013 Daemon is up and running\n")


def test_show_protocols_exact() -> None:
    assert render_protocols(ALL, ShowProtocols()) == (
        "2002-name     proto    table    state  since       info\n"
        "1002-static1  Static   master   up     2017-07-25  \n"
        " kernel1  Kernel   master   up     2017-07-25  \n"
        " device1  Device   master   up     2017-07-25  \n"
        " direct1  Direct   master   up     2017-07-25  \n"
        " Mesh_198_18_0_12 BGP      master   up     05:12:02    Established   \n"
        " Global_198_18_0_1 BGP      master   start  2017-07-25  Active        "
        "Socket: Connection refused\n"
        "0000 \n")


def test_show_protocols_all_exact() -> None:
    assert render_protocols(ALL, ShowProtocols(all=True, name="Mesh_198_18_0_12")) == (
        "2002-name     proto    table    state  since       info\n"
        "1002-Mesh_198_18_0_12 BGP      master   up     05:12:02    Established   \n"
        "1006-  Description:    Connection to BGP peer\n"
        "   Preference:     100\n"
        "   Input filter:   ACCEPT\n"
        "   Output filter:  packet_bgp\n"
        "   Routes:         1 imported, 2 exported, 1 preferred\n"
        "   Route change stats:     received   rejected   filtered    ignored   accepted\n"
        "     Import updates:              1          0          0          0          1\n"
        "     Import withdraws:            0          0        ---          0          0\n"
        "     Export updates:              3          1          0        ---          2\n"
        "     Export withdraws:            0        ---        ---        ---          0\n"
        "   BGP state:          Established\n"
        "     Neighbor address: 198.18.0.12\n"
        "     Neighbor AS:      64512\n"
        "     Neighbor ID:      198.18.0.12\n"
        "     Neighbor caps:    refresh restart-able AS4\n"
        "     Session:          internal multihop AS4\n"
        "     Source address:   198.18.0.11\n"
        "     Hold timer:       215/240\n"
        "     Keepalive timer:  43/80\n"
        " \n"
        "0000 \n")


def test_show_protocols_all_down_peer() -> None:
    text = render_protocols(ALL, ShowProtocols(all=True, name="Global_198_18_0_1"))
    assert "     Connect delay:    3/5\n" in text
    assert "     Last error:       Socket: Connection refused\n" in text
    assert "Neighbor ID" not in text


def test_protocol_errors() -> None:
    assert render_protocols(ALL, ShowProtocols(name="Nope")) == "9002 Nope is not a protocol\n"
    assert render_protocols(ALL, ShowProtocols(pattern="Node_*")) == "8003 No protocols match\n"
    assert render_protocols([], ShowProtocols()) == "8003 No protocols match\n"
    two = render_protocols(ALL, ShowProtocols(pattern="*1"))
    assert two.count("\n") == 7 and "Global_198_18_0_1" in two


def test_prometheus_bird_exporter_regexes_match() -> None:
    """The exporter's patterns (parser/parser.go) find our fields."""
    text = render_protocols(ALL, ShowProtocols(all=True))
    proto_re = re.compile(r"^(?:1002\-)?([^\s]+)\s+(MRT|BGP|BFD|OSPF|RPKI|RIP|RAdv|Pipe|Perf|"
                          r"Direct|Babel|Device|Kernel|Static)\s+([^\s]+)\s+([^\s]+)\s+"
                          r"(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}|[^\s]+)(?:\s+(.*?))?$")
    routes_re = re.compile(r"^\s+Routes:\s+(\d+) imported, (?:(\d+) filtered, )?(\d+) exported"
                           r"(?:, (\d+) preferred)?")
    lines = [ln.rstrip(" ") for ln in text.splitlines()]
    assert proto_re.match(lines[1]) is not None
    assert [m.groups() for ln in lines if (m := routes_re.match(ln))][4] == ("1", None, "2", "1")


def test_route_rows_exact() -> None:
    routes = [
        RouteLine("198.19.1.64/26", "Mesh_198_18_0_12", "05:12:02", "via", "198.18.0.12",
                  "eth0", bgp=BgpAttrs(next_hop="198.18.0.12")),
        RouteLine("198.19.1.64/26", "Mesh_198_18_0_13", "05:12:03", "via", "198.18.0.13",
                  "eth0", primary=False, bgp=BgpAttrs(next_hop="198.18.0.13", med=5)),
        RouteLine("198.19.0.0/26", "static1", "2017-07-25", "blackhole", preference=200,
                  source="static"),
        RouteLine("198.19.0.7/32", "kernel1", "2017-08-05", "dev", iface="cali4712b101c8e",
                  preference=10, source="inherit"),
    ]
    assert render_routes(routes, ShowRoute()) == (
        "1007-198.19.1.64/26     via 198.18.0.12 on eth0 [Mesh_198_18_0_12 05:12:02] * "
        "(100/0) [i]\n"
        "                    via 198.18.0.13 on eth0 [Mesh_198_18_0_13 05:12:03] (100/0) [i]\n"
        " 198.19.0.0/26      blackhole [static1 2017-07-25] * (200)\n"
        " 198.19.0.7/32      dev cali4712b101c8e [kernel1 2017-08-05] * (10)\n"
        "0000 \n")
    assert render_routes(routes, ShowRoute(count=True)) == "0014 4 of 4 routes for 3 networks\n"
    assert render_routes(routes, ShowRoute(protocol="static1", count=True)) == (
        "0014 1 of 4 routes for 3 networks\n")
    assert render_routes(routes, ShowRoute(for_addr="198.19.1.70")).startswith(
        "1007-198.19.1.64/26 ")
    assert render_routes(routes, ShowRoute(for_addr="198.19.9.9")) == (
        "8001 Network not in table\n")
    assert render_routes(routes, ShowRoute(prefix="198.19.1.0/26")) == (
        "8001 Network not in table\n")
    assert render_routes(routes, ShowRoute(protocol="x"), ["static1"]) == (
        "9001 x is not a protocol\n")
    assert render_routes([], ShowRoute()) == "0000 \n"
    primary = render_routes(routes, ShowRoute(primary=True))
    assert "Mesh_198_18_0_13" not in primary


def test_route_all_details() -> None:
    r = RouteLine("198.19.4.0/26", "Global_198_18_0_1", "05:00:00", "via", "198.18.0.1",
                  "eth0", from_address="198.18.0.5",
                  bgp=BgpAttrs(origin="incomplete", as_path=(64513, 64600), as_sets=((1, 2),),
                               next_hop="198.18.0.1", local_pref=100, med=10,
                               communities=((64512, 100),), originator_id="198.18.0.30",
                               cluster_list=("198.18.0.5",), stale=True))
    assert render_routes([r], ShowRoute(all=True)) == (
        "1007-198.19.4.0/26      via 198.18.0.1 on eth0 [Global_198_18_0_1 05:00:00 from "
        "198.18.0.5] * (100s/0) [AS64600?]\n"
        "1008-\tType: BGP unicast univ\n"
        "1012-\tBGP.origin: Incomplete\n"
        " \tBGP.as_path: 64513 64600 { 1 2 }\n"
        " \tBGP.next_hop: 198.18.0.1\n"
        " \tBGP.med: 10\n"
        " \tBGP.local_pref: 100\n"
        " \tBGP.community: (64512,100)\n"
        " \tBGP.originator_id: 198.18.0.30\n"
        " \tBGP.cluster_list: 198.18.0.5\n"
        "0000 \n")


def test_multipath_route() -> None:
    r = RouteLine("198.19.1.0/26", "Mesh_198_18_0_12", "05:12:02", "multipath",
                  nexthops=(("198.18.0.12", "eth0", 1), ("198.18.0.13", "eth0", 1)),
                  bgp=BgpAttrs())
    assert render_routes([r], ShowRoute()) == (
        "1007-198.19.1.0/26      multipath [Mesh_198_18_0_12 05:12:02] * (100/0) [i]\n"
        " \tvia 198.18.0.12 on eth0 weight 1\n"
        " \tvia 198.18.0.13 on eth0 weight 1\n"
        "0000 \n")


def test_bird_time_formats() -> None:
    now = 1_800_000_000.0
    assert re.fullmatch(r"\d\d:\d\d:\d\d", bird_time(now - 60, now))
    assert re.fullmatch(r"\d{4}-\d\d-\d\d", bird_time(now - 21 * 3600, now))
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", bird_time(now, now, base=True))


def test_calicoctl_table() -> None:
    sep = "+--------------+-------------------+-------+------------+" + "-" * 32 + "+"
    assert calicoctl_status_table(ALL).splitlines() == [
        sep,
        "| PEER ADDRESS |     PEER TYPE     | STATE |   SINCE    |" + "INFO".center(32) + "|",
        sep,
        "| 198.18.0.12  | node-to-node mesh | up    | 05:12:02   | Established"
        + " " * 20 + "|",
        "| 198.18.0.1   | global            | start | 2017-07-25 | Active Socket: Connection"
        + " " * 6 + "|",
        "|              |                   |       |            | refused" + " " * 24 + "|",
        sep]
    assert calicoctl_status_table(OTHERS) == "No IPv4 peers found.\n"


def test_calicoctl_table_simple() -> None:
    """The shape shown in Calico's documentation."""
    p = ProtocolInfo(name="Mesh_172_17_8_102", proto="BGP", state="up", since="23:30:04",
                     bgp=BgpStatus(state="Established", neighbor_address="172.17.8.102",
                                   neighbor_as=64512))
    assert calicoctl_status_table([p]) == (
        "+--------------+-------------------+-------+----------+-------------+\n"
        "| PEER ADDRESS |     PEER TYPE     | STATE |  SINCE   |    INFO     |\n"
        "+--------------+-------------------+-------+----------+-------------+\n"
        "| 172.17.8.102 | node-to-node mesh | up    | 23:30:04 | Established |\n"
        "+--------------+-------------------+-------+----------+-------------+\n")


def test_wrap_words_minimum_raggedness() -> None:
    assert wrap_words(["Active", "Socket:", "Connection", "refused"], 30) == [
        ["Active", "Socket:", "Connection"], ["refused"]]
    assert wrap_words(["short"], 30) == [["short"]]
