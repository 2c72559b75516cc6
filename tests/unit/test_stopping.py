"""A daemon stops when asked, or on a bug that its run() re-raises."""

from __future__ import annotations

import asyncio
import logging

import pytest

from pybgp.stopping import Stopping


def test_asked_to_stop_returns_quietly() -> None:
    async def main() -> None:
        stopping = Stopping(logging.getLogger("test"))
        asyncio.get_running_loop().call_soon(stopping.set)
        await stopping.until()

    asyncio.run(main())


def test_the_first_bug_is_logged_and_re_raised(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        stopping = Stopping(logging.getLogger("test"))
        stopping.on_bug("following /calico/resources/v3/")(KeyError("first"))
        stopping.fail(ValueError("second"), "applying")
        await stopping.until()

    with pytest.raises(KeyError, match="first"):
        asyncio.run(main())
    assert "following /calico/resources/v3/ failed" in caplog.text
    assert "applying failed" in caplog.text
