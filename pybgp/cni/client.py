"""``pybgp-cni``'s first instructions: hand the raw request to the node daemon.

A container runtime starts the plugin once per pod, so its start-up cost is
paid on every pod start. This module imports only the built-in ``posix`` and
``sys``, the built-in ``time`` and the C ``_socket`` module (``json`` pulls in ``re`` and ``enum``,
``socket`` pulls in ``enum``: ~35 ms together; even ``os`` costs ~2 ms when
the interpreter starts without ``site``: measured). It forwards the CNI environment and
stdin unparsed to ``pybgp cni-daemon`` and copies the daemon's answer (exit
status and stdout bytes) back. Everything that parses or decides runs in the
daemon — or, when no daemon listens, in this process via ``pybgp.cni.entry``.

Wire format (one request per connection):
  request  = b"PYBGP-CNI 1 " + len(env) + b" " + len(stdin) + b"\\n" + env + stdin
             env = NUL-separated ``NAME=value`` of the CNI_* and PYBGP_* variables
  reply    = exit status (ASCII digits) + b"\\n" + the bytes to print on stdout
"""

from __future__ import annotations

import _socket
import posix
import sys
import time

MAGIC = b"PYBGP-CNI 1"
DEFAULT_SOCKET = "/var/run/pybgp/cni.sock"
ENV_SOCKET = b"PYBGP_CNI_SOCKET"
TIMEOUT = 60.0


def socket_path(stdin: bytes, env: dict[bytes, bytes]) -> str | None:
    """The daemon's socket: the config's ``daemon_socket``, $PYBGP_CNI_SOCKET, or the default.

    None when the config names it in a way only a JSON parser can read (an
    escape in the string): then the full entry point handles the request.
    """
    key = b'"daemon_socket"'
    at = stdin.find(key)
    if at < 0:
        return (env.get(ENV_SOCKET) or b"").decode() or DEFAULT_SOCKET
    rest = stdin[at + len(key):].lstrip()
    if not rest.startswith(b":"):
        return None
    rest = rest[1:].lstrip()
    if not rest.startswith(b'"'):
        return None
    end = rest.find(b'"', 1)
    value = rest[1:end]
    if end < 0 or b"\\" in value:
        return None
    return value.decode()


def encode(env: dict[bytes, bytes], stdin: bytes) -> bytes:
    pairs = b"\0".join(k + b"=" + v for k, v in env.items()
                       if k.startswith((b"CNI_", b"PYBGP_")))
    return b"%s %d %d\n" % (MAGIC, len(pairs), len(stdin)) + pairs + stdin


def decode(data: bytes) -> tuple[dict[str, str], bytes]:
    """The daemon's side of ``encode``; ValueError on anything malformed."""
    header, _, body = data.partition(b"\n")
    magic, env_len, stdin_len = header.rsplit(b" ", 2)
    if magic != MAGIC:
        raise ValueError("not a pybgp-cni request")
    n_env, n_stdin = int(env_len), int(stdin_len)
    if len(body) != n_env + n_stdin:
        raise ValueError("truncated pybgp-cni request")
    env = {}
    for pair in body[:n_env].decode().split("\0"):
        if pair:
            key, _, value = pair.partition("=")
            env[key] = value
    return env, body[n_env:]


def _connect(sock: _socket.socket, path: str) -> bool:
    """Connect, waiting while the daemon's accept queue is full; False when none listens.

    A unix socket with a timeout fails a connect at once with EAGAIN when the
    listener's backlog is full (a burst of pod starts), instead of waiting.
    """
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            sock.connect(path)
            return True
        except (FileNotFoundError, ConnectionRefusedError):
            return False
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.002)


def exchange(path: str, request: bytes) -> tuple[int, bytes] | None:
    """Send ``request``; (status, stdout) or None when no daemon listens at ``path``."""
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(TIMEOUT)
        if not _connect(sock, path):
            return None
        sock.sendall(request)
        sock.shutdown(_socket.SHUT_WR)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        sock.close()
    status, sep, out = b"".join(chunks).partition(b"\n")
    if not sep or not status.isdigit():
        raise OSError("the daemon closed the connection without an answer")
    return int(status), out


def main() -> int:
    stdin = b"" if sys.stdin is None or sys.stdin.isatty() else sys.stdin.buffer.read()
    env = posix.environ
    path = socket_path(stdin, env)
    reply = None
    if path is not None and env.get(b"CNI_COMMAND") != b"VERSION":
        try:
            reply = exchange(path, encode(env, stdin))
        except OSError as exc:  # the daemon failed mid-request: ADD/DEL are safe to retry
            from pybgp.cni.entry import try_again_later

            return try_again_later(stdin, f"pybgp cni-daemon at {path} failed: {exc}")
    if reply is None:
        from pybgp.cni.entry import main as local

        return local(stdin)
    status, out = reply
    sys.stdout.buffer.write(out)
    return status


if __name__ == "__main__":
    sys.exit(main())
