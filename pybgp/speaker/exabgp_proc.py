"""ExaBGP 5 as the speaker's child process (thin shell).

Owns: the ExaBGP configuration file, the process, and the unix socket its API
helper connects back to. ExaBGP talks only to helper processes it starts
itself, over their stdin/stdout; the helper (:mod:`pybgp.speaker.exabgp_helper`)
passes those two pipes to the speaker over the socket and turns into
``sleep``, so the speaker reads ExaBGP's lines and writes its commands on the
pipes directly, from its event loop (``add_reader``): no relay process copies
the bytes, and a line is handled as soon as it is read. The helper's
connection stays open while it lives; when it closes (the helper was killed),
commands wait for the next helper ExaBGP starts. ExaBGP itself runs through
:mod:`pybgp.speaker.exabgp_main`. Configuration changes are written atomically and
applied with SIGUSR1, which ExaBGP handles per neighbour: unchanged sessions
stay up, removed ones close, new ones start.

Traps handled (REFERENCE §4): acks are turned off (``exabgp.api.ack=false``)
so a slow reader can never freeze ExaBGP's reactor; ExaBGP gets SIGKILL when
the speaker dies (PR_SET_PDEATHSIG), so its sessions close and the peers'
graceful-restart helpers take over instead of talking to a headless ExaBGP;
the helper runs as root (ExaBGP otherwise drops to ``nobody``); ExaBGP 5.0
silently drops a SIGUSR1 that arrives while some peer still has updates
queued (its reactor re-arms the signal before checking), so every reload is
confirmed in ExaBGP's log and signalled again until it has happened.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import ctypes
import errno
import fcntl
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable

from pybgp.errors import SpeakerError

log = logging.getLogger("pybgp.speaker.exabgp")
PR_SET_PDEATHSIG = 1
RELOAD_MARK = b"performing reload of exabgp"  # logged (INFO) as a reload begins
RELOAD_RETRY = 1.0  # seconds between checks / repeated signals
RELOAD_TRIES = 300
QUIET_LOG_CATEGORIES = ("processes", "statistics")  # ExaBGP log lines per route or UPDATE
HELPER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "exabgp_helper.py")
F_SETPIPE_SZ = 1031
PIPE_SIZE = 1 << 20  # ExaBGP blocks on a full pipe: room for a burst of UPDATEs
READ_SIZE = 1 << 16  # as much as one read hands over (see _read)


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class ExaBGP:
    def __init__(
        self,
        state_dir: str,
        on_line: Callable[[str], None],
        on_exit: Callable[[int], None],
        *,
        on_lines_read: Callable[[], None] | None = None,
        exabgp: str | None = None,
    ):
        self.state_dir = state_dir
        self.config_path = os.path.join(state_dir, "exabgp.conf")
        self.socket_path = os.path.join(state_dir, "api.sock")
        self.log_path = os.path.join(state_dir, "exabgp.log")
        # ExaBGP through pybgp.speaker.exabgp_main (stock ExaBGP, run leaner);
        # -P: nothing in the state directory (its cwd) can shadow a module.
        self.argv = [exabgp] if exabgp else [sys.executable, "-P", "-m",
                                             "pybgp.speaker.exabgp_main"]
        self.helper_argv = self._helper_command(self.socket_path)
        self._on_line = on_line
        self._on_lines_read = on_lines_read  # after each read's lines: act on them now
        self._on_exit = on_exit
        self._listener: socket.socket | None = None
        self._helper: socket.socket | None = None  # the live helper's connection
        self._pipes: tuple[int, int] | None = None  # (read ExaBGP's lines, write commands)
        self._partial = b""  # a line split across reads
        self._out = b""  # commands the pipe had no room for yet
        self._pending: list[str] = []  # commands while no helper is connected
        self.proc: asyncio.subprocess.Process | None = None
        self._stopping = False
        self._reload_from: int | None = None  # log offset after the newest config write
        self._confirm: asyncio.Task[None] | None = None
        self._spawning: asyncio.Task[None] | None = None

    @staticmethod
    def _helper_command(socket_path: str) -> list[str]:
        """ExaBGP's API helper (``exabgp_helper.py``), by this interpreter,
        isolated (``-I -S``: standard library only, nothing from the cwd)."""
        bad = sorted({c for c in socket_path + HELPER + sys.executable
                      if c in ",;{}[]\"'\\" or c.isspace()})
        if bad:  # ExaBGP's ``run`` line would split it (its tokeniser splits at commas)
            raise SpeakerError(f"socket {socket_path!r} or helper {HELPER!r}: ExaBGP cannot "
                               f"pass a path holding {' '.join(map(repr, bad))} to its helper; "
                               "choose another --state-dir")
        return [sys.executable, "-I", "-S", HELPER, socket_path]

    def start(self, config: str) -> None:
        """Listen for the helper, write the configuration, start ExaBGP (in
        the background: a later ``reconfigure`` before it runs is read by it)."""
        self.listen()
        self._write_config(config)
        loop = asyncio.get_running_loop()
        self._spawning = loop.create_task(self._spawn())

    async def _spawn(self) -> None:
        env = dict(
            os.environ,
            **{
                "exabgp.daemon.daemonize": "false",
                "exabgp.daemon.user": "root",
                "exabgp.api.ack": "false",
                # each received prefix as "P", not { "nlri": "P" }: a 100k-route
                # transfer is 100k fewer JSON objects for ExaBGP to write and
                # for the speaker to decode and hold at once
                "exabgp.api.compact": "true",
                "exabgp.log.destination": self.log_path,
                "exabgp.log.level": "INFO",
                # ExaBGP writes one INFO line per API command ("route added to
                # …", category processes) and per UPDATE sent or received
                # ("statistics for send-update counter N", statistics): on the
                # path of every announcement, with a rollover check per record
                # (py-spy). Off unless PYBGP_EXABGP_LOG_<CATEGORY>=true in the
                # speaker's environment.
                **{f"exabgp.log.{category}":
                   os.environ.get(f"PYBGP_EXABGP_LOG_{category.upper()}", "false")
                   for category in QUIET_LOG_CATEGORIES},
                "exabgp_cli_enable": "false",
                "exabgp.cli.enable": "false",
            },
        )
        with open(self.log_path + ".stderr", "ab") as errlog:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv, "server", self.config_path,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=errlog,
                env=env,
                cwd=self.state_dir,
                preexec_fn=_die_with_parent,
            )
        log.info("ExaBGP started (pid %d)", self.proc.pid)
        asyncio.get_running_loop().create_task(self._watch(self.proc))

    async def _watch(self, proc: asyncio.subprocess.Process) -> None:
        code = await proc.wait()
        if self._stopping or proc is not self.proc:
            return
        log.error("ExaBGP exited with status %s; restarting it", code)
        self._detach()
        self._on_exit(code)
        await asyncio.sleep(1.0)
        if not self._stopping:
            await self._spawn()

    def _write_config(self, config: str) -> None:
        tmp = self.config_path + ".tmp"
        with open(tmp, "w") as fh:
            fh.write(config)
        os.chmod(tmp, 0o600)  # holds TCP-MD5 passwords
        os.replace(tmp, self.config_path)

    def reconfigure(self, config: str) -> None:
        self._write_config(config)
        if self.proc is None or self.proc.returncode is not None:
            return  # the next start reads the new file
        # Any reload that begins after this point reads the file just written.
        self._reload_from = self._log_size()
        self.proc.send_signal(signal.SIGUSR1)
        if self._confirm is None or self._confirm.done():
            self._confirm = asyncio.get_running_loop().create_task(self._confirm_reload())

    def _log_size(self) -> int:
        try:
            return os.path.getsize(self.log_path)
        except OSError:
            return 0

    def _reloaded_since(self, offset: int) -> bool:
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(offset)
                return RELOAD_MARK in fh.read()
        except OSError:
            return False

    async def _confirm_reload(self) -> None:
        for attempt in range(RELOAD_TRIES):
            await asyncio.sleep(RELOAD_RETRY)
            proc = self.proc
            if self._stopping or proc is None or proc.returncode is not None:
                return  # a restarted ExaBGP reads the newest file anyway
            if self._reload_from is None or self._reloaded_since(self._reload_from):
                return
            if attempt % 30 == 0:
                log.warning("ExaBGP has not reloaded its configuration yet (a peer has "
                            "updates queued?); signalling again")
            proc.send_signal(signal.SIGUSR1)
        log.error("ExaBGP did not reload its configuration after %d signals", RELOAD_TRIES)

    # -- the helper and ExaBGP's pipes ---------------------------------------------

    def listen(self) -> None:
        """Open the socket ExaBGP's helpers connect to (``start`` does)."""
        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(self.socket_path)
        os.chmod(self.socket_path, 0o600)
        listener.listen(4)
        listener.setblocking(False)
        asyncio.get_running_loop().add_reader(listener, self._accept)
        self._listener = listener

    @property
    def attached(self) -> bool:
        """A helper has passed ExaBGP's pipes and is alive."""
        return self._pipes is not None

    def _accept(self) -> None:
        assert self._listener is not None
        try:
            conn, _ = self._listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        conn.setblocking(False)
        asyncio.get_running_loop().add_reader(conn, self._receive_pipes, conn)

    def _receive_pipes(self, conn: socket.socket) -> None:
        """The helper's first message: ExaBGP's two pipes (its stdin, stdout)."""
        loop = asyncio.get_running_loop()
        loop.remove_reader(conn)
        fds = array.array("i")
        try:
            _, ancillary, _, _ = conn.recvmsg(16, socket.CMSG_SPACE(2 * fds.itemsize))
        except (BlockingIOError, InterruptedError):
            loop.add_reader(conn, self._receive_pipes, conn)
            return
        except OSError as exc:
            log.warning("ExaBGP's API helper: %s", exc)
            conn.close()
            return
        for level, kind, data in ancillary:
            if (level, kind) == (socket.SOL_SOCKET, socket.SCM_RIGHTS):
                fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
        if len(fds) != 2:
            for fd in fds:
                os.close(fd)
            log.warning("ExaBGP's API helper connected without its two pipes; ignored")
            conn.close()
            return
        self._detach(read_rest=True)  # a previous helper's pipes
        read_fd, write_fd = fds
        for fd in fds:
            os.set_blocking(fd, False)
            with contextlib.suppress(OSError):  # a bigger pipe is a nicety, not a need
                fcntl.fcntl(fd, F_SETPIPE_SZ, PIPE_SIZE)
        self._helper, self._pipes = conn, (read_fd, write_fd)
        loop.add_reader(conn, self._helper_gone, conn)
        loop.add_reader(read_fd, self._read)
        pending, self._pending = self._pending, []
        self.send(pending)

    def _helper_gone(self, conn: socket.socket) -> None:
        """The helper's connection became readable: it sends nothing more, so
        this is its end (or junk, treated alike)."""
        if conn is self._helper:
            self._detach(read_rest=True)
        else:
            asyncio.get_running_loop().remove_reader(conn)
            conn.close()

    def _detach(self, *, read_rest: bool = False) -> None:
        """Forget the helper and its pipes; commands wait for the next one.
        ``read_rest``: first hand over what ExaBGP wrote there (still news),
        with the pipes already out of use, so that any command it leads to
        waits for the next helper instead of going down a pipe being dropped."""
        loop = asyncio.get_running_loop()
        pipes, self._pipes = self._pipes, None
        if self._helper is not None:
            loop.remove_reader(self._helper)
            self._helper.close()
            self._helper = None
        if pipes is not None:
            read_fd, write_fd = pipes
            loop.remove_reader(read_fd)
            loop.remove_writer(write_fd)
            if read_rest:
                self._read_from(read_fd, until_empty=True)
            os.close(read_fd)
            os.close(write_fd)
        self._partial = self._out = b""

    def _read(self) -> None:
        """The reader callback: one read of ExaBGP's pipe (see ``_read_from``)."""
        if self._pipes is not None:
            self._read_from(self._pipes[0])

    def _read_from(self, fd: int, until_empty: bool = False) -> None:
        """Hand over the whole lines of one read (of all, ``until_empty``),
        then call ``on_lines_read`` once. One read a call, as asyncio's own
        transports do: the loop comes back while there is more, and a burst
        is handled in pieces between the loop's other work (the kernel
        writer's results): reading all there was first made a 100k-route
        transfer slower (fib_learn, docs/benchmarks.md)."""
        delivered = False
        try:
            while True:
                try:
                    data = os.read(fd, READ_SIZE)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError as exc:
                    log.warning("reading ExaBGP's messages: %s", exc)
                    data = b""
                if not data:  # ExaBGP closed its end: it is exiting or dropped the helper
                    asyncio.get_running_loop().remove_reader(fd)
                    return
                *lines, self._partial = (self._partial + data).split(b"\n")
                for line in lines:
                    self._on_line(line.decode(errors="replace"))
                delivered |= bool(lines)
                if not until_empty:
                    return
        finally:
            if delivered and self._on_lines_read is not None:
                self._on_lines_read()

    def send(self, lines: list[str]) -> None:
        if not lines:
            return
        if self._pipes is None:
            self._pending.extend(lines)
            return
        self._out += b"".join(line.encode() + b"\n" for line in lines)
        self._write()

    def _write(self) -> None:
        assert self._pipes is not None
        write_fd = self._pipes[1]
        try:
            done = os.write(write_fd, self._out)
        except (BlockingIOError, InterruptedError):
            done = 0
        except OSError as exc:
            if exc.errno != errno.EPIPE:
                log.warning("writing to ExaBGP: %s", exc)
            self._detach()  # ExaBGP is gone; on its restart the sessions start afresh
            return
        self._out = self._out[done:]
        loop = asyncio.get_running_loop()
        if self._out:
            loop.add_writer(write_fd, self._write)
        else:
            loop.remove_writer(write_fd)

    async def stop(self) -> None:
        self._stopping = True
        if self._spawning is not None:
            await self._spawning  # an ExaBGP starting now must not outlive us
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        self._detach()
        if self._listener is not None:
            asyncio.get_running_loop().remove_reader(self._listener)
            self._listener.close()
            self._listener = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)
