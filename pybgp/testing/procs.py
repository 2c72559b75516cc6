"""Processes known by identity: a PID together with its start time.

A PID alone is not an identity: once the process is gone the kernel may give
the number to another one. The start time in ``/proc/PID/stat`` (field 22,
clock ticks since boot) is fixed for a process's life, so (PID, start time)
names exactly one process. The lab records it right after starting a daemon
and checks it again before every signal; a process that no longer matches is
left alone.

Owns: reading ``/proc`` and signalling recorded processes (and their process
groups, which the harness gives each daemon).

Must never: signal a PID whose start time differs from the record, or any
process it was not handed a record of.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

PROC = Path("/proc")


def start_time(pid: int) -> int | None:
    """The start time (clock ticks after boot) of ``pid``; None if it does not exist."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # "pid (comm) state ppid …": comm may hold spaces and parentheses; the
    # fields after its last ')' are plain. starttime is field 22 (index 19 after comm).
    rest = stat[stat.rindex(")") + 2:].split()
    return int(rest[19])


def _state(pid: int) -> str | None:
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat[stat.rindex(")") + 2:].split()[0]


@dataclass(frozen=True)
class ProcessRecord:
    """One started process: what it is (for people), its PID and start time."""

    what: str
    pid: int
    start: int

    @classmethod
    def of(cls, pid: int, what: str) -> ProcessRecord:
        """Record a process that runs now (raises if it is already gone)."""
        start = start_time(pid)
        if start is None:
            raise ProcessLookupError(f"{what}: process {pid} is gone")
        return cls(what, pid, start)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ProcessRecord:
        return cls(str(d["what"]), int(d["pid"]), int(d["start"]))

    def alive(self) -> bool:
        """The recorded process still runs (and is not a zombie waiting to be reaped)."""
        return start_time(self.pid) == self.start and _state(self.pid) not in ("Z", "X", None)

    def exists(self) -> bool:
        """The recorded process still exists, zombies included."""
        return start_time(self.pid) == self.start

    def signal(self, sig: int, *, group: bool = True) -> bool:
        """Send ``sig`` to the process (its group when it leads one); False if not ours now."""
        if not self.exists():
            return False
        try:
            if group and os.getpgid(self.pid) == self.pid:
                os.killpg(self.pid, sig)
            else:
                os.kill(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            return False
        return True

    def stop(self, timeout: float = 5.0, *, group: bool = True) -> bool:
        """SIGTERM, wait up to ``timeout`` s, then SIGKILL; True once it is gone (or was)."""
        if not self.signal(signal.SIGTERM, group=group):
            return not self.alive()
        if wait_gone([self], timeout):
            return True
        self.signal(signal.SIGKILL, group=group)
        return wait_gone([self], 10.0)


def wait_gone(records: list[ProcessRecord], timeout: float) -> bool:
    """Wait (bounded) until none of ``records`` runs; reaps those that are our children.

    A child of ours counts as gone only once it is reaped: a killed
    multi-threaded process (etcd) shows its leader as a zombie while its
    other threads still exit, and cannot be reaped until they have — so
    "not alive" alone returned early and left a zombie behind."""
    end = time.monotonic() + timeout
    pending = list(records)
    while True:
        still = []
        for r in pending:
            try:
                reaped, _ = os.waitpid(r.pid, os.WNOHANG)
            except ChildProcessError:  # not our child (or reaped already): by its state
                if r.alive():
                    still.append(r)
                continue
            if reaped == 0 and r.exists():
                still.append(r)
        pending = still
        if not pending:
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(0.05)


def pids_with_cwd_under(directory: str | Path) -> list[int]:
    """PIDs whose current directory is ``directory`` or below it.

    Clean-up by identity for a process whose PID was never recorded (its
    starter was killed between fork and record): the lab runs every such
    process in a directory of its own, which nothing else uses.
    """
    root = Path(directory).resolve()
    out = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = Path(os.readlink(entry / "cwd"))
        except OSError:
            continue
        if cwd == root or root in cwd.parents:
            out.append(int(entry.name))
    return sorted(out)
