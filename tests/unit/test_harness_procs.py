"""Processes by identity (PID + start time) and the journal, against real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pybgp.testing.journal import Journal
from pybgp.testing.procs import ProcessRecord, pids_with_cwd_under, start_time, wait_gone


@pytest.fixture
def sleeper(tmp_path: Path):
    proc = subprocess.Popen(["sleep", "60"], cwd=tmp_path, start_new_session=True)
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)


def test_start_time_names_one_process(sleeper) -> None:
    rec = ProcessRecord.of(sleeper.pid, "sleep")
    assert rec.start == start_time(sleeper.pid) and rec.alive()
    assert ProcessRecord.from_dict(json.loads(json.dumps(rec.to_dict()))) == rec
    assert start_time(os.getpid()) != rec.start or os.getpid() == sleeper.pid


def test_a_record_with_another_start_time_is_never_signalled(sleeper) -> None:
    impostor = ProcessRecord("sleep", sleeper.pid, start_time(sleeper.pid) + 1)
    assert not impostor.alive()
    assert impostor.signal(signal.SIGKILL) is False
    assert impostor.stop(timeout=0.2) is True  # "gone", as far as that record goes
    assert sleeper.poll() is None  # the real process was not touched


def test_stop_terminates_the_group_and_reaps(sleeper) -> None:
    rec = ProcessRecord.of(sleeper.pid, "sleep")
    assert rec.stop(timeout=5)
    assert sleeper.wait(5) is not None  # reaped by stop() already: gone either way
    assert not rec.alive() and rec.signal(signal.SIGTERM) is False


def test_a_gone_pid_cannot_be_recorded() -> None:
    proc = subprocess.Popen(["true"])
    proc.wait(5)
    with pytest.raises(ProcessLookupError):
        ProcessRecord.of(proc.pid, "true")


def test_wait_gone_is_bounded(sleeper) -> None:
    assert wait_gone([ProcessRecord.of(sleeper.pid, "sleep")], 0.1) is False


def test_processes_found_by_their_directory(sleeper, tmp_path: Path) -> None:
    assert pids_with_cwd_under(tmp_path) == [sleeper.pid]
    assert sleeper.pid not in pids_with_cwd_under(tmp_path / "elsewhere")


def test_journal_is_replaced_whole(tmp_path: Path) -> None:
    j = Journal(tmp_path / "d" / "state.json")
    j.update("a", {"x": 1})
    j.update("b", [1, 2])
    again = Journal.load(j.path)
    assert again.get("a") == {"x": 1} and again.get("b") == [1, 2]
    assert sorted(p.name for p in j.path.parent.iterdir()) == ["state.json"]
    (tmp_path / "bad.json").write_text("[1]")
    with pytest.raises(ValueError):
        Journal.load(tmp_path / "bad.json")


def test_journal_survives_a_killed_writer(tmp_path: Path) -> None:
    """A writer killed at any point leaves the old document or the new one."""
    path = tmp_path / "state.json"
    code = ("import sys; from pybgp.testing.journal import Journal\n"
            f"j = Journal({str(path)!r})\n"
            "for i in range(100000): j.update('n', {'i': i, 'pad': 'x' * 2000})\n")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=Path(__file__).parents[2])
    try:
        for _ in range(500):  # bounded: ≤ 10 s
            if path.exists() or proc.poll() is not None:
                break
            time.sleep(0.02)
        time.sleep(0.1)  # well into its writes
    finally:
        proc.kill()
        proc.wait(10)
    assert Journal.load(path).get("n")["pad"] == "x" * 2000
    # whatever temp file the killed writer left is named for removal
    assert all(p in Journal.temp_files(path) for p in tmp_path.glob(".state.json.tmp*"))
    assert path not in Journal.temp_files(path)


def test_journal_temp_files_are_the_writers(tmp_path: Path) -> None:
    path = tmp_path / "lab.json"
    left = tmp_path / ".lab.json.tmp4242"
    left.write_text("{")
    (tmp_path / ".other.json.tmp1").write_text("{")
    assert Journal.temp_files(path) == [left]
