"""The lab's lock: one changing command at a time, released however its holder ends."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pybgp.lab import lock


def test_a_second_holder_is_refused_or_waits(tmp_path: Path) -> None:
    with lock.locked(tmp_path, 0), pytest.raises(lock.Busy), lock.locked(tmp_path, 0):
        pass
    with lock.locked(tmp_path, 0):  # released on leaving
        pass
    assert list(tmp_path.iterdir()) == []  # nothing made in the directory


def test_a_waiter_gets_it_when_the_holder_lets_go(tmp_path: Path) -> None:
    held = threading.Event()
    release = threading.Event()

    def holder() -> None:
        with lock.locked(tmp_path, 0):
            held.set()
            release.wait(5)

    t = threading.Thread(target=holder)
    t.start()
    assert held.wait(5)
    threading.Timer(0.2, release.set).start()
    t0 = time.monotonic()
    with lock.locked(tmp_path, 5):
        waited = time.monotonic() - t0
    t.join(5)
    assert release.is_set() and waited > 0.1


def test_a_killed_holder_and_its_children_do_not_keep_it(tmp_path: Path) -> None:
    """`up` starts daemons that outlive it: they must not inherit the lock;
    and a holder killed with SIGKILL leaves none behind."""
    script = ("import subprocess, sys, time\n"
              "from pathlib import Path\n"
              "from pybgp.lab import lock\n"
              f"with lock.locked(Path({str(tmp_path)!r}), 0):\n"
              "    child = subprocess.Popen(['sleep', '30'], close_fds=False)\n"
              "    print(child.pid, flush=True)\n"
              "    time.sleep(30)\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    child = int(proc.stdout.readline())
    try:
        with pytest.raises(lock.Busy), lock.locked(tmp_path, 0):
            pass
        proc.kill()
        proc.wait(5)
        with lock.locked(tmp_path, 0):  # free although the holder's child still runs
            pass
    finally:
        proc.kill()
        subprocess.run(["kill", str(child)], check=False)


def test_a_missing_directory_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError), lock.locked(tmp_path / "gone", 0):
        pass
