"""``pybgp lab`` as a user runs it, for the lab's end-to-end tests: the real
CLI in subprocesses (``LabCLI``), and the checks that a lab left nothing
behind (no namespace, process, file or temp file of it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pybgp.testing.netns import list_namespaces
from pybgp.testing.procs import PROC, ProcessRecord

PYBGP = str(Path(sys.executable).with_name("pybgp"))
SVG = "{http://www.w3.org/2000/svg}"


class LabCLI:
    """``pybgp lab … --dir D`` with a private TMPDIR (anything written there is a leak)."""

    def __init__(self, directory: Path, tmpdir: Path, prefix: str) -> None:
        self.dir = directory
        self.tmpdir = tmpdir
        self.prefix = prefix
        tmpdir.mkdir(parents=True, exist_ok=True)
        self.env = dict(os.environ, TMPDIR=str(tmpdir))

    def argv(self, *args: str) -> list[str]:
        verb = 2 if args[0] == "pod" else 1  # `pod add|del` takes --dir after add|del
        return [PYBGP, "lab", *args[:verb], "--dir", str(self.dir), *args[verb:]]

    def run(self, *args: str, check: bool = True, timeout: float = 180,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(self.argv(*args), capture_output=True, text=True,
                              timeout=timeout, env=env or self.env, stdin=subprocess.DEVNULL)
        if check and proc.returncode != 0:
            raise AssertionError(f"pybgp lab {' '.join(args)} exited {proc.returncode}\n"
                                 f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}\n"
                                 f"{self.logs()}")
        return proc

    def up(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return self.run("up", "--ns-prefix", self.prefix, *args, **kw)

    def start_up(self, *args: str, output: bool = False) -> subprocess.Popen[str]:
        """``up`` in the background (its output piped with ``output``)."""
        pipe = subprocess.PIPE if output else subprocess.DEVNULL
        return subprocess.Popen(self.argv("up", "--ns-prefix", self.prefix, *args),
                                env=self.env, stdout=pipe, stderr=pipe, text=True,
                                stdin=subprocess.DEVNULL)

    def wait_journal(self, proc: subprocess.Popen[str],
                     pred: Callable[[dict[str, Any]], Any], timeout: float = 60) -> Any:
        """Poll the journal a background ``up`` writes until ``pred`` of it is
        true (returned) or ``up`` exits or ``timeout`` passes (None)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end and proc.poll() is None:
            try:
                got = pred(self.journal())
                if got:
                    return got
            except (OSError, ValueError):
                pass  # not written yet, or between writes
            time.sleep(0.02)
        return None

    def status(self, *args: str) -> dict[str, Any]:
        proc = self.run("status", "-o", "json", *args, check=False)
        assert proc.returncode in (0, 1), proc.stderr
        doc: dict[str, Any] = json.loads(proc.stdout)
        return doc

    def journal(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads((self.dir / "lab.json").read_text())
        return doc

    def logs(self) -> str:
        out = []
        for log in sorted(self.dir.glob("*/*.log")):
            if log.parent.name == "etcd":
                continue
            out.append(f"--- {log}\n{log.read_text(errors='replace')[-2000:]}")
        return "\n".join(out)


def lab_processes(directory: Path) -> list[int]:
    """Processes that name the lab dir on their command line or work in it."""
    root = str(directory.resolve())
    found = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if root in cmdline or cwd == root or cwd.startswith(root + "/"):
            found.append(int(entry.name))
    return found


def recorded_processes(journal: dict[str, Any]) -> list[ProcessRecord]:
    recs = [ProcessRecord.from_dict(r) for r in journal.get("topology", {}).get("processes", [])]
    etcd = (journal.get("etcd") or {}).get("process")
    return recs + ([ProcessRecord.from_dict(etcd)] if etcd else [])


def assert_gone(cli: LabCLI, journal: dict[str, Any], shm_before: set[str]) -> None:
    marker = f"{journal['topology']['prefix']}-{journal['topology']['run_id']}-"
    assert [n for n in list_namespaces() if n.startswith(marker)] == []
    assert [r for r in recorded_processes(journal) if r.alive()] == []
    assert lab_processes(cli.dir) == []
    assert not cli.dir.exists(), sorted(cli.dir.rglob("*"))
    assert list(cli.tmpdir.iterdir()) == []  # nothing through tempfile, anywhere
    etcd_name = (journal.get("etcd") or {}).get("name", "no etcd")
    for entry in set(os.listdir("/dev/shm")) - shm_before:  # other engineers' are not ours
        for log in Path("/dev/shm", entry).glob("etcd.log"):
            assert etcd_name not in log.read_text(errors="replace")

