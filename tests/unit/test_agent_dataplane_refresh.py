"""A refresh asked while an apply runs does not change the state under it.

The agent's loop calls ``Dataplane.refresh`` (a link came or went, a route
vanished, a periodic refresh) while ``Dataplane.apply`` may run in a worker
thread. It once set ``neighbours = None`` straight away, between the
apply's two reads of it, and the apply died on ``None`` ('NoneType' object
is not iterable) at pod creation — the lab's agents stopped and their pods
were never programmed. Now refresh only records the request and the next
apply forgets, in its own thread, before it reads anything.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from pybgp.agent.dataplane import Dataplane

KNOWN = {("cali0123456789a", "198.19.0.1"): "ee:ee:ee:ee:ee:01"}


@pytest.fixture
def dp() -> Iterator[Dataplane]:
    d = Dataplane()  # netlink sockets only: nothing is read or written here
    try:
        yield d
    finally:
        d.close()


def know_everything(d: Dataplane) -> None:
    d.neighbours = dict(KNOWN)
    d.sysctls = {"/proc/sys/net/ipv4/conf/cali0123456789a/forwarding": "1"}
    d.routes.needs_resync = False
    d.sets.known = True
    for t in d.tables.values():
        t.known = True


def test_refresh_waits_for_the_next_apply(dp: Dataplane) -> None:
    know_everything(dp)
    dp.refresh(routes=True, iptables=True, ipsets=True)
    # an apply running now keeps what it saw
    assert dp.neighbours == KNOWN and dp.sysctls and not dp.routes.needs_resync
    assert dp.sets.known and all(t.known for t in dp.tables.values())
    dp._take_refresh()  # what the next apply does first
    assert dp.neighbours is None and dp.sysctls == {} and dp.routes.needs_resync
    assert not dp.sets.known and not any(t.known for t in dp.tables.values())
    know_everything(dp)
    dp._take_refresh()  # taken once: nothing more to forget
    assert dp.neighbours == KNOWN


def test_only_what_was_asked_is_forgotten(dp: Dataplane) -> None:
    know_everything(dp)
    dp.refresh(ipsets=True)
    dp._take_refresh()
    assert not dp.sets.known and dp.neighbours == KNOWN
    assert all(t.known for t in dp.tables.values())


def test_no_request_is_lost_between_threads(dp: Dataplane) -> None:
    """Requests from one thread, takes from another: every request is taken."""
    rounds = 2000
    asked, seen = threading.Event(), 0

    def ask() -> None:
        for _ in range(rounds):
            dp.refresh(routes=True)
        asked.set()

    thread = threading.Thread(target=ask)
    thread.start()
    while not asked.is_set() or dp._forget:
        dp.neighbours = dict(KNOWN)
        dp._take_refresh()
        seen += dp.neighbours is None
    thread.join(10)
    assert seen >= 1 and not dp._forget
    know_everything(dp)
    dp._take_refresh()
    assert dp.neighbours == KNOWN  # nothing left over once all were taken
