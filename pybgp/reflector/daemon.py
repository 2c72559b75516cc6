"""``pybgp reflector``: the asyncio shell around the reflector's pure core.

It only moves bytes and time: a listening socket (with a TCP-MD5 key per
peer and per range), outgoing connections to active peers, the bytes each
connection reads handed to its ``Peer``, the actions that come back carried
out (bytes into the connection's ``Outbox``, sessions up and down and their
routes to the ``Reflector`` core), and after every burst of reads one
``flush`` of the core and one round of writes: every connection's outbox is
written with ``sendmsg`` straight from the shared chunks (nothing is copied
per connection; a full socket waits for the loop to say it is writable).
Timers: a tick that runs the sessions' hold and keepalive timers and the
connect-retry of active peers, and the core's named timers.

With a ``nodeSelector`` in the configuration it follows Calico Node
resources in etcd (``LoopSyncer``) and keeps one peer per selected node.
It answers BIRD's control socket and pybgp's JSON socket (``view``).

Readiness (systemd's ``Type=notify``, ``pybgp.notify``): ``READY=1`` once,
when it listens, its control sockets answer and it knows its peers — the
configured ones, and with a ``nodeSelector`` the Nodes selected from a
whole read of the datastore; ``STOPPING=1`` when it begins to stop.

Must never: block the loop, or decide anything about routes.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pybgp import notify
from pybgp.reflector import md5
from pybgp.reflector import peer as pr
from pybgp.reflector import session as s
from pybgp.reflector.config import ReflectorConfig
from pybgp.reflector.core import Effects, Reflector, Settings
from pybgp.reflector.groups import Outbox
from pybgp.stopping import Stopping

log = logging.getLogger("pybgp.reflector")
TICK = 0.5  # seconds between timer passes (hold, keepalive, connect retry)
READ_SIZE = 1 << 16
NODES_PREFIX = "/calico/resources/v3/projectcalico.org/nodes/"


@dataclass
class Options:
    config: ReflectorConfig
    bird_socket: str = "/var/run/pybgp/reflector.ctl"
    json_socket: str = "/var/run/pybgp/reflector.sock"
    etcd: Any = None  # EtcdConfig, needed with a nodeSelector


class Conn:
    """One TCP connection and what it still has to write."""

    __slots__ = ("id", "sock", "address", "peer", "outbox", "connecting", "writing", "closed")

    def __init__(self, conn_id: int, sock: socket.socket, address: str, peer: pr.Peer):
        self.id, self.sock, self.address, self.peer = conn_id, sock, address, peer
        self.outbox = Outbox(address)
        self.connecting = False
        self.writing = False  # waiting for the socket to be writable
        self.closed = False


def _address(raw: str) -> str:
    ip = ipaddress.ip_address(raw.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


class ReflectorDaemon:
    def __init__(self, opts: Options):
        self.opts = opts
        cfg = self.cfg = opts.config
        now = time.monotonic()
        self.started_wall = time.time()
        self.reconfigured_wall = self.started_wall
        self.core = Reflector(Settings(
            router_id=cfg.router_id, cluster_id=cfg.cluster_id, asn=cfg.asn,
            families=cfg.families, startup_hold=cfg.startup_hold, stale_time=cfg.stale_time,
            restart_limit=cfg.restart_limit), now)
        self.peers: dict[str, pr.Peer] = {}
        self.conns: dict[int, Conn] = {}
        self._next_conn = 0
        self.listener: socket.socket | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stopping = Stopping(log)
        self._flush_due = False
        self.nodes: dict[str, tuple[dict[str, str], tuple[str, ...]]] = {}
        self.datastore_state = "not used" if not cfg.uses_datastore else "connecting"
        self.unsynced = cfg.uses_datastore
        self.serving = False  # control sockets answer
        self.notified_ready = False
        self.rejected = 0  # connections from addresses that are no peer of ours
        self.wall_offset = time.time() - now
        self.local_settings = {True: self._local(restarting=True),
                               False: self._local(restarting=False)}

    def _local(self, restarting: bool) -> s.LocalSettings:
        cfg = self.cfg
        return s.LocalSettings(asn=cfg.asn, router_id=cfg.router_id, peer_as=cfg.asn,
                               hold_time=cfg.hold_time, families=cfg.families,
                               restart_time=cfg.restart_time, restarting=restarting)

    @property
    def local(self) -> s.LocalSettings:
        return self.local_settings[self.core.holding]

    def wall(self, mono: float) -> float:
        return mono + self.wall_offset

    # -- the loop ---------------------------------------------------------------------
    async def run(self) -> None:
        self.loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(sig, self.stopping.set)
        self._listen()
        self._set_peers(self.cfg.static_peers())
        self._effects(self.core.start())
        syncer = self._follow_nodes() if self.cfg.uses_datastore else None
        servers = await self._serve_ctl()
        ticker = self.loop.create_task(self._ticker())
        log.info("reflector %s (cluster %s, AS %d) listening on %s:%d", self.cfg.router_id,
                 self.cfg.cluster_id, self.cfg.asn, self.cfg.listen_address,
                 self.cfg.listen_port)
        self.serving = True
        self._ready_if_due()
        try:
            await self.stopping.until()
        finally:
            notify.stopping()
            ticker.cancel()
            if syncer is not None:
                await syncer.stop()
            from pybgp.speaker.ctl import stop as ctl_stop

            for server, path in zip(servers, self._ctl_paths, strict=True):
                await ctl_stop(server, path)
            self._shutdown()

    def _ready_if_due(self) -> None:
        """Tell systemd (``$NOTIFY_SOCKET``) once: listening, answering on the
        control sockets, and its peers known (with a ``nodeSelector``: from a
        whole read of the Nodes). Never again after a re-list."""
        if self.serving and not self.unsynced and not self.notified_ready:
            self.notified_ready = True
            cfg = self.cfg
            notify.ready(f"listening on {cfg.listen_address}:{cfg.listen_port}, "
                         f"{len(self.peers)} peers configured")

    def _guard(self, fn: Callable[..., None], *args: Any) -> None:
        """Run a loop callback; a bug stops the daemon (and says why)."""
        try:
            fn(*args)
        except Exception as exc:
            self.stopping.fail(exc, "handling an event")

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(TICK)
            self._guard(self._tick)

    def _tick(self) -> None:
        now = time.monotonic()
        local = self.local
        for p in list(self.peers.values()):
            p.local = local  # the Restart State bit goes once the start-up hold is over
            self._actions(p, p.tick(now))
            self._forget_if_gone(p)
            if p.wants_connection(now):
                self._connect(p, now)
        self._schedule_flush()

    # -- peers --------------------------------------------------------------------------
    def _set_peers(self, wanted: dict[str, pr.PeerSpec]) -> None:
        """Configured (and selected) peers: add the new, drop the gone."""
        now = time.monotonic()
        keep = {a: p for a, p in self.peers.items() if p.spec.dynamic}
        for address, spec in wanted.items():
            old = self.peers.get(address)
            if old is not None and old.spec == spec:
                keep[address] = old
                continue
            if old is not None:
                self._drop_peer(old, "Peer de-configured")
            keep[address] = pr.Peer(spec, self.local, now, self.cfg.connect_retry)
            self._listen_key(spec)
        for address, old in self.peers.items():
            if address not in keep and not old.spec.dynamic:
                self._drop_peer(old, "Peer de-configured")
        self.peers = keep
        self._effects(self.core.set_expected(a for a, p in keep.items() if not p.spec.dynamic))

    def _drop_peer(self, p: pr.Peer, why: str) -> None:
        self._actions(p, p.shutdown(6, 3, why))
        if self.listener is not None and p.spec.password and not p.spec.dynamic:
            with contextlib.suppress(OSError):
                md5.set_key(self.listener, p.spec.address, None)

    def _listen_key(self, spec: pr.PeerSpec) -> None:
        if self.listener is not None and spec.password and not spec.dynamic:
            md5.set_key(self.listener, spec.address, spec.password)

    # -- sockets ----------------------------------------------------------------------
    def _listen(self) -> None:
        cfg = self.cfg
        family = socket.AF_INET6 if ":" in cfg.listen_address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        for n in cfg.neighbors:  # ranges: one key for every address inside
            if n.range is not None and n.password:
                md5.set_key(sock, str(n.range.network_address), n.password, n.range.prefixlen)
        sock.bind((cfg.listen_address, cfg.listen_port))
        sock.listen(1024)
        sock.setblocking(False)
        self.listener = sock
        assert self.loop is not None
        self.loop.add_reader(sock, self._guard, self._accept)

    def _new_conn(self, sock: socket.socket, address: str, p: pr.Peer) -> Conn:
        self._next_conn += 1
        conn = Conn(self._next_conn, sock, address, p)
        self.conns[conn.id] = conn
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def _accept(self) -> None:
        assert self.listener is not None and self.loop is not None
        now = time.monotonic()
        for _ in range(64):
            try:
                sock, addr = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # e.g. EMFILE: the next connection may do
                log.warning("accept: %s", exc)
                break
            address = _address(addr[0])
            p = self.peers.get(address)
            if p is None:
                rng = self.cfg.range_for(address)
                if rng is None:
                    self.rejected += 1
                    log.info("connection from %s: not a peer of ours, closed", address)
                    sock.close()
                    continue
                p = self.peers[address] = pr.Peer(rng.spec(address, dynamic=True), self.local,
                                                  now, self.cfg.connect_retry)
            conn = self._new_conn(sock, address, p)
            self.loop.add_reader(sock, self._guard, self._readable, conn)
            self._actions(p, p.accepted(conn.id, now))
        self._schedule_flush()

    def _connect(self, p: pr.Peer, now: float) -> None:
        assert self.loop is not None
        spec = p.spec
        family = socket.AF_INET6 if ":" in spec.address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            if spec.password:
                md5.set_key(sock, spec.address, spec.password)
            if self.cfg.listen_address not in ("0.0.0.0", "::") and \
                    (":" in self.cfg.listen_address) == (family == socket.AF_INET6):
                sock.bind((self.cfg.listen_address, 0))
            sock.setblocking(False)
            err = sock.connect_ex((spec.address, spec.port))
        except OSError as exc:
            sock.close()
            p.next_connect = now + self.cfg.connect_retry
            p.last_error = f"Socket: {exc.strerror or exc}"
            return
        conn = self._new_conn(sock, spec.address, p)
        p.connecting(conn.id, now)
        if err in (0, errno.EINPROGRESS):
            conn.connecting = True
            self.loop.add_writer(sock, self._guard, self._connected, conn)
        else:
            self._conn_failed(conn, os_error_text(err))

    def _connected(self, conn: Conn) -> None:
        assert self.loop is not None
        self.loop.remove_writer(conn.sock)
        conn.connecting = False
        err = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self._conn_failed(conn, os_error_text(err))
            return
        self.loop.add_reader(conn.sock, self._guard, self._readable, conn)
        self._actions(conn.peer, conn.peer.connected(conn.id, time.monotonic()))
        self._schedule_flush()

    def _conn_failed(self, conn: Conn, reason: str) -> None:
        conn.peer.connect_failed(conn.id, reason, time.monotonic())
        self._close(conn)

    def _readable(self, conn: Conn) -> None:
        try:
            data = conn.sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._actions(conn.peer, conn.peer.lost(conn.id, exc.strerror or str(exc),
                                                    time.monotonic()))
            self._schedule_flush()
            return
        now = time.monotonic()
        if not data:
            self._actions(conn.peer, conn.peer.lost(conn.id, "Connection closed", now))
        else:
            self._actions(conn.peer, conn.peer.data(conn.id, data, now))
        self._schedule_flush()

    def _close(self, conn: Conn) -> None:
        if conn.closed:
            return
        conn.closed = True
        assert self.loop is not None
        self.loop.remove_reader(conn.sock)
        self.loop.remove_writer(conn.sock)
        box = conn.outbox
        if box.group is not None:
            box.group.leave(box)
        with contextlib.suppress(OSError):
            conn.sock.close()
        self.conns.pop(conn.id, None)

    # -- actions and effects --------------------------------------------------------------
    def _actions(self, p: pr.Peer, actions: list[pr.PeerAction]) -> None:
        now = time.monotonic()
        core = self.core
        address = p.spec.address
        for conn_id, act in actions:
            conn = self.conns.get(conn_id) if conn_id is not None else None
            if isinstance(act, s.Send):
                if conn is not None:
                    conn.outbox.send(act.data)
            elif isinstance(act, s.Routes):
                core.routes(address, act.update)
                if act.update.error:
                    log.warning("%s: treat-as-withdraw: %s", p.spec.name, act.update.error)
            elif isinstance(act, s.EndOfRib):
                self._effects(core.end_of_rib(address, act.family))
            elif isinstance(act, s.Refresh):
                core.refresh(address, act.family)
            elif isinstance(act, s.Up):
                log.info("%s: established (%s)", p.spec.name, act.info.router_id)
                if conn is not None:
                    self._effects(core.peer_up(address, p.spec.role, act.info, conn.outbox,
                                               now))
            elif isinstance(act, pr.Down):
                log.info("%s: down (%s)", p.spec.name, act.reason)
                self._effects(core.peer_down(address, act.graceful, now))
            elif isinstance(act, s.Closed) and conn is not None:
                self._finish(conn)
        self._forget_if_gone(p)

    def _forget_if_gone(self, p: pr.Peer) -> None:
        """A peer from a range is shown while it has a session or paths (stale
        ones, while it restarts); then it is forgotten."""
        address = p.spec.address
        if (p.spec.dynamic and not p.sessions and self.peers.get(address) is p
                and not self.core.rib.imported_count(address)):
            del self.peers[address]
            self.core.forget(address)

    def _finish(self, conn: Conn) -> None:
        """A session ended: write what it queued last (its NOTIFICATION) if the
        socket takes it now, then close."""
        box = conn.outbox
        if box.group is not None:
            box.group.leave(box)
        with contextlib.suppress(OSError):
            while not conn.connecting:
                bufs = box.buffers()
                if not bufs:
                    break
                n = conn.sock.sendmsg(bufs)
                box.advance(n)
                if n < sum(len(b) for b in bufs):
                    break
        self._close(conn)

    def _effects(self, fx: Effects) -> None:
        assert self.loop is not None
        for name, delay in fx.timers:
            self.loop.call_later(delay, self._guard, self._timer, name)
        for address, code, sub, why in fx.reset:
            p = self.peers.get(address)
            if p is not None:
                log.warning("%s: reset: %s", p.spec.name, why)
                self._actions(p, p.shutdown(code, sub, why, time.monotonic()))

    def _timer(self, name: str) -> None:
        self._effects(self.core.timer(name, time.monotonic()))
        self._schedule_flush()

    # -- writing ------------------------------------------------------------------------
    def _schedule_flush(self) -> None:
        if not self._flush_due:
            self._flush_due = True
            assert self.loop is not None
            self.loop.call_soon(self._guard, self._flush)

    def _flush(self) -> None:
        self._flush_due = False
        self._effects(self.core.flush())
        for conn in list(self.conns.values()):
            if not conn.writing and not conn.connecting and not conn.closed:
                self._write(conn)
        for group in self.core.groups.values():
            group.trim()

    def _write(self, conn: Conn) -> None:
        box = conn.outbox
        sock = conn.sock
        while True:
            bufs = box.buffers()
            if not bufs:
                break
            try:
                n = sock.sendmsg(bufs)
            except (BlockingIOError, InterruptedError):
                n = 0
            except OSError as exc:
                self._actions(conn.peer, conn.peer.lost(conn.id, exc.strerror or str(exc),
                                                        time.monotonic()))
                return
            box.advance(n)
            if n < sum(len(b) for b in bufs):
                if not conn.writing:
                    conn.writing = True
                    assert self.loop is not None
                    self.loop.add_writer(sock, self._guard, self._writable, conn)
                return
        if conn.writing:
            conn.writing = False
            assert self.loop is not None
            self.loop.remove_writer(sock)

    def _writable(self, conn: Conn) -> None:
        self._write(conn)
        if not conn.writing and conn.outbox.group is not None:
            conn.outbox.group.trim()

    # -- the datastore --------------------------------------------------------------------
    def _follow_nodes(self) -> Any:
        from pybgp.datastore.etcdv3 import EtcdClient
        from pybgp.datastore.loop_syncer import LoopSyncer
        from pybgp.datastore.syncer import InSync, Status, Update

        cfg = self.opts.etcd
        if cfg is None:
            raise RuntimeError("a nodeSelector needs the datastore (--etcd-endpoints)")

        def events(evs: list[Any]) -> None:
            changed = False
            for ev in evs:
                if isinstance(ev, Update):
                    changed |= self._node(ev.key, ev.value)
                elif isinstance(ev, InSync):
                    self.unsynced = False
                    self.datastore_state = "in sync"
                    changed = True
                elif isinstance(ev, Status) and ev.state != "connected":
                    self.datastore_state = f"{ev.state}: {ev.reason}"
            if changed and not self.unsynced:
                self._guard(self._reselect)
                if self.stopping.failure is None:
                    self._ready_if_due()

        runner = LoopSyncer(lambda: EtcdClient(cfg), NODES_PREFIX, events)
        runner.start(on_bug=self.stopping.on_bug("following Nodes"))
        return runner

    def _node(self, key: str, value: bytes | None) -> bool:
        from pybgp.errors import ValidationError
        from pybgp.model import parse_json

        name = key[len(NODES_PREFIX):]
        before = self.nodes.get(name)
        if value is None:
            self.nodes.pop(name, None)
        else:
            try:
                res = parse_json(value)
            except (ValidationError, ValueError) as exc:
                log.warning("Node %s: %s", name, exc)
                self.nodes.pop(name, None)
                return before is not None
            bgp = res.spec.bgp
            addrs = []
            if bgp is not None:
                for a in (bgp.ipv4, getattr(bgp, "ipv6", None)):
                    if a:
                        addrs.append(str(a).split("/")[0])
            self.nodes[name] = (dict(res.labels), tuple(addrs))
        return self.nodes.get(name) != before

    def _reselect(self) -> None:
        wanted = self.cfg.static_peers()
        wanted.update(self.cfg.selected_peers(self.nodes.values()))
        self._set_peers(wanted)
        self.reconfigured_wall = time.time()
        self._schedule_flush()

    # -- control sockets --------------------------------------------------------------------
    @property
    def _ctl_paths(self) -> list[str]:
        return [self.opts.bird_socket, self.opts.json_socket]

    async def _serve_ctl(self) -> list[asyncio.Server]:
        from pybgp.reflector.view import View
        from pybgp.speaker.ctl import serve_both

        return await serve_both(self.opts.bird_socket, self.opts.json_socket, View(self))

    def _shutdown(self) -> None:
        """Cease (administrative shutdown) to every peer, then close everything."""
        for p in list(self.peers.values()):
            with contextlib.suppress(Exception):
                self._actions(p, p.shutdown(6, 2, "reflector shutting down"))
        for conn in list(self.conns.values()):
            self._close(conn)
        if self.listener is not None:
            assert self.loop is not None
            self.loop.remove_reader(self.listener)
            self.listener.close()


def os_error_text(err: int) -> str:
    import os

    return os.strerror(err)


def more_files() -> None:
    """One socket per peer: take the hard limit of open files (often 1024
    soft, far more hard), as a reflector for thousands of nodes needs."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY
                                                        else 1 << 20, hard))


def main(opts: Options) -> int:
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    more_files()
    asyncio.run(ReflectorDaemon(opts).run())
    return 0
