"""Calico v3 resources in etcd: typed CRUD with compare-and-swap.

Layout (Calico's etcdv3 mode): ``/calico/resources/v3/projectcalico.org/
<plural>/[<namespace>/]<name>``, value = the whole v3 object as JSON.
``metadata.resourceVersion`` is never stored; it is the key's mod_revision,
filled in on read and used as the CAS token on update/delete.

Invariants:
- create writes only if the key is absent; update/delete only if the key's
  mod_revision is the one the caller read (or the one given as
  resourceVersion);
- ``apply``/``delete_many`` validate everything first and then write in ONE
  etcd transaction: all documents or none.
"""

from __future__ import annotations

import builtins
import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from pybgp.datastore.kv import KV, Check, Delete, KVStore, Put
from pybgp.errors import NotFoundError, ValidationError
from pybgp.model import KindInfo, Resource, key_for, lookup_kind, parse_resource, prefix_for

# etcd's default --max-txn-ops; one more document cannot be all-or-nothing.
MAX_TXN_OPS = 128


def decode(kv: KV) -> Resource:
    """The resource stored at ``kv`` with its resourceVersion filled in."""
    try:
        doc = json.loads(kv.value)
        res = parse_resource(doc)
    except ValueError as exc:
        raise ValidationError(f"stored value is not valid JSON: {exc}", source=kv.key) from exc
    except ValidationError as exc:
        raise exc.located(kv.key) from None
    res.metadata.resource_version = str(kv.mod_revision)
    return res


def encode(res: Resource) -> bytes:
    doc = res.to_dict()
    doc.get("metadata", {}).pop("resourceVersion", None)
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def _stamp(res: Resource) -> None:
    """Fill uid and creationTimestamp on create, as the API server would."""
    if not res.metadata.uid:
        res.metadata.uid = str(uuid.uuid4())
    if not res.metadata.creation_timestamp:
        res.metadata.creation_timestamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ResourceStore:
    def __init__(self, kv: KVStore):
        self.kv = kv

    def _info(self, kind: str | KindInfo) -> KindInfo:
        return kind if isinstance(kind, KindInfo) else lookup_kind(kind)

    def get(self, kind: str | KindInfo, name: str, namespace: str | None = None) -> Resource:
        info = self._info(kind)
        key = key_for(info, name, namespace)
        kv = self.kv.get(key)
        if kv is None:
            where = f" in namespace {namespace}" if info.namespaced and namespace else ""
            raise NotFoundError(f"{info.kind} {name!r}{where} not found")
        return decode(kv)

    def list(self, kind: str | KindInfo, namespace: str | None = None) -> builtins.list[Resource]:
        info = self._info(kind)
        kvs, _ = self.kv.list(prefix_for(info, namespace if info.namespaced else None))
        return [decode(kv) for kv in kvs]

    def create(self, res: Resource) -> Resource:
        _stamp(res)
        rev = self.kv.txn([Check(res.etcd_key(), 0)], [Put(res.etcd_key(), encode(res))])
        res.metadata.resource_version = str(rev)
        return res

    def update(self, res: Resource) -> Resource:
        key = res.etcd_key()
        current = self.kv.get(key)
        if current is None:
            raise NotFoundError(f"{res.kind} {res.metadata.name!r} not found")
        expected = int(res.metadata.resource_version or current.mod_revision)
        old = decode(current)
        res.metadata.uid = res.metadata.uid or old.metadata.uid
        res.metadata.creation_timestamp = (
            res.metadata.creation_timestamp or old.metadata.creation_timestamp
        )
        rev = self.kv.txn([Check(key, expected)], [Put(key, encode(res))])
        res.metadata.resource_version = str(rev)
        return res

    def apply(
        self, resources: Sequence[Resource], *, create_only: bool = False
    ) -> builtins.list[tuple[Resource, str]]:
        """Create or replace every resource in one transaction. Returns (res, action).

        With ``create_only`` an existing resource fails the whole batch.
        """
        _check_batch(resources)
        checks, ops, results = [], [], []
        for res in resources:
            key = res.etcd_key()
            current = None if create_only else self.kv.get(key)
            if current is None:
                _stamp(res)
                action = "created"
            else:
                old = decode(current)
                res.metadata.uid = res.metadata.uid or old.metadata.uid
                res.metadata.creation_timestamp = (
                    res.metadata.creation_timestamp or old.metadata.creation_timestamp
                )
                action = "configured"
            checks.append(Check(key, current.mod_revision if current else 0))
            ops.append(Put(key, encode(res)))
            results.append((res, action))
        rev = self.kv.txn(checks, ops)
        for res, _ in results:
            res.metadata.resource_version = str(rev)
        return results

    def delete(
        self,
        kind: str | KindInfo,
        name: str,
        namespace: str | None = None,
        resource_version: str | None = None,
    ) -> Resource:
        return self.delete_many([(kind, name, namespace, resource_version)])[0]

    def delete_many(
        self, targets: Sequence[tuple[str | KindInfo, str, str | None, str | None]]
    ) -> builtins.list[Resource]:
        """Delete every (kind, name, namespace, resourceVersion) target, all or none."""
        _check_batch(targets)
        checks, ops, found = [], [], []
        for kind, name, namespace, version in targets:
            res = self.get(kind, name, namespace)
            rev = int(version or res.metadata.resource_version or 0)
            checks.append(Check(res.etcd_key(), rev))
            ops.append(Delete(res.etcd_key()))
            found.append(res)
        self.kv.txn(checks, ops)
        return found


def _check_batch(items: Sequence[object]) -> None:
    if len(items) > MAX_TXN_OPS:
        raise ValidationError(
            f"{len(items)} resources in one request; at most {MAX_TXN_OPS} can be written "
            "all-or-nothing (etcd's --max-txn-ops): split the file"
        )
