"""The process ExaBGP runs as its API helper: a byte pipe to the speaker daemon.

ExaBGP talks to its helper over the helper's stdin/stdout; the speaker daemon
is not ExaBGP's child, so this relay connects to the daemon's unix socket and
copies lines both ways. Standard library only. It exits when either side
closes, and ExaBGP starts it again if ExaBGP lives on.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time


def main() -> int:
    path = sys.argv[1]
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    for _ in range(50):  # the daemon creates the socket before starting ExaBGP
        try:
            sock.connect(path)
            break
        except OSError:
            time.sleep(0.1)
    else:
        print(f"pybgp relay: cannot connect to {path}", file=sys.stderr)
        return 1

    def commands() -> None:  # daemon → ExaBGP
        with sock.makefile("rb") as stream:
            for line in stream:
                sys.stdout.buffer.write(line)
                sys.stdout.buffer.flush()
        os._exit(0)

    threading.Thread(target=commands, daemon=True).start()
    for line in sys.stdin.buffer:  # ExaBGP → daemon
        sock.sendall(line)
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
