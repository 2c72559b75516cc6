"""ExaBGP's API helper hands the speaker ExaBGP's pipes (no ExaBGP needed:
the test holds the pipes' other ends, as ExaBGP would)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

from pybgp.speaker.exabgp_proc import ExaBGP


async def _until(check, what: str, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def _helper_for(exa: ExaBGP) -> AsyncIterator[tuple[subprocess.Popen[bytes], int, int]]:
    """A real helper on pipes the test holds as ExaBGP would, attached:
    (the helper, ExaBGP's end for its messages, ExaBGP's end for commands)."""
    helper_in, exabgp_out = os.pipe()  # ExaBGP writes its messages here
    exabgp_in, helper_out = os.pipe()  # ExaBGP reads commands here
    os.set_blocking(exabgp_in, False)
    helper = subprocess.Popen(exa.helper_argv, stdin=helper_in, stdout=helper_out)
    os.close(helper_in)
    os.close(helper_out)
    try:
        await _until(lambda: exa.attached, "the helper's pipes")
        yield helper, exabgp_out, exabgp_in
    finally:
        if helper.poll() is None:
            helper.kill()
            helper.wait(5)
        os.close(exabgp_out)
        os.close(exabgp_in)
        await exa.stop()


def _read_all(fd: int) -> bytes:
    out = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return out
        if not chunk:
            return out
        out += chunk


def test_helper_passes_the_pipes_and_its_end_detaches_them(tmp_path: Path) -> None:
    async def main() -> None:
        lines: list[str] = []
        exa = ExaBGP(str(tmp_path), lines.append, lambda code: None)
        exa.listen()
        assert oct(os.stat(exa.socket_path).st_mode & 0o777) == "0o600"
        exa.send(["before the helper"])  # waits for the pipes
        async with _helper_for(exa) as (helper, exabgp_out, exabgp_in):
            # the helper becomes a sleep holding what ExaBGP watches
            await _until(lambda: Path(f"/proc/{helper.pid}/comm").read_text().strip() == "sleep",
                         "the helper to become sleep")
            assert Path(f"/proc/{helper.pid}/environ").read_bytes() == b""  # no locale to load
            await _until(lambda: _peek(exabgp_in), "the queued command")
            assert exa._out == b""
            assert _read_all(exabgp_in) == b"before the helper\n"
            exa.send(["neighbor 198.18.0.12 announce route 198.19.0.0/26 next-hop self",
                      "announce eor ipv4 unicast"])
            assert _read_all(exabgp_in) == (b"neighbor 198.18.0.12 announce route "
                                            b"198.19.0.0/26 next-hop self\n"
                                            b"announce eor ipv4 unicast\n")
            # a line split across writes arrives whole, once
            os.write(exabgp_out, b'{"type": "state"}\n{"type": "up')
            await _until(lambda: len(lines) == 1, "the first line")
            os.write(exabgp_out, b'date"}\n')
            await _until(lambda: len(lines) == 2, "the second line")
            assert lines == ['{"type": "state"}', '{"type": "update"}']
            # the helper dies: the speaker lets go of the pipes, commands wait
            helper.send_signal(signal.SIGKILL)
            helper.wait(5)
            await _until(lambda: not exa.attached, "the pipes to be let go")
            exa.send(["after the helper"])
            assert _read_all(exabgp_in) == b""
        assert not os.path.exists(exa.socket_path)

    asyncio.run(main())


def _peek(fd: int) -> bool:
    import select

    return bool(select.select([fd], [], [], 0)[0])


def test_a_connection_without_pipes_is_dropped(tmp_path: Path) -> None:
    import socket

    async def main() -> None:
        exa = ExaBGP(str(tmp_path), lambda line: None, lambda code: None)
        exa.listen()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.connect(exa.socket_path)
                s.sendall(b"no pipes here\n")
                s.setblocking(False)
                await _until(lambda: _closed(s), "the speaker to drop it")
            assert not exa.attached
        finally:
            await exa.stop()

    asyncio.run(main())


def _closed(s) -> bool:
    try:
        return s.recv(1) == b""
    except BlockingIOError:
        return False


def test_lines_of_one_read_are_followed_by_one_lines_read_call(tmp_path: Path) -> None:
    """The speaker acts on ExaBGP's lines as soon as a read's lines are in:
    ``on_lines_read`` runs once after them (not once per line, not a loop
    turn later), and not for a read that completed no line."""
    async def main() -> None:
        events: list[str] = []
        exa = ExaBGP(str(tmp_path), events.append, lambda code: None,
                     on_lines_read=lambda: events.append("<read>"))
        exa.listen()
        async with _helper_for(exa) as (_, exabgp_out, _exabgp_in):
            os.write(exabgp_out, b"one\ntwo\nthr")
            await _until(lambda: "<read>" in events, "the first read")
            os.write(exabgp_out, b"ee")  # no whole line: nothing to act on
            await asyncio.sleep(0.1)
            os.write(exabgp_out, b"\n")
            await _until(lambda: events.count("<read>") == 2, "the second read")
            assert events == ["one", "two", "<read>", "three", "<read>"]

    asyncio.run(main())


def test_lines_left_at_the_helpers_end_are_read_and_answers_wait(tmp_path: Path) -> None:
    """When a helper goes, what ExaBGP had written is still handed over, and a
    command the speaker sends in reply waits for the next helper instead of
    going down the pipe being dropped."""
    async def main() -> None:
        lines: list[str] = []
        exa: ExaBGP

        def reply() -> None:
            exa.send([f"reply to {lines[-1]}"])

        exa = ExaBGP(str(tmp_path), lines.append, lambda code: None, on_lines_read=reply)
        exa.listen()
        async with _helper_for(exa) as (_, exabgp_out, exabgp_in):
            os.write(exabgp_out, b'{"type": "state", "last": true}\n')
            # the helper's end noticed before the line was: as when both are ready at once
            exa._detach(read_rest=True)
            assert lines == ['{"type": "state", "last": true}']
            assert _read_all(exabgp_in) == b""  # nothing down the dropped pipe
            assert exa._pending == ['reply to {"type": "state", "last": true}']

    asyncio.run(main())
