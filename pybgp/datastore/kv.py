"""The key-value contract every datastore backend fulfils.

The whole of pybgp talks to etcd through this small, synchronous interface:
plain keys (str), values (bytes), revisions (int), and one transaction call
that makes every compare-and-swap explicit. Two backends implement it:
``etcdv3.EtcdClient`` (real etcd through its v3 JSON gateway) and
``memory.MemoryKV`` (in-process, for unit tests of pure cores).

Invariants:
- ``txn`` is all-or-nothing: either every check holds and every op is applied
  at one new revision, or nothing is written and ``ConflictError`` names the
  first key whose check failed.
- ``Check(key, 0)`` means "key is absent"; ``Check(key, rev)`` means "key's
  mod_revision is exactly rev".
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class KV:
    key: str
    value: bytes
    mod_revision: int
    create_revision: int = 0
    version: int = 1


@dataclass(frozen=True)
class Check:
    """Compare: the key's mod_revision equals ``mod_revision`` (0 = absent)."""

    key: str
    mod_revision: int


@dataclass(frozen=True)
class Put:
    key: str
    value: bytes


@dataclass(frozen=True)
class Delete:
    key: str


Op = Put | Delete


@dataclass(frozen=True)
class WatchEvent:
    """One change seen by a watch. ``kv.value`` is b"" for a delete."""

    type: str  # "put" | "delete"
    kv: KV
    prev: KV | None = None


class KVStore(Protocol):
    def get(self, key: str) -> KV | None: ...

    def list(self, prefix: str) -> tuple[builtins.list[KV], int]:
        """All keys under ``prefix`` (sorted) and the store revision they were read at."""
        ...

    def txn(self, checks: Sequence[Check], ops: Sequence[Op]) -> int:
        """Apply ``ops`` iff every check holds; returns the new revision."""
        ...

    def watch(self, prefix: str, start_revision: int) -> Iterable[builtins.list[WatchEvent]]:
        """Batches of events under ``prefix`` from ``start_revision`` on.

        Raises ``CompactedError`` when ``start_revision`` was compacted and
        ``DatastoreUnavailable`` when the connection is lost.
        """
        ...

    def close(self) -> None: ...


def create(store: KVStore, key: str, value: bytes) -> int:
    """Create ``key``; AlreadyExistsError if present."""
    return store.txn([Check(key, 0)], [Put(key, value)])


def update(store: KVStore, key: str, value: bytes, mod_revision: int) -> int:
    """Replace ``key`` iff unchanged since ``mod_revision``."""
    return store.txn([Check(key, mod_revision)], [Put(key, value)])


def delete(store: KVStore, key: str, mod_revision: int) -> int:
    """Delete ``key`` iff unchanged since ``mod_revision``."""
    return store.txn([Check(key, mod_revision)], [Delete(key)])


class Prefetched:
    """A ``KVStore`` view that answers the first reads of some keys and prefixes
    from one snapshot, fetched in a single round trip when the backend can
    (``read_many``), and everything else from the backend.

    Safe for compare-and-swap users: the snapshot is dropped at the first
    ``txn`` (whether it succeeds or conflicts), so a retry reads fresh data;
    a write based on a stale snapshot fails its checks instead of clobbering.
    """

    def __init__(self, store: KVStore, keys: Sequence[str] = (), prefixes: Sequence[str] = ()):
        self.store = store
        read_many = getattr(store, "read_many", None)
        self._revision = 0
        if read_many is not None:
            self._keys, self._lists, self._revision = read_many(list(keys), list(prefixes))
        else:
            self._keys = {k: store.get(k) for k in keys}
            self._lists = {}
            for p in prefixes:
                self._lists[p], self._revision = store.list(p)

    def get(self, key: str) -> KV | None:
        if key in self._keys:
            return self._keys.pop(key)
        return self.store.get(key)

    def peek_list(self, prefix: str) -> builtins.list[KV]:
        """The snapshot's listing of ``prefix`` without consuming it (empty if none)."""
        return builtins.list(self._lists.get(prefix, ()))

    def list(self, prefix: str) -> tuple[builtins.list[KV], int]:
        if prefix in self._lists:
            return self._lists.pop(prefix), self._revision
        return self.store.list(prefix)

    def txn(self, checks: Sequence[Check], ops: Sequence[Op]) -> int:
        self._keys.clear()
        self._lists.clear()
        return self.store.txn(checks, ops)

    def watch(self, prefix: str, start_revision: int) -> Iterable[builtins.list[WatchEvent]]:
        return self.store.watch(prefix, start_revision)

    def close(self) -> None:
        pass  # the backend belongs to whoever lent it
