"""``pybgp agent``: the node agent (Felix's role), one asyncio loop.

Producers, all in the loop's thread: one ``LoopSyncer`` per resource prefix
(datastore updates fold into :class:`~pybgp.agent.inputs.Inputs` at once —
that is cheap and does no I/O), the kernel monitor (workload interfaces
appearing, going up or down, and our routes vanishing) and a ticker for the
periodic refreshes. Each marks the dataplane dirty; one apply runs at a
time: the pure calculation in the loop, then :meth:`Dataplane.apply` in a
worker thread (subprocesses and netlink). Whatever arrives meanwhile is
coalesced into the next apply, so a burst of a thousand endpoints is a few
applies, not a thousand.

Nothing is written to the kernel before every prefix is in sync (a
half-read datastore would look like endpoints and policies vanished). A
failed apply is retried with a back-off; readiness reports it. Readiness
goes to systemd too (``READY=1`` to ``$NOTIFY_SOCKET``, for ``Type=notify``
and the lab), once, at the moment ``/readiness`` first turns healthy: the
first apply succeeded after the datastore was in sync; ``STOPPING=1`` when
it begins to stop. Nothing on the event or apply paths sends anything else.
On exit
nothing is flushed: rules, sets, routes and neighbours stay as they are, so
a restarted agent finds them right and writes nothing.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import signal
import time
from dataclasses import dataclass
from typing import Any

from pybgp import notify
from pybgp.agent import health
from pybgp.agent.calc import Calc, Desired
from pybgp.agent.config import Config, effective
from pybgp.agent.dataplane import Dataplane, Report
from pybgp.agent.inputs import RESOURCE_PLURALS, Inputs
from pybgp.agent.metrics import Metrics
from pybgp.agent.status import StatusReporter, desired_status
from pybgp.datastore.etcdv3 import EtcdClient, EtcdConfig
from pybgp.datastore.loop_syncer import LoopSyncer
from pybgp.datastore.syncer import InSync, Status, SyncEvent, Update
from pybgp.kernel_sync.desired import RTPROT_BIRD
from pybgp.kernel_sync.monitor import RouteEvent, RouteMonitor
from pybgp.model import KEY_PREFIX
from pybgp.stopping import Stopping

log = logging.getLogger("pybgp.agent")
TICK = 0.5  # how often the refresh deadlines are checked
STUCK_AFTER = 120.0  # an apply running longer than this: not live
MAX_BACKOFF = 30.0


def fields(**kv: Any) -> str:
    """``key=value`` pairs for a log line."""
    return " ".join(f"{k}={v}" for k, v in kv.items())


@dataclass
class Options:
    node: str
    etcd: EtcdConfig
    health_host: str | None = None
    health_port: int | None = None
    metrics_host: str | None = None
    metrics_port: int | None = None


class AgentDaemon:
    def __init__(self, opts: Options):
        self.opts = opts
        self.inputs = Inputs(opts.node)
        self.calc = Calc()
        self.metrics = Metrics()
        self.overrides = {"health_host": opts.health_host, "health_port": opts.health_port,
                          "metrics_host": opts.metrics_host, "metrics_port": opts.metrics_port}
        self.config: Config = effective(None, None, self.overrides)
        self.prefixes = [f"{KEY_PREFIX}{p}/" for p in RESOURCE_PLURALS]
        self.unsynced = set(self.prefixes)
        self.syncers: list[LoopSyncer] = []
        self.dataplane: Dataplane | None = None
        self.links: dict[str, bool] = {}
        self.desired: Desired | None = None
        self.dirty = True
        self.applying = False
        self.apply_started: float | None = None
        self.first_apply_done = False
        self.last_report: Report | None = None
        self.failures = 0
        self.retry: asyncio.TimerHandle | None = None
        self.recheck: asyncio.TimerHandle | None = None  # a spared route's grace ends
        self.status = StatusReporter(EtcdClient(opts.etcd), opts.node)
        self.status_busy = False
        self.status_pending: dict[str, bytes] | None = None
        self.started = time.monotonic()
        self.host_reported = 0.0
        self.refresh_due: dict[str, float] = {}
        self.servers: dict[str, tuple[tuple[str, int], asyncio.Server]] = {}
        self.stopping = Stopping(log)
        self.loop: asyncio.AbstractEventLoop | None = None

    # -- health --------------------------------------------------------------------
    def live(self) -> tuple[bool, str]:
        if self.apply_started is not None and time.monotonic() - self.apply_started > STUCK_AFTER:
            return False, f"an apply has been running for more than {STUCK_AFTER:.0f}s"
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        if self.unsynced:
            return False, f"datastore not in sync ({len(self.unsynced)} prefixes to go)"
        if not self.first_apply_done:
            return False, "dataplane not programmed yet"
        if self.last_report is not None and self.last_report.errors:
            return False, f"last apply failed: {self.last_report.errors[0][:200]}"
        return True, "ok"

    async def _ensure_servers(self) -> None:
        cfg = self.config
        wanted = {}
        if cfg.health_enabled:
            wanted["health"] = ((cfg.health_host, cfg.health_port),
                                health.health_routes(self.live, self.ready))
        if cfg.metrics_enabled:
            wanted["metrics"] = ((cfg.metrics_host, cfg.metrics_port),
                                 health.metrics_routes(self._render_metrics))
        for name in list(self.servers):
            where, server = self.servers[name]
            if name not in wanted or wanted[name][0] != where:
                server.close()
                await server.wait_closed()
                del self.servers[name]
        for name, (where, routes) in wanted.items():
            if name in self.servers:
                continue
            try:
                server = await health.serve(where[0], where[1], routes)
            except OSError as exc:
                log.error("cannot serve %s %s", name, fields(host=where[0] or "*",
                                                             port=where[1], error=exc))
                continue
            self.servers[name] = (where, server)
            log.info("serving %s %s", name, fields(host=where[0] or "*", port=where[1]))

    def _render_metrics(self) -> str:
        m = self.metrics
        m.set("pybgp_agent_in_sync", 1 if self.ready()[0] else 0)
        m.set("pybgp_agent_invalid_resources", len(self.inputs.errors))
        m.set("felix_cluster_num_hosts", len(self.inputs.nodes))
        m.set("felix_cluster_num_workload_endpoints", len(self.inputs.endpoints))
        return m.render()

    # -- producers -----------------------------------------------------------------
    def _start_syncer(self, prefix: str) -> None:
        cfg = self.opts.etcd

        def datastore(events: list[SyncEvent]) -> None:
            changed = False
            for ev in events:
                if isinstance(ev, Update):
                    was_error = ev.key in self.inputs.errors
                    if self.inputs.apply(ev.key, ev.value) is not None:
                        changed = True
                    if ev.key in self.inputs.errors and not was_error:
                        log.error("skipping invalid resource %s",
                                  fields(key=ev.key, error=repr(self.inputs.errors[ev.key])))
                elif isinstance(ev, InSync):
                    if prefix in self.unsynced:
                        self.unsynced.discard(prefix)
                        if not self.unsynced:
                            log.info("datastore in sync %s", fields(
                                endpoints=len(self.inputs.endpoints),
                                policies=len(self.inputs.policies),
                                profiles=len(self.inputs.profiles)))
                        changed = True
                elif isinstance(ev, Status) and ev.state != "connected":
                    self.metrics.inc("felix_resyncs_started")
                    log.warning("datastore %s", fields(prefix=prefix, state=ev.state,
                                                       reason=repr(ev.reason)))
            if changed:
                self._mark_dirty()

        runner = LoopSyncer(lambda: EtcdClient(cfg), prefix, datastore)
        self.syncers.append(runner)
        runner.start(on_bug=self.stopping.on_bug(f"following {prefix}"))

    def _on_routes(self, events: list[RouteEvent]) -> None:
        desired = self.desired.routes if self.desired is not None else {}
        if any(ev.action == "delete" and desired.get(ev.prefix) == ev.ifname for ev in events):
            log.info("a workload route vanished; re-reading routes")
            if self.dataplane is not None:
                self.dataplane.refresh(routes=True)
            self._mark_dirty()

    def _on_links(self, changes: dict[str, bool | None]) -> None:
        for name, up in changes.items():
            if up is None:
                self.links.pop(name, None)
            else:
                self.links[name] = up
        if self.dataplane is not None:
            self.dataplane.refresh(routes=True)  # a downed link loses its routes silently
        self._mark_dirty()

    def _mark_dirty(self) -> None:
        self.dirty = True
        if self.unsynced or self.applying or self.stopping.is_set():
            return
        assert self.loop is not None
        self.applying = True
        self.loop.create_task(self._apply_loop())

    # -- applying ------------------------------------------------------------------
    async def _apply_loop(self) -> None:
        assert self.dataplane is not None
        try:
            while self.dirty and not self.stopping.is_set():
                self.dirty = False
                cfg = effective(self.inputs.felix_default, self.inputs.felix_node,
                                self.overrides)
                if cfg != self.config:
                    self._reconfigure(cfg)
                    await self._ensure_servers()
                t0 = time.perf_counter()
                desired = self.calc.compute(self.inputs, cfg, self.links)
                calc_s = time.perf_counter() - t0
                self.apply_started = time.monotonic()
                try:
                    report = await asyncio.to_thread(self.dataplane.apply, desired)
                finally:
                    self.apply_started = None
                self._applied(desired, report, calc_s)
        except Exception as exc:  # a bug: stop and say why, never run on half-applied
            self.stopping.fail(exc, "applying the dataplane")
        finally:
            self.applying = False

    def _applied(self, desired: Desired, report: Report, calc_s: float) -> None:
        m = self.metrics
        m.apply_time.observe(report.seconds)
        m.inc("felix_iptables_restore_calls", report.iptables_calls)
        m.inc("felix_iptables_restore_errors", report.iptables_errors)
        m.inc("felix_ipset_calls", report.ipset_calls)
        m.inc("felix_ipset_errors", report.ipset_errors)
        m.inc("felix_route_table_writes", report.route_writes)
        m.set("felix_active_local_endpoints", len(desired.endpoints))
        policies = {p for plan in desired.endpoints.values() for p in (*plan.ingress, *plan.egress)}
        m.set("felix_active_local_policies", len(policies))
        m.set("felix_active_local_selectors",
              sum(1 for name in desired.ipsets if name.startswith("cali40s:")))
        m.set("felix_ipsets_total", len(desired.ipsets))
        m.set("felix_iptables_chains", sum(len(c) for c in desired.chains.values()))
        m.set("felix_iptables_rules", desired.rule_count())
        self.last_report = report
        self.desired = desired
        for err in desired.errors:
            log.warning("calculation %s", fields(error=repr(err)))
        if report.errors:
            self.failures += 1
            m.inc("felix_int_dataplane_failures")
            delay = min(2.0 ** self.failures / 4, MAX_BACKOFF)
            for err in report.errors[:5]:
                log.error("apply failed %s", fields(error=repr(err), retry_in=f"{delay:.1f}s"))
            assert self.loop is not None
            if self.retry is not None:
                self.retry.cancel()
            self.retry = self.loop.call_later(delay, self._mark_dirty)
        else:
            self.failures = 0
            if not self.first_apply_done:
                log.info("dataplane programmed %s", fields(
                    endpoints=len(desired.endpoints), chains=int(m.values["felix_iptables_chains"]),
                    rules=desired.rule_count(), ipsets=len(desired.ipsets),
                    routes=len(desired.routes), calc_s=f"{calc_s:.3f}",
                    apply_s=f"{report.seconds:.3f}"))
                self.first_apply_done = True
                # /readiness is healthy from here on (in sync, applied, no error)
                notify.ready(f"in sync, {len(desired.endpoints)} endpoints, "
                             f"{int(m.values['felix_active_local_policies'])} policies")
        if report.chains_written or report.route_writes or report.neighbour_writes:
            log.info("applied %s", fields(
                chains_written=report.chains_written, chains_deleted=report.chains_deleted,
                routes=report.route_writes, neighbours=report.neighbour_writes,
                sysctls=report.sysctl_writes, seconds=f"{report.seconds:.3f}"))
        if report.recheck_at is not None:
            assert self.loop is not None
            if self.recheck is not None:
                self.recheck.cancel()
            delay = max(0.0, report.recheck_at - time.monotonic()) + 0.05
            self.recheck = self.loop.call_later(delay, self._mark_dirty)
        self._report_status(desired_status(self.opts.node, desired.endpoints.values()))

    def _reconfigure(self, cfg: Config) -> None:
        old = self.config
        self.config = cfg
        level = getattr(logging, cfg.log_severity.upper(), None)
        if isinstance(level, int) and cfg.log_severity != old.log_severity:
            logging.getLogger("pybgp").setLevel(level)
        log.info("configuration %s", fields(
            route_refresh=cfg.route_refresh, iptables_refresh=cfg.iptables_refresh,
            ipsets_refresh=cfg.ipsets_refresh,
            endpoint_to_host_action=cfg.endpoint_to_host_action))
        now = time.monotonic()
        for kind in ("routes", "iptables", "ipsets"):
            interval = self._interval(kind)
            self.refresh_due[kind] = now + interval if interval > 0 else float("inf")

    # -- endpoint status -------------------------------------------------------------
    def _report_status(self, desired: dict[str, bytes]) -> None:
        self.status_pending = desired
        if not self.status_busy:
            assert self.loop is not None
            self.status_busy = True
            self.loop.create_task(self._write_status())

    async def _write_status(self) -> None:
        try:
            while self.status_pending is not None and not self.stopping.is_set():
                pending, self.status_pending = self.status_pending, None
                try:
                    await asyncio.to_thread(self.status.sync, pending)
                except Exception as exc:  # etcd away: try again with the next change
                    self.status.written = None
                    log.warning("endpoint status not written %s", fields(error=repr(exc)))
                    await asyncio.sleep(1.0)
                    if self.status_pending is None:
                        self.status_pending = pending
        finally:
            self.status_busy = False

    # -- refreshes -------------------------------------------------------------------
    def _interval(self, kind: str) -> float:
        cfg = self.config
        return {"routes": cfg.route_refresh, "iptables": cfg.iptables_refresh,
                "ipsets": cfg.ipsets_refresh}[kind]

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(TICK)
            now = time.monotonic()
            due = [k for k, t in self.refresh_due.items() if now >= t]
            if due and self.dataplane is not None and not self.unsynced:
                for kind in due:
                    interval = self._interval(kind)
                    self.refresh_due[kind] = now + interval if interval > 0 else float("inf")
                log.debug("refresh %s", fields(what=",".join(due)))
                self.dataplane.refresh(iptables="iptables" in due, ipsets="ipsets" in due,
                                       routes="routes" in due)
                self._mark_dirty()
            if (self.config.reporting_interval > 0 and self.first_apply_done
                    and now - self.host_reported >= self.config.reporting_interval):
                first = self.host_reported == 0.0
                self.host_reported = now
                self.loop_task(self._report_host(first))

    async def _report_host(self, first: bool) -> None:
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        try:
            await asyncio.to_thread(self.status.report_host, time.monotonic() - self.started,
                                    first, stamp)
        except Exception as exc:
            log.warning("host status not written %s", fields(error=repr(exc)))

    def loop_task(self, coro: Any) -> None:
        assert self.loop is not None
        self.loop.create_task(coro)

    # -- the loop --------------------------------------------------------------------
    async def run(self) -> None:
        self.loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(sig, self.stopping.set)
        log.info("starting %s", fields(node=self.opts.node))
        await self._ensure_servers()
        self.dataplane = Dataplane(self.config.interface_prefix)
        # The speaker's learned routes (up to a full table) are never workload
        # routes: their notifications are dropped before they reach us.
        monitor = RouteMonitor(ifname_prefix=self.config.interface_prefix,
                               ignore_protocols=(RTPROT_BIRD,), track_links=True)
        monitor.seed()
        self.links = monitor.state.links()
        monitor.state.take_link_changes()
        monitor.attach(self._on_routes, self.loop, on_links=self._on_links)
        self._reconfigure(self.config)
        for prefix in self.prefixes:
            self._start_syncer(prefix)
        ticker = self.loop.create_task(self._ticker())
        try:
            await self.stopping.until()
        finally:
            notify.stopping()
            log.info("stopping; the dataplane is left as it is")
            ticker.cancel()
            monitor.detach()
            monitor.close()
            for runner in self.syncers:
                await runner.stop()
            for _, server in self.servers.values():
                server.close()
            while self.applying:  # let a running apply finish: never leave it half-done
                await asyncio.sleep(0.05)
            self.dataplane.close()  # deletes nothing


class _Formatter(logging.Formatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        stamp = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(record.msecs):03d}Z"


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(_Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper(), logging.INFO))


def main(opts: Options, log_level: str = "info") -> int:
    setup_logging(log_level)
    asyncio.run(AgentDaemon(opts).run())
    return 0
