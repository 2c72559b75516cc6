"""A datastore syncer: a consistent snapshot, an in-sync marker, then ordered updates.

This is what every daemon builds its view of etcd from (Felix's "syncer").
Over one key prefix it delivers:

1. ``Update`` for every key present at one revision (the snapshot),
2. an ``InSync`` marker (again after every re-list, once it is complete),
3. ``Update`` events in revision order as etcd changes (``value is None``
   for a delete).

When the watch breaks — etcd restarted, the connection dropped, or the
revision was compacted (Calico #4109 was an endless re-watch loop here) — it
re-lists and emits only the *differences* from what it already delivered,
then carries on watching from the re-list revision. Consumers therefore never
see a key twice with the same value, nor miss a delete.

It never writes to etcd. It retries on a throttle (bounded back-off) and
reports its state with ``Status`` events so a daemon can show readiness.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from pybgp.datastore.kv import KVStore, WatchEvent
from pybgp.errors import CompactedError, DatastoreError


@dataclass(frozen=True)
class Update:
    key: str
    value: bytes | None  # None = deleted
    revision: int


@dataclass(frozen=True)
class InSync:
    revision: int


@dataclass(frozen=True)
class Status:
    """``state`` is "connected", "resyncing" or "down"; ``reason`` is human text."""

    state: str
    reason: str = ""


SyncEvent = Update | InSync | Status


class Syncer:
    """Follows ``prefix`` of ``store``; iterate ``events()`` in one thread, ``stop()`` from any."""

    def __init__(
        self,
        store_factory: Callable[[], KVStore],
        prefix: str,
        *,
        min_backoff: float = 0.1,
        max_backoff: float = 2.0,
    ):
        self._factory = store_factory
        self._prefix = prefix
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self._stop = threading.Event()
        self._watch: object | None = None
        self.cache: dict[str, tuple[bytes, int]] = {}
        self.revision = 0
        self.in_sync = False
        self.resyncs = 0

    def stop(self) -> None:
        self._stop.set()
        close = getattr(self._watch, "close", None)
        if close is not None:
            close()

    def events(self) -> Iterator[SyncEvent]:
        backoff = self.min_backoff
        store: KVStore | None = None
        while not self._stop.is_set():
            try:
                if store is None:
                    store = self._factory()
                yield from self.relist(store)
                backoff = self.min_backoff
                yield from self._follow(store)
            except CompactedError as exc:
                self.resyncs += 1
                yield Status("resyncing", str(exc))
                continue  # re-list at once: the data is there, only history is gone
            except DatastoreError as exc:
                if self._stop.is_set():
                    break
                self.resyncs += 1
                yield Status("down", str(exc))
                if store is not None:
                    store.close()
                    store = None
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff)
        if store is not None:
            store.close()

    def relist(self, store: KVStore) -> list[SyncEvent]:
        """Read the prefix whole: the differences from what was delivered
        (all of it, the first time), then ``InSync``."""
        kvs, revision = store.list(self._prefix)
        out: list[SyncEvent] = [Status("connected")]
        seen = set()
        for kv in kvs:
            seen.add(kv.key)
            old = self.cache.get(kv.key)
            if old is None or old[0] != kv.value:
                self.cache[kv.key] = (kv.value, kv.mod_revision)
                out.append(Update(kv.key, kv.value, kv.mod_revision))
        for key in sorted(set(self.cache) - seen):
            del self.cache[key]
            out.append(Update(key, None, revision))
        self.revision = revision
        self.in_sync = True
        out.append(InSync(revision))
        return out

    def apply(self, batch: list[WatchEvent]) -> list[SyncEvent]:
        """The updates one batch of watch events makes (cache and revision kept)."""
        out: list[SyncEvent] = []
        for ev in batch:
            rev = ev.kv.mod_revision
            if ev.type == "delete":
                if self.cache.pop(ev.kv.key, None) is not None:
                    out.append(Update(ev.kv.key, None, rev))
            else:
                self.cache[ev.kv.key] = (ev.kv.value, rev)
                out.append(Update(ev.kv.key, ev.kv.value, rev))
            self.revision = max(self.revision, rev)
        return out

    def _follow(self, store: KVStore) -> Iterator[SyncEvent]:
        watch = store.watch(self._prefix, self.revision + 1)
        self._watch = watch
        if self._stop.is_set():  # stop() ran before there was a watch to close
            return
        try:
            for batch in watch:
                yield from self.apply(batch)
                if self._stop.is_set():
                    return
        finally:
            self._watch = None
        if not self._stop.is_set():
            raise DatastoreError("watch ended")
