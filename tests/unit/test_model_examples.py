"""Every example in configs/examples parses, round-trips and has a sane key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pybgp.model import KINDS, kind_from_key, parse_documents, parse_json, parse_resource

EXAMPLES = Path(__file__).resolve().parents[2] / "configs" / "examples"
FILES = sorted(EXAMPLES.glob("*.yaml"))


def test_one_example_per_core_kind():
    kinds = {r.kind for f in FILES for r in parse_documents(f.read_text(), f.name)}
    assert kinds >= set(KINDS) - {"HostEndpoint", "ClusterInformation"}


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_example_round_trips(path):
    for res in parse_documents(path.read_text(), path.name):
        doc = res.to_dict()
        assert parse_resource(doc).to_dict() == doc
        assert parse_json(res.to_json()).to_dict() == doc
        assert json.loads(res.to_json()) == doc
        assert kind_from_key(res.etcd_key()).kind == res.kind


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_example_uses_project_address_plan(path):
    text = path.read_text()
    for forbidden in ("10.", "192.168.", "172.16."):
        assert forbidden not in text
