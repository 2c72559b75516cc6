"""The dataplane shell: makes the kernel hold a :class:`~pybgp.agent.calc.Desired`.

One :meth:`Dataplane.apply` is one batch, in Felix's order: ``ipset
restore`` (new sets and members first, so no rule references a missing
set), one ``iptables-restore --noflush`` with a transaction per changed
table — while it runs, the routes (``KernelSync``, route protocol 80, the
number the CNI plugin writes), PERMANENT neighbour entries and interface
sysctls are written over netlink and /proc — then, once iptables stopped
using them, a second ``ipset restore`` destroys unwanted sets.

A route of ours (protocol 80) that no endpoint explains is not swept at
once: the CNI plugin writes a pod's route before its endpoint, so it is
spared for a grace period (:mod:`.routegrace`, Felix's 10 s), and the
report says when to apply again to sweep it.

What the kernel holds is known from the last read-back (``iptables-save``,
``ipset save``, a route and a neighbour dump) plus the writes since; a
refresh (:meth:`refresh`) re-reads it, so the next apply repairs any drift.
The daemon calls ``refresh`` from its event loop while an apply may be
running in a worker thread, so ``refresh`` only records what to forget
(under a lock) and every apply forgets it first, in its own thread: the
state an apply works on changes under it only by its own hand.
Only what is right is left alone: nothing is flushed, on start, on resync
or on exit.

Must never: touch a chain, set, route or neighbour entry that is not the
agent's (``cali-`` chains and hook rules with a ``cali:`` hash, ``cali40``
sets, route protocol 80, PERMANENT entries on workload interfaces).
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from dataclasses import dataclass, field

from pybgp.agent import ipsets as ipsets_mod
from pybgp.agent import iptables as ipt
from pybgp.agent.calc import TABLES, Desired
from pybgp.agent.routegrace import CLEANUP_GRACE, RouteGrace
from pybgp.errors import KernelError
from pybgp.kernel_sync import links
from pybgp.kernel_sync.desired import RTPROT_FELIX, KRoute, NextHop
from pybgp.kernel_sync.links import Rtnl
from pybgp.kernel_sync.sync import KernelSync

log = logging.getLogger("pybgp.agent.dataplane")


@dataclass
class Report:
    """What one apply did (counts of writes) and what failed."""

    iptables_calls: int = 0
    iptables_errors: int = 0
    chains_written: int = 0
    chains_deleted: int = 0
    ipset_calls: int = 0
    ipset_errors: int = 0
    route_writes: int = 0
    neighbour_writes: int = 0
    sysctl_writes: int = 0
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    #: When a spared workload route's grace period ends (monotonic): apply again then.
    recheck_at: float | None = None

    @property
    def ok(self) -> bool:
        return not self.errors


class Dataplane:
    def __init__(self, interface_prefix: str = "cali", grace: float = CLEANUP_GRACE) -> None:
        self.prefix = interface_prefix
        self.tables = {t: ipt.TableSync(t) for t in TABLES}
        self.sets = ipsets_mod.IpsetSync()
        self.routes = KernelSync(protocol=RTPROT_FELIX)
        # The CNI plugin's route for a pod whose endpoint is not written yet
        # is ours by its mark; it is spared for a grace period, not swept.
        self.grace = RouteGrace(grace, interface_prefix)
        self.routes.spare = lambda r: self.grace.spare(r.prefix, _dev(r))
        self.rtnl = Rtnl()
        self.neighbours: dict[tuple[str, str], str] | None = None  # None: dump first
        self.sysctls: dict[str, str] = {}  # path → value known to be there
        self._forget: set[str] = set()  # what refresh() asked the next apply to re-read
        self._forget_lock = threading.Lock()

    def close(self) -> None:
        """Close the sockets. Deletes nothing: the dataplane stays as it is."""
        self.routes.close()
        self.rtnl.close()

    # -- reading the kernel back ---------------------------------------------------
    def refresh(self, *, iptables: bool = False, ipsets: bool = False,
                routes: bool = False) -> None:
        """Have the next apply re-read these parts. Safe from any thread, also
        while an apply runs: it only records the request."""
        asked = {k for k, v in (("iptables", iptables), ("ipsets", ipsets),
                                ("routes", routes)) if v}
        with self._forget_lock:
            self._forget |= asked

    def _take_refresh(self) -> None:
        """Forget what ``refresh`` asked to (at the start of an apply, in its thread)."""
        with self._forget_lock:
            forget, self._forget = self._forget, set()
        if "iptables" in forget:
            for table in self.tables.values():
                table.known = False
        if "ipsets" in forget:
            self.sets.known = False
        if "routes" in forget:
            self.routes.needs_resync = True
            self.neighbours = None
            self.sysctls = {}

    def _load(self) -> None:
        if not all(t.known for t in self.tables.values()):
            state = ipt.parse_save(ipt.save())
            for name, table in self.tables.items():
                table.load(state.get(name))
        if not self.sets.known:
            self.sets.load(ipsets_mod.parse_save(ipsets_mod.save()))

    # -- one batch -------------------------------------------------------------------
    def apply(self, desired: Desired) -> Report:
        t0 = time.perf_counter()
        report = Report()
        self._take_refresh()
        try:
            self._load()
        except (KernelError, OSError) as exc:
            report.errors.append(f"reading the dataplane back: {exc}")
            report.seconds = time.perf_counter() - t0
            return report
        sets = {n: ipsets_mod.KernelSet(s.kind, s.members) for n, s in desired.ipsets.items()}
        if not self._ipsets(self.sets.plan_adds(sets), report):
            self._kernel(desired, report)  # routes do not depend on the sets
            report.seconds = time.perf_counter() - t0
            return report
        self.sets.added(sets)
        plans = []
        text = []
        for name, table in self.tables.items():
            body, write, delete = table.plan(desired.chains.get(name, {}),
                                             desired.hooks.get(name, {}))
            if body:
                text.append(body)
                plans.append((table, name, write, delete))
        proc = None
        iptables_ok = True
        if text:
            report.iptables_calls += 1
            try:
                proc = ipt.start_restore("".join(text))
            except KernelError as exc:
                iptables_ok = False
                report.iptables_errors += 1
                report.errors.append(str(exc))
        self._kernel(desired, report)  # while iptables-restore works
        if proc is not None:
            try:
                ipt.finish_restore(proc)
                for table, name, write, delete in plans:
                    table.committed(desired.chains.get(name, {}), desired.hooks.get(name, {}),
                                    write, delete)
                    report.chains_written += len(write)
                    report.chains_deleted += len(delete)
            except (KernelError, OSError) as exc:
                iptables_ok = False
                report.iptables_errors += 1
                report.errors.append(str(exc))
                self.refresh(iptables=True)
        if iptables_ok and self._ipsets(self.sets.plan_removals(sets), report):
            self.sets.removed(sets)
        report.seconds = time.perf_counter() - t0
        return report

    def _ipsets(self, text: str, report: Report) -> bool:
        """One ``ipset restore`` (nothing when ``text`` is empty); False if it failed
        (what went in is then unknown: the sets are read back next time)."""
        if not text:
            return True
        report.ipset_calls += 1
        try:
            ipsets_mod.restore(text)
        except (KernelError, OSError) as exc:
            report.ipset_errors += 1
            report.errors.append(str(exc))
            self.sets.known = False
            return False
        return True

    # -- routes, neighbours, sysctls ---------------------------------------------------
    def _kernel(self, desired: Desired, report: Report) -> None:
        try:
            linkmap = self.rtnl.links()
        except OSError as exc:
            report.errors.append(f"links: {exc}")
            return
        self._routes(desired, report, {name: v[0] for name, v in linkmap.items()})
        try:
            self._neighbours(desired, report, linkmap)
        except OSError as exc:
            report.errors.append(f"neighbours: {exc}")
            self.neighbours = None
        self._sysctls(desired, report)

    def _routes(self, desired: Desired, report: Report, links: dict[str, int]) -> None:
        self.routes.set_desired(
            KRoute(prefix, "unicast", (NextHop(dev=iface),), RTPROT_FELIX)
            for prefix, iface in desired.routes.items())
        grace = self.grace
        grace.observe(links, desired.endpoints.keys(), time.monotonic())
        try:
            result = self.routes.resync() if self.routes.needs_resync else self.routes.apply()
        except OSError as exc:
            report.errors.append(f"routes: {exc}")
            self.routes.needs_resync = True
            return
        report.route_writes += len(result.done)
        for err in result.errors:
            if err.errno not in (errno.ENODEV, errno.ENETDOWN):
                report.errors.append(f"route {err}")
        if result.errors:
            self.routes.needs_resync = True
        for prefix, iface in grace.take_new():
            log.info("keeping a workload route no endpoint explains yet prefix=%s iface=%s "
                     "grace=%gs", prefix, iface, grace.period)
        for op, route in result.done:
            if op == "delete":
                log.info("deleted a workload route no endpoint explains prefix=%s iface=%s",
                         route.prefix, _dev(route))
        report.recheck_at = grace.settle((r.prefix, _dev(r)) for r in self.routes.strays())

    def _neighbours(self, desired: Desired, report: Report,
                    linkmap: dict[str, tuple[int, str, bool]]) -> None:
        index = {name: v[0] for name, v in linkmap.items()}
        if self.neighbours is None:
            names = {v[0]: name for name, v in linkmap.items()}
            self.neighbours = {}
            for n in self.rtnl.neighbours():
                name = names.get(n.index, "")
                if n.permanent and name.startswith(self.prefix):
                    self.neighbours[(name, n.ip)] = n.lladdr
        have = self.neighbours
        ops = []
        for (iface, ip), mac in desired.neighbours.items():
            if have.get((iface, ip)) != mac and iface in index:
                ops.append((("set", iface, ip, mac),
                            (f"neighbour {ip} dev {iface}",
                             links.neighbour(index[iface], ip, mac))))
        for (iface, ip) in list(have):
            if (iface, ip) not in desired.neighbours:
                if iface in index:
                    ops.append((("del", iface, ip, ""),
                                (f"delete neighbour {ip} dev {iface}",
                                 links.neighbour_del(index[iface], ip))))
                else:
                    del have[(iface, ip)]  # the interface is gone, and its entries
        if not ops:
            return
        try:
            self.rtnl.call(*(req for _, req in ops), ok=(errno.ENOENT, errno.ENODEV))
        except links.NetlinkError as exc:
            self.neighbours = None  # which ones went in is unknown: dump next time
            report.errors.append(str(exc))
            return
        for (op, iface, ip, mac), _ in ops:
            if op == "set":
                have[(iface, ip)] = mac
            else:
                have.pop((iface, ip), None)
        report.neighbour_writes += len(ops)

    def _sysctls(self, desired: Desired, report: Report) -> None:
        known = self.sysctls
        for path in [p for p in known if p not in desired.sysctls]:
            del known[path]
        for path, value in desired.sysctls.items():
            if known.get(path) == value:
                continue
            try:
                with open(path, "r+") as fh:
                    if fh.read().strip() != value:
                        fh.seek(0)
                        fh.write(value)
                        report.sysctl_writes += 1
                known[path] = value
            except FileNotFoundError:
                continue  # the interface went away; its endpoint waits for it
            except OSError as exc:
                report.errors.append(f"sysctl {path}: {exc}")


def _dev(route: KRoute) -> str | int | None:
    """The interface of a device route (a name, or an index the kernel did not name)."""
    return route.nexthops[0].dev if len(route.nexthops) == 1 else None
