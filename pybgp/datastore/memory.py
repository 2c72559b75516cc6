"""In-memory ``KVStore`` with etcd's revision semantics, for unit tests.

Thread-safe (a lock around every call) so concurrency tests of pure cores,
such as IPAM's compare-and-swap retries, can run threads against it.
"""

from __future__ import annotations

import builtins
import threading
from collections.abc import Iterable, Sequence

from pybgp.datastore.kv import KV, Check, Delete, Op, Put, WatchEvent
from pybgp.errors import AlreadyExistsError, ConflictError


def check_failure(check: Check, current: KV | None) -> ConflictError | None:
    """The error for a failed ``check`` against ``current``, or None if it holds."""
    actual = current.mod_revision if current else 0
    if actual == check.mod_revision:
        return None
    if check.mod_revision == 0:
        return AlreadyExistsError(f"{check.key} already exists", key=check.key)
    if current is None:
        return ConflictError(f"{check.key} was deleted by someone else", key=check.key)
    return ConflictError(f"{check.key} was changed by someone else", key=check.key)


class MemoryKV:
    def __init__(self) -> None:
        self._data: dict[str, KV] = {}
        self._revision = 1
        self._lock = threading.Lock()
        self.txn_count = 0

    @property
    def revision(self) -> int:
        return self._revision

    def get(self, key: str) -> KV | None:
        with self._lock:
            return self._data.get(key)

    def list(self, prefix: str) -> tuple[builtins.list[KV], int]:
        with self._lock:
            kvs = [kv for k, kv in sorted(self._data.items()) if k.startswith(prefix)]
            return kvs, self._revision

    def txn(self, checks: Sequence[Check], ops: Sequence[Op]) -> int:
        with self._lock:
            self.txn_count += 1
            for check in checks:
                err = check_failure(check, self._data.get(check.key))
                if err:
                    raise err
            if not ops:
                return self._revision
            self._revision += 1
            rev = self._revision
            for op in ops:
                if isinstance(op, Put):
                    old = self._data.get(op.key)
                    self._data[op.key] = KV(
                        op.key,
                        op.value,
                        rev,
                        old.create_revision if old else rev,
                        old.version + 1 if old else 1,
                    )
                elif isinstance(op, Delete):
                    self._data.pop(op.key, None)
            return rev

    def watch(self, prefix: str, start_revision: int) -> Iterable[builtins.list[WatchEvent]]:
        raise NotImplementedError("MemoryKV has no watch; use real etcd for watch tests")

    def close(self) -> None:
        pass
