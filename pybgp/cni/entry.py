"""``pybgp-cni``: the executable a container runtime runs for every pod.

Fast path: the request is handed over a unix socket to the node's long-running
``pybgp cni-daemon`` (which has pyroute2 imported and etcd connected). When no
daemon answers, the very same library code runs in this process — slower to
start, equally correct. Either way the output is the CNI result or CNI error
JSON on stdout, logs go to stderr (or the config's ``log_file_path``), and a
Python traceback never reaches stdout.

This module imports only the standard library and ``pybgp.cni.spec``.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Callable, Mapping
from typing import Any

from pybgp.cni import spec

DEFAULT_SOCKET = "/var/run/pybgp/cni.sock"
_ENV_SOCKET = "PYBGP_CNI_SOCKET"
# A request the daemon has not answered within this time is reported as
# "try again later" (CNI code 11); ADD and DEL are idempotent, so a retry is safe.
DAEMON_TIMEOUT = 60.0


def socket_path(config: Mapping[str, Any], env: Mapping[str, str]) -> str:
    return str(config.get("daemon_socket") or env.get(_ENV_SOCKET) or DEFAULT_SOCKET)


def call_daemon(path: str, message: dict[str, Any]) -> dict[str, Any] | None:
    """Send one request to the daemon; None if no daemon listens at ``path``."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(DAEMON_TIMEOUT)
        try:
            sock.connect(path)
        except (FileNotFoundError, ConnectionRefusedError):
            return None
        sock.sendall(json.dumps(message).encode() + b"\n")
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    except OSError as exc:
        raise spec.CNIError(
            spec.TRY_AGAIN_LATER, f"pybgp cni-daemon at {path} failed: {exc}"
        ) from exc
    finally:
        sock.close()
    data = b"".join(chunks)
    if not data:
        raise spec.CNIError(spec.TRY_AGAIN_LATER, f"pybgp cni-daemon at {path} gave no answer")
    reply: dict[str, Any] = json.loads(data)
    return reply


def run(
    env: Mapping[str, str],
    stdin: bytes,
    handle_local: Callable[[spec.Request], dict[str, Any] | None],
) -> tuple[int, dict[str, Any] | None]:
    """One invocation: (exit status, JSON to print or None)."""
    version = spec.LATEST
    try:
        req = spec.parse_request(env, stdin)
        version = req.version
        if req.command == "VERSION":
            return 0, spec.version_reply(req)
        reply = call_daemon(socket_path(req.config, env), {"request": req.to_wire()})
        if reply is None:
            return 0, handle_local(req)
        if reply.get("error"):
            err = reply["error"]
            raise spec.CNIError(int(err["code"]), err["msg"], err.get("details", ""))
        return 0, reply.get("result")
    except spec.CNIError as exc:
        return 1, exc.to_json(version if version != spec.LATEST else _stdin_version(stdin))


def _stdin_version(stdin: bytes) -> str:
    """The config's cniVersion for an error reply, even when the request was invalid."""
    try:
        version = json.loads(stdin).get("cniVersion")
    except (ValueError, AttributeError):
        return spec.LATEST
    return version if version in spec.SUPPORTED_VERSIONS else spec.LATEST


def _handle_local(req: spec.Request) -> dict[str, Any] | None:
    from pybgp.cni.plugin import handle

    return handle(req)


def main() -> int:
    stdin = sys.stdin.buffer.read() if not sys.stdin.isatty() else b""
    try:
        status, out = run(os.environ, stdin, _handle_local)
    except Exception as exc:  # last resort: the runtime must get JSON, not a traceback
        import traceback

        traceback.print_exc(file=sys.stderr)
        status, out = 1, spec.CNIError(spec.INTERNAL, f"internal error: {exc}").to_json(spec.LATEST)
    if out is not None:
        sys.stdout.write(json.dumps(out) + "\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
