"""ExaBGP's API helper: hands ExaBGP's pipes to the speaker, then waits.

ExaBGP talks only to helper processes it starts itself, over their stdin and
stdout. This helper connects to the speaker's unix socket (``argv[1]``),
passes both pipe ends over it (SCM_RIGHTS) and becomes ``sleep infinity``:
the speaker then reads ExaBGP's messages and writes its commands on the
pipes themselves, with no process copying bytes in between (a relay was one
more wake-up and one more process wanting a CPU on the path of every
announcement, both ways; docs/benchmarks.md).

The ``sleep`` (~1.4 MiB VmHWM) keeps what ExaBGP watches alive: ExaBGP restarts a
helper that exits. It holds the socket connection open, so the speaker
learns of its end (EOF) and stops writing to pipes ExaBGP has dropped. It
dies with ExaBGP (PR_SET_PDEATHSIG survives the exec).

Runs as ``python -I -S exabgp_helper.py SOCKET``: standard library only,
nothing of pybgp (it is not importable here), started in ~10 ms.
"""

import array
import ctypes
import os
import signal
import socket
import sys

PR_SET_PDEATHSIG = 1
SLEEP = "/bin/sleep"


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: exabgp_helper.py SOCKET", file=sys.stderr)
        return 2
    exabgp = os.getppid()
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != exabgp:  # ExaBGP died before the line above
        return 1
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(sys.argv[1])
        fds = array.array("i", [sys.stdin.fileno(), sys.stdout.fileno()])
        conn.sendmsg([b"pipes"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
    except OSError as exc:
        print(f"exabgp_helper: {sys.argv[1]}: {exc}", file=sys.stderr)
        return 1
    conn.set_inheritable(True)  # the sleep keeps it: its end tells the speaker
    # An empty environment: no locale to load (1.7 -> 1.4 MiB VmHWM).
    os.execve(SLEEP, ["pybgp-exabgp-helper", "infinity"], {})


if __name__ == "__main__":
    sys.exit(main())
