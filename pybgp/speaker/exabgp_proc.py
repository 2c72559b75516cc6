"""ExaBGP 5 as the speaker's child process (thin shell).

Owns: the ExaBGP configuration file, the process, and the unix socket its API
relay connects back to. Configuration changes are written atomically and
applied with SIGUSR1, which ExaBGP handles per neighbour: unchanged sessions
stay up, removed ones close, new ones start.

Traps handled (REFERENCE §4): acks are turned off (``exabgp.api.ack=false``)
so a slow reader can never freeze ExaBGP's reactor; ExaBGP gets SIGKILL when
the speaker dies (PR_SET_PDEATHSIG), so its sessions close and the peers'
graceful-restart helpers take over instead of talking to a headless ExaBGP;
the helper runs as root (ExaBGP otherwise drops to ``nobody``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys
from collections.abc import Callable

log = logging.getLogger("pybgp.speaker.exabgp")
PR_SET_PDEATHSIG = 1


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
        self.exabgp = exabgp or os.path.join(os.path.dirname(sys.executable), "exabgp")
        self._on_line = on_line
        self._on_exit = on_exit
        self._server: asyncio.AbstractServer | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._pending: list[str] = []
        self.proc: asyncio.subprocess.Process | None = None
        self._stopping = False

    @property
    def relay_argv(self) -> list[str]:
        return [sys.executable, "-I", "-m", "pybgp.speaker.relay", self.socket_path]

    async def start(self, config: str) -> None:
        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)
        self._server = await asyncio.start_unix_server(self._relay, path=self.socket_path)
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
                "exabgp_cli_enable": "false",
                "exabgp.cli.enable": "false",
            },
        )
        # The package directory of pybgp must be importable by the relay even
        # when pybgp is not installed (running from a checkout).
        pkg_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env["PYTHONPATH"] = pkg_root + os.pathsep + env.get("PYTHONPATH", "")
        with open(self.log_path + ".stderr", "ab") as errlog:
            self.proc = await asyncio.create_subprocess_exec(
                self.exabgp, "server", self.config_path,
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
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGUSR1)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
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
