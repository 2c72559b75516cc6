"""``pybgp apply/get/delete`` as a user runs them, against a real etcd."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "configs" / "examples").glob("*.yaml"))
CLI = str(Path(sys.executable).with_name("pybgp"))


def pybgp(etcd, *argv, check=True, endpoint=None):
    env = dict(os.environ, ETCD_ENDPOINTS=endpoint or etcd.endpoint)
    proc = subprocess.run([CLI, *argv], env=env, capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise AssertionError(f"pybgp {' '.join(argv)} failed: {proc.stderr}")
    return proc


def strip_server_fields(doc):
    meta = doc["metadata"]
    for key in ("uid", "resourceVersion", "creationTimestamp"):
        meta.pop(key, None)
    return doc


def test_examples_cover_every_kind():
    kinds = {yaml.safe_load_all(p.read_text()).__next__()["kind"] for p in EXAMPLES}
    assert {"IPPool", "BGPConfiguration", "BGPPeer", "Node", "WorkloadEndpoint", "Profile",
            "NetworkPolicy", "GlobalNetworkPolicy", "FelixConfiguration"} <= kinds


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_apply_get_round_trip(etcd, path):
    from pybgp.model import parse_documents

    expected = [r.to_dict() for r in parse_documents(path.read_text(), str(path))]
    pybgp(etcd, "apply", "-f", str(path))
    for want in expected:
        kind, name = want["kind"], want["metadata"]["name"]
        args = ["get", kind, name, "-o", "yaml"]
        if want["metadata"].get("namespace"):
            args += ["-n", want["metadata"]["namespace"]]
        got = yaml.safe_load(pybgp(etcd, *args).stdout)
        assert got["metadata"]["resourceVersion"] and got["metadata"]["uid"]
        assert strip_server_fields(got) == strip_server_fields(want)
        # and the list form, in JSON, holds it too
        listed = json.loads(pybgp(etcd, "get", kind, "-A", "-o", "json").stdout)
        assert name in [i["metadata"]["name"] for i in listed["items"]]
    # apply again: configured, same uid kept
    out = pybgp(etcd, "apply", "-f", str(path)).stdout
    assert "configured" in out


BAD = {
    "invalid-yaml": ("kind: IPPool\n  bad: [\n", "invalid YAML"),
    "unknown-kind": ("apiVersion: projectcalico.org/v3\nkind: Frobnicator\nmetadata: {name: x}\n",
                     "unknown resource kind 'Frobnicator'"),
    "cidr-33": ("apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: good}\n"
                "spec: {cidr: 198.19.64.0/18}\n---\n"
                "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: p}\n"
                "spec: {cidr: 10.0.0.0/33}\n",
                "document 2 (IPPool p): field spec.cidr: invalid CIDR '10.0.0.0/33'"),
    "blocksize-33": ("apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: p}\n"
                     "spec: {cidr: 198.19.0.0/24, blockSize: 33}\n", "field spec.blockSize"),
    "no-name": ("apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {}\n"
                "spec: {cidr: 198.19.0.0/24}\n", "field metadata.name"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_refused_and_nothing_written(etcd, tmp_path, case):
    text, message = BAD[case]
    path = tmp_path / f"{case}.yaml"
    path.write_text(text)
    before = etcd.revision()
    proc = pybgp(etcd, "apply", "-f", str(path), check=False)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert str(path) in lines[0] and message in lines[0]
    assert proc.stdout == ""
    # nothing written, not even the valid first document
    assert pybgp(etcd, "get", "ippool").stdout.strip() == "NAME   CIDR   SELECTOR"
    assert etcd.revision() == before  # not a single write reached etcd


def test_delete_by_name_and_file(etcd, tmp_path):
    pool = ROOT / "configs" / "examples" / "ippool.yaml"
    pybgp(etcd, "apply", "-f", str(pool))
    pybgp(etcd, "delete", "ippool", "default-ipv4-ippool")
    names = pybgp(etcd, "get", "ippool", "-o", "json").stdout
    assert "default-ipv4-ippool" not in names and "default-ipv6-ippool" in names
    proc = pybgp(etcd, "delete", "-f", str(pool), check=False)
    assert proc.returncode == 1 and "not found" in proc.stderr  # all or nothing
    assert "default-ipv6-ippool" in pybgp(etcd, "get", "ippool", "-o", "json").stdout
    pybgp(etcd, "delete", "-f", str(pool), "--skip-not-exists")
    assert pybgp(etcd, "get", "ippool").stdout.strip() == "NAME   CIDR   SELECTOR"


def test_create_refuses_existing(etcd):
    pool = ROOT / "configs" / "examples" / "ippool.yaml"
    pybgp(etcd, "create", "-f", str(pool))
    proc = pybgp(etcd, "create", "-f", str(pool), check=False)
    assert proc.returncode == 1 and "already exists" in proc.stderr


def test_etcd_unreachable_is_one_clear_line(etcd):
    proc = pybgp(etcd, "get", "ippool", check=False, endpoint="http://127.0.0.1:9")
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        "error: etcd unreachable (http://127.0.0.1:9: connection refused)")
