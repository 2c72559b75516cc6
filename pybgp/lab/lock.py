"""One lab command at a time changes a lab: an exclusive ``flock`` on its directory.

``up`` holds it for the whole build, ``pod add``/``pod del`` and ``down`` while
they change the lab and its journal; ``status`` and ``exec`` only read, and
take no lock. Each process keeps the whole journal in memory and rewrites it,
so without the lock two writers (two ``up`` in one directory, two ``pod add``
side by side) would each write a journal without the other's part, and
``down`` would then miss what was left out.

The lock is on the directory itself, not a file in it: nothing is created
(``up`` wants its directory empty), and it goes with the process however that
ends (``kill -9`` included). Its descriptor is not inherited, so the daemons
``up`` starts do not hold it after ``up`` exits.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class Busy(Exception):
    """Another process holds the lab's lock."""


@contextmanager
def locked(root: Path, wait: float) -> Iterator[None]:
    """Hold the lock on directory ``root``, waiting up to ``wait`` s for it
    (0: not at all); raises :class:`Busy` if it stays taken."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise Busy(str(root)) from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)
