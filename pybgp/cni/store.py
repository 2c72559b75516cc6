"""The datastore connection of a CNI request, and the mapping of errors to CNI codes.

Which etcd: the request's config (``etcd_*`` keys) when it names endpoints,
else the process default (``set_default``: the cni-daemon's own flags), else
``pybgp.config.etcd_config()`` (``ETCD_*`` environment, config file).

Clients are pooled per etcd config so a long-running daemon reuses warm
connections; an ``EtcdClient`` is not thread-safe, so each is lent to one
request at a time and returned afterwards.

``cni_errors()`` turns pybgp's exceptions into ``CNIError`` with the spec's
codes: etcd unreachable → 11 (try again later), IPAM exhaustion/refusal →
100, wiring → 101, other datastore failures → 102, malformed input → 7.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator
from typing import Any

from pybgp.cni import spec
from pybgp.cni.config import Settings
from pybgp.datastore.etcdv3 import EtcdClient, EtcdConfig
from pybgp.errors import (
    ConflictError,
    DatastoreError,
    DatastoreUnavailable,
    IPAMError,
    KernelError,
    ValidationError,
)

_default: EtcdConfig | None = None
_pool: dict[tuple[Any, ...], list[EtcdClient]] = {}
_lock = threading.Lock()
MAX_IDLE = 16  # idle clients kept per etcd config


def set_default(cfg: EtcdConfig | None) -> None:
    """The etcd used by requests whose config names none (the daemon's own settings)."""
    global _default
    _default = cfg


def etcd_config_for(settings: Settings) -> EtcdConfig:
    if settings.etcd:
        return EtcdConfig(**settings.etcd)
    if _default is not None:
        return _default
    from pybgp.config import etcd_config

    return etcd_config()


def _key(cfg: EtcdConfig) -> tuple[Any, ...]:
    return (tuple(cfg.endpoints), cfg.ca_cert_file, cfg.cert_file, cfg.key_file,
            cfg.username, cfg.password, cfg.timeout)


@contextlib.contextmanager
def connected(settings: Settings) -> Iterator[EtcdClient]:
    """Lend an etcd client for one request."""
    cfg = etcd_config_for(settings)
    key = _key(cfg)
    with _lock:
        idle = _pool.get(key)
        client = idle.pop() if idle else None
    if client is None:
        client = EtcdClient(cfg)
    try:
        yield client
    except BaseException:
        client.close()  # unknown connection state: never lend it again
        raise
    with _lock:
        idle = _pool.setdefault(key, [])
        if len(idle) < MAX_IDLE:
            idle.append(client)
            return
    client.close()


def unavailable_message(exc: BaseException) -> str:
    return f"cannot reach the datastore (etcd): {exc}; try again later"


@contextlib.contextmanager
def cni_errors(what: str) -> Iterator[None]:
    """Re-raise pybgp errors from ``what`` as CNIError with the matching code."""
    try:
        yield
    except spec.CNIError:
        raise
    except DatastoreUnavailable as exc:
        raise spec.CNIError(spec.TRY_AGAIN_LATER, f"{what}: {unavailable_message(exc)}") from exc
    except ConflictError as exc:
        raise spec.CNIError(spec.TRY_AGAIN_LATER,
                            f"{what}: lost a datastore race ({exc}); try again") from exc
    except IPAMError as exc:
        raise spec.CNIError(spec.IPAM_FAILURE, f"{what}: IPAM: {exc}") from exc
    except ValidationError as exc:
        raise spec.CNIError(spec.INVALID_CONFIG, f"{what}: {exc}") from exc
    except DatastoreError as exc:
        raise spec.CNIError(spec.DATASTORE_FAILURE, f"{what}: datastore: {exc}") from exc
    except KernelError as exc:
        raise spec.CNIError(spec.WIRING_FAILURE, f"{what}: {exc}") from exc
    except Exception as exc:
        if _is_wiring_error(exc):
            raise spec.CNIError(spec.WIRING_FAILURE, f"{what}: {exc}") from exc
        raise


def _is_wiring_error(exc: Exception) -> bool:
    """Wiring's and netlink's errors, without importing pyroute2 where it is not loaded."""
    wiring = sys.modules.get("pybgp.cni.wiring")
    if wiring is not None and isinstance(exc, wiring.WiringError):
        return True
    netlink = sys.modules.get("pyroute2.netlink.exceptions")
    return netlink is not None and isinstance(exc, netlink.NetlinkError)
