"""The datastore against a real etcd: CAS, all-or-nothing, and a syncer that
survives an etcd restart and a compaction by re-listing and emitting only the
differences."""

from __future__ import annotations

import asyncio
import queue
import sys
import threading

import pytest

from pybgp.datastore import kv
from pybgp.datastore.etcdv3 import EtcdClient, EtcdConfig
from pybgp.datastore.loop_syncer import LoopSyncer
from pybgp.datastore.syncer import InSync, Status, Syncer, Update
from pybgp.errors import AlreadyExistsError, ConflictError, DatastoreUnavailable

pytestmark = pytest.mark.root


@pytest.fixture
def client(etcd):
    c = EtcdClient(EtcdConfig(endpoints=[etcd.endpoint], timeout=2))
    yield c
    c.close()


def test_crud_and_cas(client):
    rev = kv.create(client, "/t/a", b"1")
    with pytest.raises(AlreadyExistsError):
        kv.create(client, "/t/a", b"1")
    with pytest.raises(ConflictError, match="changed"):
        kv.update(client, "/t/a", b"2", rev - 1)
    rev2 = kv.update(client, "/t/a", b"2", rev)
    kvs, at = client.list("/t/")
    assert [(k.key, k.value, k.mod_revision) for k in kvs] == [("/t/a", b"2", rev2)]
    assert at >= rev2
    kv.delete(client, "/t/a", rev2)
    assert client.get("/t/a") is None


def test_txn_all_or_nothing(client):
    kv.create(client, "/t/x", b"1")
    with pytest.raises(AlreadyExistsError, match="/t/x"):
        client.txn([kv.Check("/t/y", 0), kv.Check("/t/x", 0)],
                   [kv.Put("/t/y", b"1"), kv.Put("/t/x", b"2")])
    assert client.get("/t/y") is None
    assert client.get("/t/x").value == b"1"


def test_failover_to_second_endpoint(etcd):
    c = EtcdClient(EtcdConfig(endpoints=["http://127.0.0.1:9", etcd.endpoint], timeout=2))
    kv.create(c, "/t/f", b"ok")
    assert c.get("/t/f").value == b"ok"


def test_unreachable_is_clear_and_fast():
    c = EtcdClient(EtcdConfig(endpoints=["http://127.0.0.1:9"], timeout=2))
    with pytest.raises(DatastoreUnavailable, match="127.0.0.1:9"):
        c.get("/x")


class _Follower:
    """Runs a Syncer in a thread (``Syncer.events()``) or from an asyncio
    loop (``LoopSyncer``, the loop in a thread of its own) and hands its
    events to the test."""

    def __init__(self, endpoint: str, prefix: str, mode: str = "thread", **config):
        self.events: queue.Queue = queue.Queue()
        # Cleared by a test to keep the follower from reconnecting until set again.
        self.gate = threading.Event()
        self.gate.set()
        self.mode = mode
        self.foreign_threads: set[int] = set()  # loop mode: events emitted outside the loop

        def connect():
            assert self.gate.wait(30)
            return EtcdClient(EtcdConfig(endpoints=[endpoint], timeout=2, **config))

        self.connect = connect
        self.syncer = Syncer(connect, prefix, max_backoff=0.5)  # thread mode
        self.prefix = prefix
        self.ready = threading.Event()
        self.thread = threading.Thread(
            target=self._run if mode == "thread" else lambda: asyncio.run(self._run_loop()),
            daemon=True)
        self.thread.start()
        assert self.ready.wait(10)

    def _run(self):
        self.ready.set()
        for ev in self.syncer.events():
            self.events.put(ev)

    async def _run_loop(self):
        self.loop = asyncio.get_running_loop()
        self.stopping = asyncio.Event()
        me = threading.get_ident()

        def emit(events):
            if threading.get_ident() != me:
                self.foreign_threads.add(threading.get_ident())
            for ev in events:
                self.events.put(ev)

        runner = LoopSyncer(self.connect, self.prefix, emit, max_backoff=0.5)
        runner.start()
        self.ready.set()
        await self.stopping.wait()
        await runner.stop()

    def until(self, pred, timeout=15.0):
        """Events up to and including the first one matching ``pred``."""
        got = []
        while True:
            ev = self.events.get(timeout=timeout)
            got.append(ev)
            if pred(ev):
                return got

    def stop(self):
        if self.mode == "thread":
            self.syncer.stop()
        else:
            self.loop.call_soon_threadsafe(self.stopping.set)
        self.thread.join(5)
        assert not self.thread.is_alive()
        assert not self.foreign_threads


