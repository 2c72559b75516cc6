"""A small undo stack for straight-line commands that must be all or nothing.

Usage::

    with UndoStack() as undo:
        ips = allocate(); undo.push("release addresses", lambda: release(ips))
        wired = wire();   undo.push("remove veth", lambda: unwire(wired))
        write_endpoint()
        undo.commit()

Invariants: when the block is left by an exception (any BaseException,
including KeyboardInterrupt) before ``commit``, every pushed action runs once,
newest first; a failing undo action is logged and does not stop the others nor
replace the original exception. After ``commit`` nothing runs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import TracebackType

log = logging.getLogger("pybgp.cni")


class UndoStack:
    def __init__(self) -> None:
        self._actions: list[tuple[str, Callable[[], object]]] = []
        self.failures: list[str] = []

    def push(self, what: str, action: Callable[[], object]) -> None:
        self._actions.append((what, action))

    def commit(self) -> None:
        self._actions.clear()

    def rollback(self) -> None:
        while self._actions:
            what, action = self._actions.pop()
            try:
                action()
            except Exception as exc:
                log.error("undo failed: %s: %s", what, exc)
                self.failures.append(f"{what}: {exc}")

    def __enter__(self) -> UndoStack:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self.rollback()
