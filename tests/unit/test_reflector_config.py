"""``pybgp reflector --config``: the YAML file, its defaults and its errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from pybgp.errors import ValidationError
from pybgp.reflector import config
from pybgp.reflector.wire import IPV4_UNICAST, IPV6_UNICAST
from pybgp.speaker.rr import Role

EXAMPLE = Path(__file__).parents[2] / "configs" / "reflector.yaml"


def parse(**doc):
    doc.setdefault("routerId", "198.18.0.2")
    doc.setdefault("asNumber", 64512)
    doc.setdefault("clients", [{"address": "198.18.0.11"}])
    return config.parse(doc, "rr.yaml")


def test_defaults():
    cfg = parse()
    assert cfg.cluster_id == "198.18.0.2"  # the router id
    assert (cfg.listen_address, cfg.listen_port, cfg.hold_time) == ("0.0.0.0", 179, 90)
    assert cfg.restart_time == 120 and cfg.families == (IPV4_UNICAST,)
    [spec] = cfg.static_peers().values()
    assert spec.name == "Node_198_18_0_11" and spec.role is Role.CLIENT and not spec.passive


def test_the_example_in_configs_parses():
    cfg = config.load(str(EXAMPLE))
    assert cfg.uses_datastore and cfg.cluster_id != cfg.router_id


def test_every_kind_of_neighbour(tmp_path):
    (tmp_path / "pw").write_text("s3cret\n")
    doc = {"routerId": "198.18.0.2", "clusterId": 3323068516, "asNumber": 64512,
           "families": ["ipv4", "ipv6"], "holdTime": 30,
           "gracefulRestart": {"restartTime": 60, "staleTime": 300, "maxRestartTime": 90},
           "clients": [{"address": "198.18.0.11", "password": "x", "passive": True},
                       {"range": "198.18.1.7/24", "passwordFile": "pw"},
                       {"nodeSelector": "route-reflector-client == 'true'"}],
           "peers": [{"address": "198.18.0.3", "port": 1179}]}
    cfg = config.parse(doc, "rr.yaml", str(tmp_path))
    assert cfg.cluster_id == "198.18.0.100" and cfg.families == (IPV4_UNICAST, IPV6_UNICAST)
    assert (cfg.restart_time, cfg.stale_time, cfg.restart_limit) == (60, 300.0, 90)
    peers = cfg.static_peers()
    assert peers["198.18.0.11"].password == "x" and peers["198.18.0.11"].passive
    assert peers["198.18.0.3"].role is Role.NON_CLIENT and peers["198.18.0.3"].port == 1179
    assert peers["198.18.0.3"].name == "Global_198_18_0_3"
    rng = cfg.range_for("198.18.1.200")
    assert rng is not None and rng.password == "s3cret" and rng.passive
    assert cfg.range_for("198.18.2.1") is None
    dyn = rng.spec("198.18.1.200", dynamic=True)
    assert dyn.dynamic and dyn.passive and dyn.name == "Node_198_18_1_200"
    nodes = [({"route-reflector-client": "true"}, ("198.18.0.31",)),
             ({"other": "x"}, ("198.18.0.32",)),
             ({"route-reflector-client": "true"}, ("198.18.0.11",))]  # already explicit
    assert list(cfg.selected_peers(nodes)) == ["198.18.0.31"]


@pytest.mark.parametrize("doc,fld", [
    ({"routerId": "nope"}, "routerId"),
    ({"asNumber": 0}, "asNumber"),
    ({"asNumber": "64512"}, "asNumber"),
    ({"clusterId": "1.2.3"}, "clusterId"),
    ({"holdTime": 2}, "holdTime"),
    ({"listen": {"port": 70000}}, "listen.port"),
    ({"listen": {"address": "x"}}, "listen.address"),
    ({"families": ["ipv5"]}, "families[0]"),
    ({"clients": [{"address": "198.18.0.999"}]}, "clients[0].address"),
    ({"clients": [{"range": "198.18.0.0/33"}]}, "clients[0].range"),
    ({"clients": [{"range": "198.18.0.0/24", "passive": False}]}, "clients[0].passive"),
    ({"clients": [{"nodeSelector": "a =="}]}, "clients[0].nodeSelector"),
    ({"clients": [{"address": "198.18.0.11", "range": "198.18.0.0/24"}]}, "clients[0]"),
    ({"clients": [{"address": "198.18.0.11", "bogus": 1}]}, "clients[0].bogus"),
    ({"clients": [{"address": "198.18.0.11", "password": "x" * 81}]}, "clients[0].password"),
    ({"clients": [{"address": "198.18.0.11", "passwordFile": "/nonexistent/pw"}]},
     "clients[0].passwordFile"),
    ({"clients": [{"address": "198.18.0.2"}]}, "clients[0].address"),  # ourselves
    ({"clients": [{"address": "198.18.0.11"}], "peers": [{"address": "198.18.0.11"}]},
     "peers[0].address"),
    ({"clients": []}, "clients"),
    ({"gracefulRestart": {"restartTime": 5000}}, "gracefulRestart.restartTime"),
    ({"color": "blue"}, "color"),
])
def test_errors_name_the_field(doc, fld):
    with pytest.raises(ValidationError) as exc:
        parse(**doc)
    assert exc.value.field == fld, str(exc.value)
    assert str(exc.value).startswith("rr.yaml: field ")


def test_a_missing_or_broken_file(tmp_path):
    with pytest.raises(ValidationError, match="cannot read"):
        config.load(str(tmp_path / "nope.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("routerId: [\n")
    with pytest.raises(ValidationError, match="not valid YAML"):
        config.load(str(bad))
    with pytest.raises(ValidationError, match="routerId"):
        config.parse({"asNumber": 1}, "x.yaml")
