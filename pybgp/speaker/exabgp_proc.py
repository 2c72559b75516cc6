"""ExaBGP 5 as the speaker's child process (thin shell).

Owns: the ExaBGP configuration file, the process, and the unix socket its API
helper connects back to. ExaBGP talks only to helper processes it starts
itself, over their stdin/stdout; the helper is Debian's OpenBSD ``nc``
copying bytes between those pipes and the socket (a C program: ~1.5 MiB
VmHWM, where socat cost ~4.5 MiB and a Python relay ~12 MiB; ExaBGP and the
speaker both reassemble lines split across reads). ExaBGP itself runs
through :mod:`pybgp.speaker.exabgp_main`. Configuration changes are written atomically and
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

import asyncio
import contextlib
import ctypes
import logging
import os
import shutil
import signal
import sys
from collections.abc import Callable

from pybgp.errors import SpeakerError

log = logging.getLogger("pybgp.speaker.exabgp")
PR_SET_PDEATHSIG = 1
RELOAD_MARK = b"performing reload of exabgp"  # logged (INFO) as a reload begins
RELOAD_RETRY = 1.0  # seconds between checks / repeated signals
RELOAD_TRIES = 300
QUIET_LOG_CATEGORIES = ("processes", "statistics")  # ExaBGP log lines per route or UPDATE


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
        self._on_exit = on_exit
        self._server: asyncio.AbstractServer | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._pending: list[str] = []
        self.proc: asyncio.subprocess.Process | None = None
        self._stopping = False
        self._reload_from: int | None = None  # log offset after the newest config write
        self._confirm: asyncio.Task[None] | None = None

    @staticmethod
    def _helper_command(socket_path: str) -> list[str]:
        """ExaBGP's API helper: netcat between its stdin/stdout and our socket.

        ``nc -N -U``: on EOF from ExaBGP it shuts the socket down for writing
        (the speaker then sees EOF), and it exits when the speaker closes the
        socket; ExaBGP then starts it again.
        """
        nc = shutil.which("nc.openbsd")  # plain ``nc`` may be netcat-traditional: no -U
        if nc is None:
            raise SpeakerError("nc.openbsd not found on PATH: the speaker needs Debian's "
                               "netcat-openbsd package as ExaBGP's API helper "
                               "(scripts/setup.sh installs it)")
        bad = sorted({c for c in socket_path if c in ",;{}[]\"'\\" or c.isspace()})
        if bad:  # ExaBGP's ``run`` line would split it (its tokeniser splits at commas)
            raise SpeakerError(f"socket {socket_path!r}: ExaBGP cannot pass a path holding "
                               f"{' '.join(map(repr, bad))} to its helper; "
                               "choose another --state-dir")
        return [nc, "-N", "-U", socket_path]

    async def start(self, config: str) -> None:
        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)
        self._server = await asyncio.start_unix_server(
            self._helper_connected, path=self.socket_path, limit=1 << 22)
        os.chmod(self.socket_path, 0o600)
        self._write_config(config)
        await self._spawn()

    async def _spawn(self) -> None:
        env = dict(
            os.environ,
            **{
                "exabgp.daemon.daemonize": "false",
                "exabgp.daemon.user": "root",
                "exabgp.api.ack": "false",
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
        self._writer = None
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

    async def _helper_connected(self, reader: asyncio.StreamReader,
                                writer: asyncio.StreamWriter) -> None:
        if self._writer is not None:
            self._writer.close()
        self._writer = writer
        for line in self._pending:
            writer.write(line.encode() + b"\n")
        self._pending.clear()
        try:
            while True:
                raw = await reader.readline()
                if not raw:
                    break
                self._on_line(raw.decode(errors="replace"))
        finally:
            if self._writer is writer:
                self._writer = None

    def send(self, lines: list[str]) -> None:
        if self._writer is None:
            self._pending.extend(lines)
            return
        self._writer.write(b"".join(line.encode() + b"\n" for line in lines))

    async def stop(self) -> None:
        self._stopping = True
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self._server is not None:
            self._server.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)