MODES = pytest.mark.parametrize("mode", ["thread", "loop"])


def updates(evs):
    return [(e.key, e.value) for e in evs if isinstance(e, Update)]


@MODES
def test_syncer_snapshot_insync_updates(client, etcd, mode):
    kv.create(client, "/s/a", b"1")
    kv.create(client, "/s/b", b"1")
    kv.create(client, "/other", b"x")
    f = _Follower(etcd.endpoint, "/s/", mode)
    try:
        snap = f.until(lambda e: isinstance(e, InSync))
        assert updates(snap) == [("/s/a", b"1"), ("/s/b", b"1")]
        kv.update(client, "/s/a", b"2", client.get("/s/a").mod_revision)
        kv.delete(client, "/s/b", client.get("/s/b").mod_revision)
        kv.create(client, "/s/c", b"1")
        evs = f.until(lambda e: isinstance(e, Update) and e.key == "/s/c")
        assert updates(evs) == [("/s/a", b"2"), ("/s/b", None), ("/s/c", b"1")]
    finally:
        f.stop()


@MODES
def test_syncer_survives_etcd_restart(client, etcd, mode):
    kv.create(client, "/s/keep", b"1")
    kv.create(client, "/s/gone", b"1")
    f = _Follower(etcd.endpoint, "/s/", mode)
    try:
        f.until(lambda e: isinstance(e, InSync))
        etcd.stop()
        f.until(lambda e: isinstance(e, Status) and e.state == "down")
        etcd.start()
        c2 = EtcdClient(EtcdConfig(endpoints=[etcd.endpoint], timeout=2))
        # Changes made while the follower was cut off must arrive as differences.
        kv.delete(c2, "/s/gone", c2.get("/s/gone").mod_revision)
        kv.create(c2, "/s/new", b"1")
        evs = f.until(lambda e: isinstance(e, Update) and e.key == "/s/new")
        got = updates(evs)
        assert ("/s/gone", None) in got and ("/s/new", b"1") in got
        assert ("/s/keep", b"1") not in got  # unchanged keys are not re-sent
        kv.create(c2, "/s/after", b"1")
        assert updates(f.until(lambda e: isinstance(e, Update))) == [("/s/after", b"1")]
    finally:
        f.stop()


@MODES
def test_syncer_survives_compaction(client, etcd, mode):
    kv.create(client, "/s/a", b"1")
    f = _Follower(etcd.endpoint, "/s/", mode)
    try:
        f.until(lambda e: isinstance(e, InSync))
        # Cut the follower's watch and hold it off; change and compact while it
        # is away, so its re-watch meets "required revision has been compacted".
        f.gate.clear()
        etcd.stop()
        f.until(lambda e: isinstance(e, Status) and e.state == "down")
        etcd.start()
        c2 = EtcdClient(EtcdConfig(endpoints=[etcd.endpoint], timeout=2))
        for i in range(5):
            kv.update(c2, "/s/a", str(i).encode(), c2.get("/s/a").mod_revision)
        kv.create(c2, "/s/b", b"1")
        c2.compact(c2.revision())
        f.gate.set()
        evs = f.until(lambda e: isinstance(e, Update) and e.key == "/s/b")
        assert updates(evs) == [("/s/a", b"4"), ("/s/b", b"1")]
    finally:
        f.stop()


def test_watch_from_compacted_revision_relists(client, etcd):
    """The syncer's own compaction path: watch start revision already compacted."""
    kv.create(client, "/s/a", b"1")
    syncer = Syncer(lambda: EtcdClient(EtcdConfig(endpoints=[etcd.endpoint])), "/s/")
    it = syncer.events()
    assert isinstance(next(it), Status)
    assert updates([next(it)]) == [("/s/a", b"1")]
    assert isinstance(next(it), InSync)
    # Move on and compact past the syncer's revision before it starts watching.
    kv.update(client, "/s/a", b"2", client.get("/s/a").mod_revision)
    kv.create(client, "/s/z", b"1")
    client.compact(client.revision())
    evs = []
    for ev in it:
        evs.append(ev)
        if isinstance(ev, InSync):
            break
    assert any(isinstance(e, Status) and e.state == "resyncing" for e in evs)
    assert updates(evs) == [("/s/a", b"2"), ("/s/z", b"1")]
    syncer.stop()


