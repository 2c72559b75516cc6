"""pybgp-cni pure parts without root: config, annotations, results, CHECK comparison,
the undo stack, error mapping and the install-cni launchers."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pybgp.cli.main import main as cli_main
from pybgp.cni import config, result, spec, store
from pybgp.cni.undo import UndoStack
from pybgp.errors import ConflictError, DatastoreUnavailable, PoolExhaustedError, ValidationError

BASE = {"cniVersion": "1.0.0", "name": "k8s-pod-network", "type": "pybgp-cni",
        "ipam": {"type": "pybgp-ipam"}, "nodename": "node1"}


def settings(**extra: Any) -> config.Settings:
    return config.Settings(dict(BASE, **extra), env={})


def code_of(fn: Any) -> int:
    with pytest.raises(spec.CNIError) as info:
        fn()
    return info.value.code


# ------------------------------------------------------------------ config

def test_settings_defaults_and_keys() -> None:
    s = settings(mtu=1400, etcd_endpoints="unix:///a.sock:0, http://127.0.0.1:2379",
                 etcd_username="u", etcd_password="p", etcd_ca_cert_file="/ca",
                 log_level="DEBUG", log_file_path="/tmp/x.log",
                 ipam={"type": "calico-ipam", "ipv4_pools": ["p1", "198.19.0.0/16"]})
    assert (s.network, s.mtu, s.nodename, s.log_level) == ("k8s-pod-network", 1400, "node1",
                                                            "debug")
    assert s.etcd == {"endpoints": ["unix:///a.sock:0", "http://127.0.0.1:2379"],
                      "username": "u", "password": "p", "ca_cert_file": "/ca"}
    assert s.ipam_in_process and s.ipv4_pools == ["p1", "198.19.0.0/16"]
    assert s.handle("abc") == "k8s-pod-network.abc"
    assert settings().etcd is None and settings().mtu == 1500
    assert not settings(ipam={"type": "host-local"}).ipam_in_process


def test_nodename_order(tmp_path: Path) -> None:
    f = tmp_path / "nodename"
    f.write_text("from-file\n")
    assert config.node_name({"nodename": "cfg"}, {"NODENAME": "env"}, str(f)) == "cfg"
    assert config.node_name({}, {"NODENAME": "env"}, str(f)) == "env"
    assert config.node_name({}, {}, str(f)) == "from-file"
    assert config.node_name({}, {}, str(tmp_path / "none")) == os.uname().nodename


@pytest.mark.parametrize("extra", [
    {"ipam": {"type": "pybgp-ipam", "ipv4_pools": "p1"}},
    {"ipam": {"type": "pybgp-ipam", "assign_ipv4": "false"}},
    {"ipam": {"type": "pybgp-ipam", "max_blocks_per_host": -1}},
    {"feature_control": []},
    {"etcd_endpoints": 5},
])
def test_invalid_settings_are_code_7(extra: dict[str, Any]) -> None:
    assert code_of(lambda: settings(**extra)) == spec.INVALID_CONFIG


def notes(gate: bool = False, **kv: Any) -> config.Annotations:
    conf = {"args": {"pybgp": {"annotations": {f"cni.projectcalico.org/{k}": v
                                               for k, v in kv.items()}}}}
    return config.parse_annotations(conf, no_ipam_enabled=gate)


def test_annotations_parsed() -> None:
    assert notes(ipAddrs='["198.19.0.5"]').ip_addrs == ["198.19.0.5"]
    assert notes(ipAddrs=["198.19.0.5"]).ip_addrs == ["198.19.0.5"]  # already decoded
    assert notes(ipv4pools='["pool-a", "198.19.0.0/24"]').ipv4_pools == ["pool-a",
                                                                         "198.19.0.0/24"]
    assert notes(True, ipAddrsNoIpam='["198.19.9.9"]').ip_addrs_no_ipam == ["198.19.9.9"]
    empty = config.parse_annotations({}, no_ipam_enabled=False)
    assert (empty.ip_addrs, empty.ipv4_pools, empty.ip_addrs_no_ipam) == ([], [], [])


@pytest.mark.parametrize("kw,needle", [
    ({"ipAddrsNoIpam": '["198.19.9.9"]'}, "ip_addrs_no_ipam"),  # feature gate off
    ({"ipAddrs": "198.19.0.5"}, "not valid JSON"),
    ({"ipAddrs": '["nope"]'}, "not an IP address"),
    ({"ipAddrs": '["2001:db8::1"]'}, "IPv4 addresses only"),
    ({"ipAddrs": '["198.19.0.5", "198.19.0.6"]'}, "at most one"),
    ({"ipv4pools": '{"a": 1}'}, "JSON list"),
    ({"ipAddrs": '["198.19.0.5"]', "ipv4pools": '["a"]'}, "cannot be used together"),
])
def test_bad_annotations(kw: dict[str, str], needle: str) -> None:
    with pytest.raises(spec.CNIError) as info:
        notes(**kw)
    assert info.value.code == spec.INVALID_CONFIG and needle in info.value.msg


def test_both_fixed_annotations_refused() -> None:
    with pytest.raises(spec.CNIError, match="cannot be used together"):
        notes(True, ipAddrs='["198.19.0.5"]', ipAddrsNoIpam='["198.19.0.6"]')


# ------------------------------------------------------------------ results

def add() -> dict[str, Any]:
    return result.add_result(host_ifname="cali0123456789a", host_mac="ee:ee:ee:ee:ee:ee",
                             ifname="eth0", mac="02:00:00:00:00:01", netns="/var/run/netns/p",
                             ip="198.19.0.5", mtu=1450, dns={"nameservers": ["198.18.0.53"]})


@pytest.mark.parametrize("version", spec.SUPPORTED_VERSIONS)
def test_result_per_version(version: str) -> None:
    out = spec.format_result(add(), version)
    assert out["cniVersion"] == version
    assert out["interfaces"][0] == {"name": "cali0123456789a", "mac": "ee:ee:ee:ee:ee:ee"}
    ctr = out["interfaces"][1]
    assert ctr["sandbox"] == "/var/run/netns/p" and ("mtu" in ctr) == (version == "1.1.0")
    ip = out["ips"][0]
    assert ip["address"] == "198.19.0.5/32" and ip["interface"] == 1
    assert ("version" in ip) == version.startswith("0.")
    assert out["routes"] == [{"dst": "0.0.0.0/0", "gw": "169.254.1.1"}]
    assert out["dns"] == {"nameservers": ["198.18.0.53"]}


def seen(**over: Any) -> dict[str, Any]:
    ctr = {"exists": True, "mac": "02:00:00:00:00:01", "addresses": ["198.19.0.5/32"],
           "routes": [("0.0.0.0/0", "169.254.1.1"), ("169.254.1.1/32", "")],
           "neighbours": {"169.254.1.1": ("ee:ee:ee:ee:ee:ee", 0x80)}}
    host = {"exists": True, "mac": "ee:ee:ee:ee:ee:ee", "routes": ["198.19.0.5/32"]}
    ctr.update(over.pop("ctr", {}))
    host.update(over.pop("host", {}))
    return {"container": ctr, "host": host}


def prev() -> result.Previous:
    conf = {"prevResult": spec.format_result(add(), "1.0.0")}
    return result.parse_previous(conf, "eth0", "/var/run/netns/p")


def test_check_compare() -> None:
    p = prev()
    assert p.ips == ["198.19.0.5"] and p.host_ifname == "cali0123456789a"
    assert result.compare(p, seen(), "cali0123456789a") == []
    assert "default route" in result.compare(
        p, seen(ctr={"routes": [("169.254.1.1/32", "")]}), "cali0123456789a")[0]
    assert "neighbour" in result.compare(
        p, seen(ctr={"neighbours": {"169.254.1.1": ("ee:ee:ee:ee:ee:ee", 0x02)}}),
        "cali0123456789a")[0]
    assert "host route" in result.compare(p, seen(host={"routes": []}), "cali0123456789a")[0]
    assert "does not exist" in result.compare(p, seen(ctr={"exists": False}),
                                              "cali0123456789a")[0]


def test_check_needs_prev_result_for_this_container() -> None:
    assert code_of(lambda: result.parse_previous({}, "eth0", "/x")) == spec.INVALID_CONFIG
    conf = {"prevResult": spec.format_result(add(), "1.0.0")}
    assert code_of(lambda: result.parse_previous(conf, "eth1", "/var/run/netns/p")) == \
        spec.CHECK_MISMATCH


# ------------------------------------------------------------------ undo

def test_undo_runs_newest_first_on_failure_and_survives_failing_actions() -> None:
    done: list[str] = []

    def boom() -> None:
        done.append("b")
        raise OSError("undo failed")

    with pytest.raises(RuntimeError, match="step 3"), UndoStack() as undo:
        undo.push("a", lambda: done.append("a"))
        undo.push("b", boom)
        undo.push("c", lambda: done.append("c"))
        raise RuntimeError("step 3")
    assert done == ["c", "b", "a"]
    assert undo.failures == ["b: undo failed"]


def test_undo_after_commit_does_nothing() -> None:
    done: list[str] = []
    with UndoStack() as undo:
        undo.push("a", lambda: done.append("a"))
        undo.commit()
    assert done == []
    with pytest.raises(KeyboardInterrupt), UndoStack() as undo:
        undo.push("a", lambda: done.append("a"))
        raise KeyboardInterrupt
    assert done == ["a"]


# ------------------------------------------------------------------ errors

@pytest.mark.parametrize("exc,code", [
    (DatastoreUnavailable("connection refused"), spec.TRY_AGAIN_LATER),
    (ConflictError("raced"), spec.TRY_AGAIN_LATER),
    (PoolExhaustedError("full"), spec.IPAM_FAILURE),
    (ValidationError("bad name"), spec.INVALID_CONFIG),
    (spec.CNIError(3, "x"), 3),
])
def test_error_mapping(exc: Exception, code: int) -> None:
    def fail() -> None:
        with store.cni_errors("ADD c1"):
            raise exc

    with pytest.raises(spec.CNIError) as info:
        fail()
    assert info.value.code == code
    if code == spec.TRY_AGAIN_LATER and isinstance(exc, DatastoreUnavailable):
        assert "etcd" in info.value.msg and "try again" in info.value.msg


def test_unknown_errors_pass_through() -> None:
    with pytest.raises(KeyError), store.cni_errors("x"):
        raise KeyError("k")


def test_etcd_config_precedence() -> None:
    s = settings(etcd_endpoints="unix:///a.sock:0")
    assert store.etcd_config_for(s).endpoints == ["unix:///a.sock:0"]
    default = SimpleNamespace(endpoints=["http://127.0.0.1:1"])
    store.set_default(default)  # type: ignore[arg-type]
    try:
        assert store.etcd_config_for(settings()) is default
    finally:
        store.set_default(None)


def test_gc_needs_valid_attachments() -> None:
    from pybgp.cni.ipam_plugin import valid_container_ids

    assert valid_container_ids({"cni.dev/valid-attachments": [
        {"containerID": "a", "ifname": "eth0"}]}) == {"a"}
    assert code_of(lambda: valid_container_ids({})) == spec.INVALID_CONFIG


# ------------------------------------------------------------------ install-cni

def test_install_cni_launchers_answer_version(tmp_path: Path) -> None:
    assert cli_main(["install-cni", "--bin-dir", str(tmp_path / "bin"),
                     "--conf-dir", str(tmp_path / "net.d")]) == 0
    for name in ("pybgp-cni", "pybgp-ipam"):
        exe = tmp_path / "bin" / name
        assert exe.read_text().startswith("#!") and " -IS" in exe.read_text().splitlines()[0]
        proc = subprocess.run([str(exe)], env={"CNI_COMMAND": "VERSION"}, input="",
                              capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, proc.stderr
        assert "1.1.0" in json.loads(proc.stdout)["supportedVersions"]
    conflist = json.loads((tmp_path / "net.d" / "10-pybgp.conflist").read_text())
    assert [p["type"] for p in conflist["plugins"]] == ["pybgp-cni", "portmap"]


def test_launcher_reports_bad_config_as_cni_error(tmp_path: Path) -> None:
    cli_main(["install-cni", "--bin-dir", str(tmp_path)])
    env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_IFNAME": "eth0",
           "CNI_NETNS": "/var/run/netns/none", "PYBGP_CNI_SOCKET": str(tmp_path / "no.sock")}
    for name in ("pybgp-cni", "pybgp-ipam"):
        proc = subprocess.run([str(tmp_path / name)], env=env, input="{not json",
                              capture_output=True, text=True, timeout=30)
        out = json.loads(proc.stdout)
        assert proc.returncode == 1 and out["code"] == spec.DECODE_FAILURE
        bad = dict(BASE, ipam={"type": "pybgp-ipam", "ipv4_pools": "x"})
        proc = subprocess.run([str(tmp_path / name)], env=env, input=json.dumps(bad),
                              capture_output=True, text=True, timeout=30)
        out = json.loads(proc.stdout)
        assert proc.returncode == 1 and out["code"] == spec.INVALID_CONFIG, out
        assert "Traceback" not in proc.stdout


def test_install_cni_conflist_values_atomic_and_kept(tmp_path: Path) -> None:
    conf = tmp_path / "net.d"
    args = ["install-cni", "--bin-dir", str(tmp_path / "bin"), "--conf-dir", str(conf),
            "--etcd-endpoints", "https://198.18.0.1:2379", "--etcd-ca-cert-file", "/ca.pem",
            "--etcd-cert-file", "/c.pem", "--etcd-key-file", "/k.pem", "--nodename", "node-7",
            "--daemon-socket", "/run/x/cni.sock", "--mtu", "1400"]
    assert cli_main(args) == 0
    doc = json.loads((conf / "10-pybgp.conflist").read_text())
    cni = doc["plugins"][0]
    assert cni == {"type": "pybgp-cni", "log_level": "info", "mtu": 1400,
                   "etcd_endpoints": "https://198.18.0.1:2379", "etcd_ca_cert_file": "/ca.pem",
                   "etcd_cert_file": "/c.pem", "etcd_key_file": "/k.pem",
                   "nodename": "node-7", "daemon_socket": "/run/x/cni.sock",
                   "ipam": {"type": "pybgp-ipam"}}
    # nothing but the files themselves: the temp files were renamed over them
    assert sorted(p.name for p in conf.iterdir()) == ["10-pybgp.conflist"]
    assert sorted(p.name for p in (tmp_path / "bin").iterdir()) == ["pybgp-cni", "pybgp-ipam"]
    # an existing conflist is kept, unless --force
    assert cli_main([*args[:-2], "--mtu", "1300"]) == 0
    assert json.loads((conf / "10-pybgp.conflist").read_text())["plugins"][0]["mtu"] == 1400
    assert cli_main([*args[:-2], "--mtu", "1300", "--force"]) == 0
    assert json.loads((conf / "10-pybgp.conflist").read_text())["plugins"][0]["mtu"] == 1300


def test_install_cni_refuses_a_bad_mtu_and_writes_nothing(tmp_path: Path, capsys) -> None:
    rc = cli_main(["install-cni", "--bin-dir", str(tmp_path / "bin"), "--conf-dir",
                   str(tmp_path / "net.d"), "--mtu", "12"])
    assert rc == 1 and "mtu 12" in capsys.readouterr().err
    assert not (tmp_path / "bin").exists() and not (tmp_path / "net.d").exists()


def test_the_shipped_conflist_is_the_template() -> None:
    from pybgp.cni.conflist import EXAMPLE, conflist

    shipped = Path(__file__).resolve().parents[2] / "configs" / "cni" / "10-pybgp.conflist"
    assert json.loads(shipped.read_text()) == conflist(**EXAMPLE)


def _ident(pod: str = "", namespace: str = "") -> Any:
    from types import SimpleNamespace

    from pybgp.cni import endpoint

    s = SimpleNamespace(nodename="node-1", network="k8s-pod-network")
    req = SimpleNamespace(pod_name=pod, pod_namespace=namespace, container_id="c0ffee",
                          ifname="eth0")
    return endpoint.Identity(s, req)  # type: ignore[arg-type]


def test_endpoint_profile_is_made_as_calico_would_and_never_overwritten() -> None:
    import json

    from pybgp.cni import endpoint
    from pybgp.datastore.kv import Put
    from pybgp.datastore.memory import MemoryKV
    from pybgp.datastore.resources import ResourceStore

    kv = MemoryKV()
    k8s = _ident("web", "shop")
    assert endpoint.ensure_profile(kv, k8s) is True
    prof = ResourceStore(kv).get("Profile", "kns.shop")
    assert prof.spec.labels_to_apply == {"pcns.projectcalico.org/name": "shop"}
    assert [r.action for r in prof.spec.ingress + prof.spec.egress] == ["Allow", "Allow"]
    assert not prof.spec.ingress[0].source.selector  # from anywhere
    # an operator's own profile stands: nothing is written over it
    item = kv.get(endpoint.PROFILE_PREFIX + "kns.shop")
    assert item is not None
    doc = json.loads(item.value)
    doc["spec"]["ingress"] = []
    kv.txn([], [Put(item.key, json.dumps(doc).encode())])
    before = kv.get(item.key)
    assert endpoint.ensure_profile(kv, k8s) is False
    assert kv.get(item.key) == before

    plain = _ident()
    assert endpoint.ensure_profile(kv, plain) is True
    net = ResourceStore(kv).get("Profile", "k8s-pod-network")
    assert net.spec.ingress[0].source.selector == "has(k8s-pod-network)"
    assert net.spec.labels_to_apply == {"k8s-pod-network": ""}
