"""How a daemon's loop ends: asked to (SIGTERM, SIGINT), or on a bug in one
of its callbacks, which ``run()`` then re-raises so the process exits
non-zero and says why, rather than running on with a view of etcd or the
kernel that no longer changes. The speaker, the agent and the reflector
share it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable


class Stopping(asyncio.Event):
    """Set when the daemon should stop; ``failure`` is the first bug, if any."""

    def __init__(self, log: logging.Logger):
        super().__init__()
        self.failure: BaseException | None = None
        self._log = log

    def fail(self, exc: BaseException, what: str) -> None:
        """A bug in ``what``: log it with its traceback and stop."""
        self._log.error("%s failed", what, exc_info=exc)
        if self.failure is None:
            self.failure = exc
        self.set()

    def on_bug(self, what: str) -> Callable[[BaseException], None]:
        return lambda exc: self.fail(exc, what)

    async def until(self) -> None:
        """Wait until set; re-raise the bug that set it."""
        await self.wait()
        if self.failure is not None:
            raise self.failure