def test_unix_socket_endpoint_from_inside_a_namespace(etcd, topology):
    """Daemons in node namespaces reach etcd over its unix socket (127.0.0.1 is theirs)."""
    node = topology.add_node("n1", "198.18.0.11/24")
    c = EtcdClient(EtcdConfig(endpoints=[etcd.unix_endpoint]))
    kv.create(c, "/t/unix", b"yes")
    out = topology.exec(node, sys.executable, "-c",
                        "import sys; from pybgp.datastore.etcdv3 import EtcdClient, EtcdConfig;"
                        "c = EtcdClient(EtcdConfig(endpoints=[sys.argv[1]]));"
                        "print(c.get('/t/unix').value.decode())", etcd.unix_endpoint)
    assert out.stdout.strip() == "yes"


def test_tls_with_ca_and_client_certificate(tmp_path):
    from pybgp.testing.etcd import EtcdServer, make_tls

    server_files, client_files = make_tls(str(tmp_path))
    with EtcdServer(tls=server_files) as server:
        good = EtcdClient(EtcdConfig(endpoints=[server.tls_endpoint],
                                     ca_cert_file=client_files.ca, cert_file=client_files.cert,
                                     key_file=client_files.key, timeout=3))
        kv.create(good, "/t/tls", b"ok")
        assert good.get("/t/tls").value == b"ok"
        # the server demands a client certificate
        no_cert = EtcdClient(EtcdConfig(endpoints=[server.tls_endpoint],
                                        ca_cert_file=client_files.ca, timeout=3))
        with pytest.raises(DatastoreUnavailable, match=server.tls_endpoint):
            no_cert.get("/t/tls")
        # and the client checks the server against its CA
        (tmp_path / "other").mkdir()
        other_ca, _ = make_tls(str(tmp_path / "other"))
        wrong_ca = EtcdClient(EtcdConfig(endpoints=[server.tls_endpoint], ca_cert_file=other_ca.ca,
                                         cert_file=client_files.cert, key_file=client_files.key,
                                         timeout=3))
        with pytest.raises(DatastoreUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
            wrong_ca.get("/t/tls")
        # a watch over TLS, read by a thread and by a loop (a TLS socket can
        # hold decrypted bytes the kernel does not signal)
        tls = dict(ca_cert_file=client_files.ca, cert_file=client_files.cert,
                   key_file=client_files.key)
        for mode in ("thread", "loop"):
            f = _Follower(server.tls_endpoint, "/t/", mode, **tls)
            try:
                assert ("/t/tls", b"ok") in updates(f.until(lambda e: isinstance(e, InSync)))
                big = bytes(range(256)) * 200  # several TLS records, one event
                kv.create(good, f"/t/{mode}", big)
                kv.create(good, f"/t/{mode}-2", b"2")
                last = f"/t/{mode}-2"
                evs = f.until(lambda e, last=last: isinstance(e, Update) and e.key == last)
                assert updates(evs) == [(f"/t/{mode}", big), (f"/t/{mode}-2", b"2")]
            finally:
                f.stop()


def test_user_password_auth():
    from pybgp.errors import DatastoreError
    from pybgp.testing.etcd import EtcdServer

    with EtcdServer() as server:
        admin = EtcdClient(EtcdConfig(endpoints=[server.endpoint], timeout=3))
        admin.request("/v3/auth/user/add", {"name": "root", "password": "rootpw"})
        admin.request("/v3/auth/user/grant", {"user": "root", "role": "root"})
        admin.request("/v3/auth/enable", {})
        authed = EtcdClient(EtcdConfig(endpoints=[server.endpoint], username="root",
                                       password="rootpw", timeout=3))
        kv.create(authed, "/t/auth", b"ok")
        assert authed.get("/t/auth").value == b"ok"
        anonymous = EtcdClient(EtcdConfig(endpoints=[server.endpoint], timeout=3))
        with pytest.raises(DatastoreError, match="user name is empty|permission denied"):
            anonymous.get("/t/auth")
        wrong = EtcdClient(EtcdConfig(endpoints=[server.endpoint], username="root",
                                      password="nope", timeout=3))
        with pytest.raises(DatastoreError, match="authentication failed"):
            wrong.get("/t/auth")
