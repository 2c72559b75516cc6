"""``pybgp speaker``: the node's BGP speaker (BIRD's role in Calico).

The shell around ``core.Speaker``: one asyncio loop and one queue of
events. Producers — etcd watches and ExaBGP's lines (sockets and a pipe the
loop reads itself, which drain at once), the kernel route monitor (a socket
reader), timers — append to the queue and make sure one drain is scheduled
(or run it); the drain, a plain callback of
the loop, feeds everything queued to the pure core at once and carries out
its effects (a task and a future per event cost a few loop turns on the
path of every new block). Kernel writes are coalesced: after a burst of
events the desired routes are applied once, in a worker thread, so a
100k-route write never stalls the BGP sessions; a change of a few routes (a
new block) is written from the loop at once, which is quicker than the
hand-off to the thread.

Nothing is written to ExaBGP or the kernel before every datastore prefix is
in sync (a half-read datastore would look like peers and blocks vanished).
Readiness (``READY=1`` to ``$NOTIFY_SOCKET``, for systemd's ``Type=notify``
and the lab) is sent once, when the datastore is in sync and the control
sockets answer; nothing on the event or route paths sends anything.
On exit nothing is flushed: routes persist in the kernel like BIRD's
``persist``, and peers keep ours for the graceful-restart time.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pybgp import notify
from pybgp.datastore.etcdv3 import EtcdClient, EtcdConfig
from pybgp.datastore.loop_syncer import LoopSyncer
from pybgp.datastore.syncer import InSync, Status, SyncEvent, Update
from pybgp.ipam.keys import affinities_prefix
from pybgp.kernel_sync.monitor import RouteMonitor
from pybgp.kernel_sync.sync import KernelSync
from pybgp.model import KEY_PREFIX
from pybgp.model.selector import matches
from pybgp.speaker import exabgp_api as exa
from pybgp.speaker.core import SPEAKER_PROTOCOL, Effects, Speaker
from pybgp.speaker.ctl import serve_both
from pybgp.speaker.ctl import stop as ctl_stop
from pybgp.speaker.exabgp_proc import ExaBGP
from pybgp.speaker.inputs import RESOURCE_PLURALS, Inputs
from pybgp.stopping import Stopping

log = logging.getLogger("pybgp.speaker")
RESYNC_INTERVAL = 90.0  # slow background repair of kernel drift
# At most this many changed routes are written from the loop itself (one
# netlink round trip, tens of microseconds) instead of by the worker thread:
# handing one route to the thread pool cost more than writing it.
INLINE_KERNEL_MAX = 64
# Routes handed to the worker thread per pass. What a pass holds (its plan,
# requests and results, ~300 B a route) is on top of a full RIB while the
# kernel catches up with a peer's full table: 4096 cost ~1.2 MiB more peak
# RSS than 1024 at 100k routes (fib_learn), for ~10 % of the transfer time.
KERNEL_SLICE = 1024


@dataclass
class Options:
    node: str
    etcd: EtcdConfig
    bird_socket: str = "/var/run/calico/bird.ctl"
    json_socket: str = "/var/run/pybgp/speaker.sock"
    state_dir: str = "/var/run/pybgp/speaker"
    secrets_dir: str = "/etc/pybgp/secrets"
    startup_hold: float = 120.0


class SpeakerDaemon:
    def __init__(self, opts: Options):
        self.opts = opts
        # (kind, payload) events, appended and drained in the loop's thread.
        # ``_drain_due``: a drain is scheduled.
        self.queue: collections.deque[tuple[str, Any]] = collections.deque()
        self._drain_due = False
        self.speaker = Speaker(Inputs(opts.node, opts.secrets_dir), matches,
                               startup_hold=opts.startup_hold)
        self.kernel = KernelSync(protocol=SPEAKER_PROTOCOL)
        self.exabgp = ExaBGP(opts.state_dir, self._from_exabgp, self._exabgp_exited,
                             on_lines_read=self._drain)
        self.prefixes = [f"{KEY_PREFIX}{p}/" for p in RESOURCE_PLURALS]
        self.prefixes.append(affinities_prefix(opts.node))
        self.unsynced = set(self.prefixes)
        self.syncers: list[LoopSyncer] = []
        self.pending = Effects()
        self.kernel_dirty = False
        self.kernel_busy = False
        self.exabgp_started = False
        self.datastore_state = "connecting"
        self.serving = False  # the control sockets answer
        self.notified_ready = False
        self.stopping = Stopping(log)
        self.loop: asyncio.AbstractEventLoop | None = None

    # -- producers -------------------------------------------------------------

    def _event(self, kind: str, payload: Any) -> None:
        """Queue an event from the loop's own thread."""
        assert self.loop is not None
        self.queue.append((kind, payload))
        if not self._drain_due:
            self._drain_due = True
            self.loop.call_soon(self._drain)

    def _from_exabgp(self, line: str) -> None:
        # No drain scheduled: ExaBGP's reader drains once it has handed over
        # a read's lines (a scheduled drain would wait a turn of the loop).
        self.queue.append(("exabgp", line))

    def _exabgp_exited(self, code: int) -> None:
        # Every session died with it: tell the core, as ExaBGP itself cannot.
        for address, rt in self.speaker.runtime.items():
            if rt.state == "up":
                self._event("exabgp", _state_line(address, "down", "ExaBGP exited"))

    def _start_syncer(self, prefix: str) -> None:
        """Follow ``prefix`` from the loop; its events go to the core at once
        (no turn of the loop in between: a new block is on its way out)."""
        cfg = self.opts.etcd

        def datastore(events: list[SyncEvent]) -> None:
            self.queue.extend(("datastore", (prefix, ev)) for ev in events)
            self._drain()

        runner = LoopSyncer(lambda: EtcdClient(cfg), prefix, datastore)
        self.syncers.append(runner)
        runner.start(on_bug=self.stopping.on_bug(f"following {prefix}"))

    # -- the loop ----------------------------------------------------------------

    async def run(self) -> None:
        self.loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(sig, self.stopping.set)
        retained = await asyncio.to_thread(
            self.kernel.backend.dump_routes, SPEAKER_PROTOCOL, self.kernel.table)
        self._handle(self.speaker.start(time.time(), retained))
        # Our own routes are never workload host routes: their notifications
        # (100k of them when a peer sends a full table) are skipped unparsed.
        monitor = RouteMonitor(ignore_protocols=(SPEAKER_PROTOCOL,))
        self._handle(self.speaker.on_local_routes(
            [(ev.action, ev.prefix, ev.ifname) for ev in monitor.seed()], time.time()))

        def local_routes(events: list[Any]) -> None:
            self._event("kernel", events)

        monitor.attach(local_routes, self.loop)
        for prefix in self.prefixes:
            self._start_syncer(prefix)
        servers = await self._serve_ctl()
        self.serving = True
        self._ready_if_due()
        resync = self.loop.create_task(self._periodic_resync())
        try:
            await self.stopping.until()
        finally:
            notify.stopping()
            resync.cancel()
            monitor.detach()
            monitor.close()
            for runner in self.syncers:
                await runner.stop()
            for server, path in zip(servers, self._ctl_paths, strict=True):
                await ctl_stop(server, path)
            await self.exabgp.stop()
            self.kernel.close()  # deletes nothing: our routes persist

    def _drain(self) -> None:
        """Everything queued so far, to the core at once; then act once."""
        self._drain_due = False
        if not self.queue or self.stopping.is_set():
            return
        burst = []
        while self.queue:
            burst.append(self.queue.popleft())
        try:
            self._dispatch_burst(burst)
            self._flush()
        except Exception as exc:  # a bug: stop (and say why) rather than run half-blind
            self.stopping.fail(exc, "handling events")

    def _dispatch_burst(self, burst: list[tuple[str, Any]]) -> None:
        """Dispatch in order, handing each run of consecutive datastore updates,
        and of workload-route events, to the core at once: it recomputes
        peers and exports once per run, not once per key or route."""
        updates: list[tuple[str, bytes | None]] = []
        routes: list[tuple[str, str, str]] = []

        def flush_runs() -> None:
            if updates:
                self._handle(self.speaker.on_datastore_batch(updates, time.time()))
                updates.clear()
            if routes:
                self._handle(self.speaker.on_local_routes(routes, time.time()))
                routes.clear()

        for kind, payload in burst:
            if kind == "datastore" and isinstance(payload[1], Update):
                if routes:
                    flush_runs()
                updates.append((payload[1].key, payload[1].value))
            elif kind == "kernel":
                if updates:
                    flush_runs()
                routes.extend((ev.action, ev.prefix, ev.ifname) for ev in payload)
            else:
                flush_runs()
                self._dispatch(kind, payload)
        flush_runs()

    def _dispatch(self, kind: str, payload: Any) -> None:
        """Everything but datastore updates and workload routes (batched above)."""
        now = time.time()
        if kind == "datastore":
            prefix, ev = payload
            if isinstance(ev, InSync):
                self.unsynced.discard(prefix)
                self.datastore_state = "in sync" if not self.unsynced else "syncing"
                if not self.unsynced:
                    self._handle(self.speaker.on_synced(now))
                    self._ready_if_due()
            elif isinstance(ev, Status) and ev.state != "connected":
                log.warning("datastore %s: %s", ev.state, ev.reason)
                self.datastore_state = f"{ev.state}: {ev.reason}"
        elif kind == "exabgp":
            self._handle(self.speaker.on_exabgp(payload, now))
        elif kind == "timer":
            self._handle(self.speaker.on_timer(payload, now))

    def _ready_if_due(self) -> None:
        """Tell systemd (``$NOTIFY_SOCKET``) once: in sync with the datastore
        and answering on the control sockets. Never again after a re-list."""
        if self.serving and not self.unsynced and not self.notified_ready:
            self.notified_ready = True
            notify.ready(f"in sync, {len(self.speaker.peers)} peers")

    def _handle(self, fx: Effects) -> None:
        self.pending += fx
        assert self.loop is not None
        for name, delay in fx.timers:
            self.loop.call_later(delay, self._event, "timer", name)
        fx.timers.clear()

    def _flush(self) -> None:
        if self.unsynced:
            return  # nothing leaves this process before the datastore is read whole
        fx, self.pending = self.pending, Effects()
        if not self.exabgp_started or fx.reconfigure:
            config = exa.render_config(self.speaker.neighbor_configs(), self.exabgp.helper_argv,
                                       manual_eor=True, adj_rib_in=False)
            if not self.exabgp_started:
                self.exabgp.start(config)  # commands wait for its helper's pipes
                self.exabgp_started = True
            else:
                self.exabgp.reconfigure(config)
        if fx.commands:
            self.exabgp.send(fx.commands)
        if fx.kernel or self.kernel_dirty:
            self.kernel_dirty = True
            if not self.kernel_busy and not self._apply_kernel_now():
                self.loop_task(self._apply_kernel())

    def loop_task(self, coro: Any) -> None:
        assert self.loop is not None
        self.loop.create_task(coro)

    def _hand_over(self, limit: int | None) -> None:
        """Give KernelSync the core's changed routes (at most ``limit``; the
        rest stay with the core, and ``kernel_dirty`` says so)."""
        full, changed = self.speaker.take_kernel_changes(limit)
        if full:
            self.kernel.set_desired(self.speaker.kernel_routes())
        else:
            route, update = self.speaker.kernel_route, self.kernel.update
            for prefix in changed:
                update(prefix, route(prefix))
        if self.speaker.kernel_changes_left:
            self.kernel_dirty = True

    def _apply_kernel_now(self) -> bool:
        """Write a few changed routes at once, from the loop (a new block's
        blackhole, a peer's new block). False when the change is big, a full
        rebuild or a resync is due, or the last write failed: the worker
        thread does those."""
        kernel = self.kernel
        left = self.speaker.kernel_changes_left
        if (self.kernel_busy or not kernel.synced or kernel.needs_resync
                or kernel.last_result.errors or not 0 <= left <= INLINE_KERNEL_MAX):
            return False
        self.kernel_dirty = False
        self._hand_over(None)
        result = kernel.apply()
        for err in result.errors[:10]:
            log.warning("kernel: %s", err)
        return True

    async def _apply_kernel(self, resync: bool = False) -> None:
        self.kernel_busy = True
        try:
            while self.kernel_dirty or resync:
                self.kernel_dirty = False
                # Only what changed since the last pass (rebuilding and diffing
                # all routes per pass made a 100k-route transfer quadratic), and
                # at most KERNEL_SLICE routes a pass: what a pass holds (the
                # routes, their differences, the plan, the acks) is then
                # bounded, not the size of the burst.
                self._hand_over(KERNEL_SLICE)
                run: Callable[[], Any] = self.kernel.resync if (
                    resync or self.kernel.needs_resync) else self.kernel.apply
                resync = False
                result = await asyncio.to_thread(run)
                for err in result.errors[:10]:
                    log.warning("kernel: %s", err)
        finally:
            self.kernel_busy = False

    async def _periodic_resync(self) -> None:
        while True:
            await asyncio.sleep(RESYNC_INTERVAL)
            if not self.kernel_busy and not self.unsynced:
                await self._apply_kernel(resync=True)

    @property
    def _ctl_paths(self) -> list[str]:
        return [self.opts.bird_socket, self.opts.json_socket]

    async def _serve_ctl(self) -> list[asyncio.Server]:
        from pybgp.speaker.view import View

        return await serve_both(self.opts.bird_socket, self.opts.json_socket, View(self))


def _state_line(address: str, state: str, reason: str) -> str:
    import json

    return json.dumps({"type": "state", "neighbor": {
        "address": {"peer": address}, "state": state, "reason": reason}})


def main(opts: Options) -> int:
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    asyncio.run(SpeakerDaemon(opts).run())
    return 0
