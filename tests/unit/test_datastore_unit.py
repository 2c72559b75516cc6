"""Datastore pieces that need no etcd: key ranges, CAS semantics, config resolution."""

import contextlib

import pytest

from pybgp.config import etcd_config
from pybgp.datastore import kv
from pybgp.datastore.etcdv3 import EtcdClient, EtcdConfig, prefix_end
from pybgp.datastore.memory import MemoryKV
from pybgp.errors import (
    AlreadyExistsError,
    ConflictError,
    DatastoreError,
    DatastoreUnavailable,
    ValidationError,
)


def test_prefix_end():
    assert prefix_end("/calico/") == b"/calico0"
    assert prefix_end("a\xff") == b"a\xc3\xc0"  # utf-8 c3 bf: last byte bumped
    assert prefix_end("") == b"\0"


def test_memory_cas():
    m = MemoryKV()
    rev = kv.create(m, "/a", b"1")
    with pytest.raises(AlreadyExistsError):
        kv.create(m, "/a", b"2")
    with pytest.raises(ConflictError, match="changed"):
        kv.update(m, "/a", b"2", rev - 1)
    rev2 = kv.update(m, "/a", b"2", rev)
    assert rev2 > rev
    with pytest.raises(ConflictError, match="changed"):
        kv.delete(m, "/a", rev)
    kv.delete(m, "/a", rev2)
    assert m.get("/a") is None
    with pytest.raises(ConflictError, match="deleted"):
        kv.update(m, "/a", b"3", rev2)


def test_memory_txn_all_or_nothing():
    m = MemoryKV()
    kv.create(m, "/x", b"1")
    with pytest.raises(AlreadyExistsError):
        m.txn([kv.Check("/y", 0), kv.Check("/x", 0)], [kv.Put("/y", b"1"), kv.Put("/x", b"2")])
    assert m.get("/y") is None
    assert m.get("/x").value == b"1"


def test_config_precedence(tmp_path):
    cfg_file = tmp_path / "pybgp.cfg"
    cfg_file.write_text(
        "apiVersion: projectcalico.org/v3\nkind: CalicoAPIConfig\n"
        "spec:\n  datastoreType: etcdv3\n  etcdEndpoints: http://198.18.0.1:2379\n"
        "  etcdUsername: fromfile\n  etcdPassword: secret\n"
    )
    cfg = etcd_config({}, env={}, config_file=str(cfg_file))
    assert cfg.endpoints == ["http://198.18.0.1:2379"]
    assert cfg.username == "fromfile"
    cfg = etcd_config({}, env={"ETCD_ENDPOINTS": "http://a:1, http://b:2"},
                      config_file=str(cfg_file))
    assert cfg.endpoints == ["http://a:1", "http://b:2"]
    assert cfg.password == "secret"
    cfg = etcd_config({"endpoints": "https://c:3", "ca_cert_file": "/ca.pem"},
                      env={"ETCD_ENDPOINTS": "http://a:1"}, config_file=str(cfg_file))
    assert cfg.endpoints == ["https://c:3"] and cfg.ca_cert_file == "/ca.pem"


def test_config_default_and_errors(tmp_path):
    cfg = etcd_config({}, env={}, config_file=None)
    assert cfg.endpoints  # default or /etc file; never empty
    bad = tmp_path / "bad.cfg"
    bad.write_text("kind: CalicoAPIConfig\nspec:\n  datastoreType: kubernetes\n")
    with pytest.raises(ValidationError, match="spec.datastoreType"):
        etcd_config({}, env={}, config_file=str(bad))
    with pytest.raises(ValidationError, match="cannot read"):
        etcd_config({}, env={}, config_file=str(tmp_path / "missing.cfg"))


def test_bad_endpoint_named():
    with pytest.raises(DatastoreError, match="ftp://x"):
        EtcdClient(EtcdConfig(endpoints=["ftp://x"]))


def test_prefetched_serves_one_snapshot_until_the_first_write():
    m = MemoryKV()
    kv.create(m, "/a", b"1")
    kv.create(m, "/p/x", b"1")
    view = kv.Prefetched(m, keys=["/a", "/missing"], prefixes=["/p/"])
    kv.update(m, "/a", b"2", m.get("/a").mod_revision)  # changes behind the snapshot
    kv.create(m, "/p/y", b"1")
    assert view.get("/a").value == b"1"  # the snapshot
    assert view.get("/missing") is None
    assert [k.key for k in view.list("/p/")[0]] == ["/p/x"]
    assert view.get("/a").value == b"2"  # each snapshot entry is served once
    # a write based on the stale snapshot fails its check, and the retry reads fresh
    stale = kv.Prefetched(m, keys=["/a"])
    kv.update(m, "/a", b"3", m.get("/a").mod_revision)
    with pytest.raises(ConflictError):
        kv.update(stale, "/a", b"x", stale.get("/a").mod_revision)
    assert stale.get("/a").value == b"3"


def test_loop_syncer_tells_of_a_bug_and_not_of_a_stop() -> None:
    """A follower that dies of a bug (not a datastore error, which it retries)
    calls ``on_bug`` with the exception; one that is stopped does not."""
    import asyncio

    from pybgp.datastore.loop_syncer import LoopSyncer

    def broken_factory():
        raise RuntimeError("a bug in the client factory")

    async def main() -> tuple[list[BaseException], list[BaseException]]:
        bugs: list[BaseException] = []
        runner = LoopSyncer(broken_factory, "/calico/", lambda evs: None)
        task = runner.start(on_bug=bugs.append)
        with contextlib.suppress(RuntimeError):
            await task
        await asyncio.sleep(0)  # done callbacks run on the next turn
        stopped: list[BaseException] = []

        def never_connects():
            raise DatastoreUnavailable("etcd is down")

        idle = LoopSyncer(never_connects, "/calico/", lambda evs: None, min_backoff=5)
        idle.start(on_bug=stopped.append)
        await asyncio.sleep(0.05)
        await idle.stop()
        await asyncio.sleep(0)
        return bugs, stopped

    bugs, stopped = asyncio.run(main())
    assert [str(b) for b in bugs] == ["a bug in the client factory"]
    assert stopped == []
