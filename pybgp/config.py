"""Where the datastore is: flags, then environment, then a config file.

The same settings calicoctl reads, with the same names:
- environment ``ETCD_ENDPOINTS`` (comma separated), ``ETCD_USERNAME``,
  ``ETCD_PASSWORD``, ``ETCD_CA_CERT_FILE``, ``ETCD_CERT_FILE``, ``ETCD_KEY_FILE``;
- a ``CalicoAPIConfig`` YAML file (``--config``, ``PYBGP_CONFIG`` or
  ``/etc/pybgp/pybgp.cfg`` when it exists) with ``spec.etcdEndpoints``,
  ``etcdUsername``, ``etcdPassword``, ``etcdCACertFile``, ``etcdCertFile``,
  ``etcdKeyFile``.
Precedence: flag > environment > file > default ``http://127.0.0.1:2379``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from pybgp.datastore.settings import EtcdConfig
from pybgp.errors import ValidationError

DEFAULT_CONFIG_FILE = "/etc/pybgp/pybgp.cfg"

_ENV = {
    "endpoints": "ETCD_ENDPOINTS",
    "username": "ETCD_USERNAME",
    "password": "ETCD_PASSWORD",
    "ca_cert_file": "ETCD_CA_CERT_FILE",
    "cert_file": "ETCD_CERT_FILE",
    "key_file": "ETCD_KEY_FILE",
}
_FILE = {
    "endpoints": "etcdEndpoints",
    "username": "etcdUsername",
    "password": "etcdPassword",
    "ca_cert_file": "etcdCACertFile",
    "cert_file": "etcdCertFile",
    "key_file": "etcdKeyFile",
}


def _read_file(path: str) -> dict[str, Any]:
    import yaml

    try:
        with open(path) as fh:
            doc = yaml.safe_load(fh) or {}
    except OSError as exc:
        raise ValidationError(f"cannot read config file: {exc.strerror}", source=path) from exc
    except yaml.YAMLError as exc:
        raise ValidationError(f"invalid YAML: {exc}", source=path) from exc
    if not isinstance(doc, dict) or doc.get("kind") != "CalicoAPIConfig":
        raise ValidationError("expected a CalicoAPIConfig document", source=path)
    spec = doc.get("spec") or {}
    dstype = spec.get("datastoreType", "etcdv3")
    if dstype != "etcdv3":
        raise ValidationError(
            f"datastoreType {dstype!r} is not supported (only etcdv3)",
            field="spec.datastoreType",
            source=path,
        )
    return {ours: spec[theirs] for ours, theirs in _FILE.items() if spec.get(theirs)}


def etcd_config(
    flags: Mapping[str, str | None] | None = None,
    env: Mapping[str, str] | None = None,
    config_file: str | None = None,
) -> EtcdConfig:
    """Resolve the datastore settings; ``flags`` uses the keys of ``_ENV``."""
    env = os.environ if env is None else env
    flags = flags or {}
    path = config_file or env.get("PYBGP_CONFIG")
    settings: dict[str, Any] = {}
    if path:
        settings.update(_read_file(path))
    elif os.path.exists(DEFAULT_CONFIG_FILE):
        settings.update(_read_file(DEFAULT_CONFIG_FILE))
    for key, var in _ENV.items():
        if env.get(var):
            settings[key] = env[var]
    for key, value in flags.items():
        if value:
            settings[key] = value
    endpoints = settings.pop("endpoints", None) or "http://127.0.0.1:2379"
    if isinstance(endpoints, str):
        endpoints = [e.strip() for e in endpoints.split(",") if e.strip()]
    return EtcdConfig(endpoints=list(endpoints), **settings)
