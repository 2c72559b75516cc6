"""ExaBGP 5 codec: golden JSON lines captured from exabgp 5.0.15, command
and configuration rendering (the configuration is checked by the real
``exabgp validate``)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path as FsPath

import pytest

from pybgp.speaker.exabgp_api import (
    Ack,
    Attributes,
    EndOfRib,
    NeighborConfig,
    Open,
    PeerState,
    Unknown,
    Update,
    announce_batch,
    announce_eor,
    announce_route,
    parse_as_path,
    parse_message,
    render_config,
    withdraw_batch,
    withdraw_route,
)

GOLDEN = FsPath(__file__).parent / "golden" / "exabgp"
EXABGP = FsPath(sys.executable).parent / "exabgp"


def _as_dict(event: object) -> dict[str, object]:
    out: dict[str, object] = {"event": type(event).__name__}
    out.update(dataclasses.asdict(event))  # type: ignore[call-overload]
    if isinstance(event, Update):  # the golden file lists each prefix's whole Path
        del out["groups"]
        out["announces"] = [dataclasses.asdict(p) for p in event.announces]
    return json.loads(json.dumps(out))  # tuples → lists, like the golden file


CASES = json.loads((GOLDEN / "received.json").read_text())


@pytest.mark.parametrize("case", CASES, ids=[c["description"] for c in CASES])
def test_received_golden(case: dict[str, object]) -> None:
    assert _as_dict(parse_message(str(case["line"]))) == case["expect"]


def test_golden_covers_every_event_kind() -> None:
    kinds = {c["expect"]["event"] for c in CASES}
    assert kinds >= {"PeerState", "Update", "EndOfRib", "Open", "Notification", "Shutdown",
                     "Ack"}


def _line(description: str) -> str:
    return next(str(c["line"]) for c in CASES if c["description"] == description)


def test_router_ids_from_open_are_used() -> None:
    line = _line("iBGP announce origin egp, local-preference 200")
    ev = parse_message(line, {"198.18.250.2": "10.9.9.9"})
    assert isinstance(ev, Update)
    assert ev.announces[0].peer_router_id == "10.9.9.9"
    assert ev.announces[0].effective_local_pref == 200


def test_prefixes_of_one_update_share_one_path() -> None:
    ev = parse_message(_line("iBGP announce, three prefixes, empty AS_PATH absent from JSON"))
    assert isinstance(ev, Update) and len(ev.groups) == 1
    shared, prefixes = ev.groups[0]
    assert shared.prefix == "" and len(prefixes) == 3
    assert [p.prefix for p in ev.announces] == prefixes


def test_ibgp_flag_from_asns() -> None:
    ibgp = parse_message(_line("iBGP announce origin egp, local-preference 200"))
    ebgp = parse_message(_line("eBGP announce, AS_SEQUENCE then AS_SET, med"))
    assert isinstance(ibgp, Update) and isinstance(ebgp, Update)
    assert ibgp.announces[0].ibgp and not ebgp.announces[0].ibgp
    assert ebgp.announces[0].as_path_length == 3


def test_state_and_eor_types() -> None:
    assert isinstance(parse_message(_line("state up, iBGP peer")), PeerState)
    assert isinstance(parse_message(_line("end-of-RIB ipv4 unicast")), EndOfRib)
    assert isinstance(parse_message(_line("OPEN received from eBGP peer")), Open)
    assert parse_message("done\n") == Ack(True)


@pytest.mark.parametrize("line", ["", "garbage", "[1, 2]", '{"type": "update"}',
                                  '{"type": "state", "neighbor": {"address": {}}}',
                                  '{"type": "weird", "neighbor": {"address": {"peer": "x"}}}'])
def test_unknown_never_raises(line: str) -> None:
    assert isinstance(parse_message(line), Unknown)


def test_as_path_forms() -> None:
    assert parse_as_path(None) == ((), ())
    assert parse_as_path([1, 2]) == ((1, 2), ())  # ExaBGP 4.x flat list
    seg = {"1": {"element": "as-set", "value": [5, 6]},
           "0": {"element": "as-sequence", "value": [1, 2]},
           "2": {"element": "as-sequence", "value": [7]}}
    assert parse_as_path(seg) == ((1, 2, 7), ((5, 6),))


def _golden_commands() -> list[str]:
    lines = announce_batch("198.18.250.2", [f"198.19.30.{i}/32" for i in range(5)], chunk=2)
    lines.append(announce_route(
        "198.19.31.0/26", "198.18.250.2",
        Attributes(originator_id="198.18.0.30", cluster_list=("198.18.0.1", "198.18.0.2"),
                   communities=((64512, 100),), med=7),
        neighbor="198.18.250.1"))
    lines += announce_batch("198.18.250.2", ["198.19.32.0/26"],
                            Attributes(as_path=None, local_pref=None),
                            neighbor=["198.18.250.1", "198.18.250.1"])
    lines += withdraw_batch(["198.19.30.0/32", "198.19.30.1/32"])
    lines.append(withdraw_route("198.19.31.0/26", neighbor="198.18.250.1"))
    lines += withdraw_batch(["198.19.30.2/32"], next_hop="198.18.250.2",
                            neighbor="198.18.250.1")
    lines.append(announce_eor(neighbor="198.18.250.1"))
    lines.append(announce_eor())
    return lines


def test_commands_golden() -> None:
    expected = [ln for ln in (GOLDEN / "commands.txt").read_text().splitlines()
                if ln and not ln.startswith("#")]
    assert _golden_commands() == expected


def test_batches_chunk_and_stay_short() -> None:
    prefixes = [f"198.19.{i // 256}.{i % 256}/32" for i in range(1001)]
    lines = announce_batch("198.18.0.11", prefixes)
    assert len(lines) == 6
    assert all(len(ln) < 4096 for ln in lines)
    assert sum(len(ln.split(" nlri ")[1].split()) for ln in lines) == 1001
    assert announce_batch("198.18.0.11", []) == []
    with pytest.raises(ValueError):
        withdraw_batch(["198.19.0.0/26"], chunk=0)


def test_ebgp_as_path_rendering() -> None:
    line = announce_route("198.19.0.0/26", "198.18.0.11",
                          Attributes(as_path=(64512,), local_pref=None))
    assert line == ("announce route 198.19.0.0/26 next-hop 198.18.0.11 origin igp "
                    "as-path [ 64512 ]")


NEIGHBORS = [
    NeighborConfig("198.18.0.12", "198.18.0.11", "198.18.0.11", 64512, 64512, passive=True,
                   md5_password="mesh-secret", description="Mesh_198_18_0_12"),
    NeighborConfig("198.18.0.10", "198.18.0.11", "198.18.0.11", 64512, 64512,
                   graceful_restart=120, description="Mesh_198_18_0_10"),
    NeighborConfig("198.18.0.1", "198.18.0.11", "198.18.0.11", 64512, 64513, port=1179,
                   graceful_restart=300, hold_time=90,
                   description="Global_198_18_0_1_port_1179"),
]
RUN = ["/usr/bin/python3", "-m", "pybgp.speaker.helper"]


def test_config_golden() -> None:
    text = render_config(NEIGHBORS, RUN)
    assert text == (GOLDEN / "config_node.conf").read_text()
    assert "encoder json;" in text and "run " in text


def test_config_accepted_by_exabgp(tmp_path: FsPath) -> None:
    conf = tmp_path / "exabgp.conf"
    conf.write_text(render_config(NEIGHBORS, RUN))
    res = subprocess.run([str(EXABGP), "validate", "-n", str(conf)], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


def test_config_rejected_by_exabgp_when_broken(tmp_path: FsPath) -> None:
    """The validation above is meaningful: a broken config fails it."""
    conf = tmp_path / "exabgp.conf"
    conf.write_text(render_config(NEIGHBORS, RUN).replace("encoder json;", ""))
    res = subprocess.run([str(EXABGP), "validate", str(conf)], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode != 0


def test_config_refuses_unquotable_values() -> None:
    bad = dataclasses.replace(NEIGHBORS[0], md5_password='a";b')
    with pytest.raises(ValueError):
        render_config([bad], RUN)
    with pytest.raises(ValueError):
        render_config(NEIGHBORS, ["/bin/helper", "two words"])
    with pytest.raises(ValueError):  # ExaBGP's tokeniser splits a word at a comma
        render_config(NEIGHBORS, ["/usr/bin/socat", "UNIX-CONNECT:/s,retry=5"])


def test_helper_is_the_pipe_passer_on_the_api_socket(tmp_path: FsPath) -> None:
    import sys

    from pybgp.errors import SpeakerError
    from pybgp.speaker.exabgp_proc import ExaBGP

    exa = ExaBGP(str(tmp_path), lambda line: None, lambda code: None)
    assert exa.helper_argv[:3] == [sys.executable, "-I", "-S"]
    assert exa.helper_argv[3].endswith("/pybgp/speaker/exabgp_helper.py")
    assert exa.helper_argv[4] == f"{tmp_path}/api.sock"
    assert "run " + " ".join(exa.helper_argv) in render_config(NEIGHBORS, exa.helper_argv)
    for bad in ("a,b", "a b"):
        with pytest.raises(SpeakerError, match="cannot pass a path"):
            ExaBGP(str(tmp_path / bad), lambda line: None, lambda code: None)
