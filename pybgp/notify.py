"""sd_notify(3) in the standard library: tell systemd (or a lab) a daemon is ready.

A unit with ``Type=notify`` starts the daemon with ``$NOTIFY_SOCKET`` naming
a unix datagram socket (a path, or ``@name`` for the abstract namespace);
the daemon sends newline-separated ``KEY=value`` assignments to it:
``READY=1`` once it serves, ``STOPPING=1`` when it begins to stop,
``STATUS=…`` free text shown by ``systemctl status``.

Owns: nothing but one datagram per call, on a socket opened and closed in
that call.

Must never: raise (a daemon does not fail because nobody listens for its
readiness), block (the socket is non-blocking: a full receiver drops the
message), or be called on a hot path: it exists for a few state changes in
a daemon's life.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

ENV = "NOTIFY_SOCKET"


def address(value: str) -> str | bytes | None:
    """The socket address named by a ``$NOTIFY_SOCKET`` value (None: not usable)."""
    if value.startswith("@"):
        return b"\0" + value[1:].encode()  # abstract namespace
    if value.startswith("/"):
        return value
    return None  # unset, or a vsock address (not a unix socket): not ours to serve


def notify(state: str, env: Mapping[str, str] | None = None) -> bool:
    """Send ``state`` (e.g. ``"READY=1"``) to ``$NOTIFY_SOCKET``; True if it was sent."""
    target = address((os.environ if env is None else env).get(ENV, ""))
    if target is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.setblocking(False)
            s.sendto(state.encode(), target)
    except OSError:
        return False
    return True


def ready(status: str | None = None, env: Mapping[str, str] | None = None) -> bool:
    """``READY=1`` (with a ``STATUS=`` line when given)."""
    return notify("READY=1" + (f"\nSTATUS={status}" if status else ""), env)


def stopping(env: Mapping[str, str] | None = None) -> bool:
    return notify("STOPPING=1", env)


def status(text: str, env: Mapping[str, str] | None = None) -> bool:
    return notify(f"STATUS={text}", env)
