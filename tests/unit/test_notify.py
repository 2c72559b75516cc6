"""``pybgp.notify`` against a real unix datagram socket, as systemd listens."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from pybgp import notify


@pytest.fixture
def listener(tmp_path: Path):
    path = tmp_path / "notify.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(path))
    s.settimeout(5)
    yield s, {"NOTIFY_SOCKET": str(path)}
    s.close()


def test_ready_reaches_the_socket(listener) -> None:
    sock, env = listener
    assert notify.ready(env=env)
    assert sock.recv(4096) == b"READY=1"
    assert notify.ready("in sync, 3 peers", env=env)
    assert sock.recv(4096) == b"READY=1\nSTATUS=in sync, 3 peers"
    assert notify.stopping(env=env)
    assert sock.recv(4096) == b"STOPPING=1"


def test_abstract_socket() -> None:
    name = f"pybgp-notify-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind("\0" + name)
        s.settimeout(5)
        assert notify.status("hello", env={"NOTIFY_SOCKET": "@" + name})
        assert s.recv(4096) == b"STATUS=hello"


def test_the_process_environment_is_the_default(listener, monkeypatch) -> None:
    sock, env = listener
    monkeypatch.setenv("NOTIFY_SOCKET", env["NOTIFY_SOCKET"])
    assert notify.ready()
    assert sock.recv(4096) == b"READY=1"


@pytest.mark.parametrize("value", ["", "relative/path", "vsock:2:1234"])
def test_no_usable_socket_is_not_an_error(value: str) -> None:
    assert notify.ready(env={"NOTIFY_SOCKET": value}) is False
    assert notify.ready(env={}) is False


def test_nobody_listening_is_not_an_error(tmp_path: Path) -> None:
    gone = tmp_path / "gone.sock"
    assert notify.ready(env={"NOTIFY_SOCKET": str(gone)}) is False
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(str(gone))
    # bound once, closed: the path exists, nobody reads it
    assert notify.ready(env={"NOTIFY_SOCKET": str(gone)}) is False


def test_a_full_receiver_does_not_block(listener) -> None:
    sock, env = listener
    sent = sum(notify.status("x" * 1000, env=env) for _ in range(2000))
    assert 0 < sent < 2000  # the queue filled up and the rest were dropped, not waited on
