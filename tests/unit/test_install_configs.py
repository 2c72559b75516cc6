"""What ``configs/`` ships for real nodes and reflector VMs: the config files
are read by pybgp's own loaders, the systemd units pass ``systemd-analyze
verify`` with no warning, and every unit waits for READY=1 and has a command
line its ``pybgp`` command accepts, which then finds etcd in
``/etc/pybgp/pybgp.cfg``."""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pybgp.cli.main import build_parser, etcd_settings
from pybgp.config import etcd_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
UNITS = sorted((CONFIGS / "systemd").glob("*.service"))
PYBGP = Path(sys.executable).with_name("pybgp")


def env_file(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key] = value
    return out


def unit(path: Path) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str  # type: ignore[assignment,method-assign]
    cp.read_string(path.read_text())
    return cp


def test_the_node_config_names_etcd_with_tls() -> None:
    cfg = etcd_config({}, config_file=str(CONFIGS / "node" / "pybgp.cfg"), env={})
    assert len(cfg.endpoints) == 3 and all(e.startswith("https://") for e in cfg.endpoints)
    assert (cfg.ca_cert_file, cfg.cert_file, cfg.key_file) == (
        "/etc/pybgp/tls/ca.pem", "/etc/pybgp/tls/client.pem", "/etc/pybgp/tls/client-key.pem")
    assert cfg.needs_tls


def test_the_node_env_file() -> None:
    env = env_file(CONFIGS / "node" / "node.env")
    assert env["NODENAME"] == "node-1"
    assert env["PYBGP_BIRD_SOCKET"] == "/run/calico/bird.ctl"


def test_there_is_a_unit_per_daemon() -> None:
    assert [u.name for u in UNITS] == ["pybgp-agent.service", "pybgp-reflector.service",
                                       "pybgp-speaker.service"]


@pytest.mark.parametrize("path", UNITS, ids=lambda p: p.name)
def test_units_restart_on_failure_and_flush_nothing_on_stop(path: Path) -> None:
    svc = unit(path)["Service"]
    assert svc["Type"] == "notify" and svc["NotifyAccess"] == "main"  # all send READY=1
    assert svc["Restart"] == "on-failure"
    assert "ExecStop" not in svc and "ExecStopPost" not in svc  # a stop is SIGTERM only
    assert svc["KillMode"] == "mixed"
    assert svc["ExecStart"].startswith("/opt/pybgp/bin/pybgp ")


@pytest.mark.parametrize("daemon", ["speaker", "agent"])
def test_node_units_wait_for_readiness_and_their_command_parses(
        daemon: str, monkeypatch: pytest.MonkeyPatch) -> None:
    svc = unit(CONFIGS / "systemd" / f"pybgp-{daemon}.service")["Service"]
    env = env_file(CONFIGS / "node" / "node.env")
    argv = shlex.split(svc["ExecStart"])
    for key, value in env.items():  # what systemd substitutes from the EnvironmentFile
        argv = [a.replace(f"${{{key}}}", value) for a in argv]
    assert not [a for a in argv if "$" in a], argv
    args = build_parser().parse_args(argv[1:])
    assert (args.command, args.node) == (daemon, "node-1")
    if daemon == "speaker":
        assert args.bird_socket == "/run/calico/bird.ctl"
    else:  # no port flags: FelixConfiguration's healthPort/prometheusMetricsPort decide
        assert (args.health_port, args.metrics_port) == (None, None)
    # no etcd flag: the daemon reads /etc/pybgp/pybgp.cfg like every pybgp command
    assert args.etcd_endpoints is None and args.config is None
    no_etcd_environment(monkeypatch)
    cfg = etcd_settings(args)
    assert cfg.endpoints[0] == "https://198.18.0.1:2379" and cfg.needs_tls


def no_etcd_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("PYBGP_CONFIG", "ETCD_ENDPOINTS", "ETCD_CA_CERT_FILE", "ETCD_CERT_FILE",
                "ETCD_KEY_FILE", "ETCD_USERNAME", "ETCD_PASSWORD"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr("pybgp.config.DEFAULT_CONFIG_FILE", str(CONFIGS / "node" / "pybgp.cfg"))


def test_the_reflector_unit_command_parses(monkeypatch: pytest.MonkeyPatch) -> None:
    """Its --config is the reflector's YAML; the datastore comes from pybgp.cfg."""
    svc = unit(CONFIGS / "systemd" / "pybgp-reflector.service")["Service"]
    argv = shlex.split(svc["ExecStart"])
    args = build_parser().parse_args(argv[1:])
    assert args.command == "reflector"
    assert args.reflector_config == "/etc/pybgp/reflector.yaml"
    assert args.config is None and args.etcd_endpoints is None  # --datastore-config: not given
    # both sockets in the unit's RuntimeDirectory, where the docs' commands look
    assert (args.bird_socket, args.json_socket) == ("/run/pybgp/reflector.ctl",
                                                    "/run/pybgp/reflector.sock")
    assert svc["RuntimeDirectory"] == "pybgp"
    no_etcd_environment(monkeypatch)
    cfg = etcd_settings(args)  # what nodeSelector clients are read with: TLS etcd
    assert cfg.endpoints[0] == "https://198.18.0.1:2379" and cfg.needs_tls


@pytest.mark.parametrize("path", UNITS, ids=lambda p: p.name)
def test_systemd_analyze_verify(path: Path, tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.fail("systemd-analyze not found: install the Debian package systemd",
                    pytrace=False)
    # the same unit with this checkout's pybgp and example env file (verify checks both exist)
    text = path.read_text().replace("/opt/pybgp/bin/pybgp", str(PYBGP)).replace(
        "/etc/pybgp/node.env", str(CONFIGS / "node" / "node.env"))
    copy = tmp_path / path.name
    copy.write_text(text)
    proc = subprocess.run([tool, "verify", "--man=no", str(copy)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    ours = [line for line in proc.stderr.splitlines() if path.name in line or str(copy) in line]
    assert ours == [], proc.stderr  # no warning about our unit (unknown keys warn, exit 0)
