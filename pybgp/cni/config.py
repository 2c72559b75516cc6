"""The network config of ``pybgp-cni`` / ``pybgp-ipam`` as typed settings.

Keys read (Calico's names; everything else is passed through untouched):

- ``name`` (network name, part of IPAM handles ``<name>.<containerID>``),
  ``cniVersion``, ``mtu`` (default 1500), ``dns``;
- datastore: ``etcd_endpoints`` (comma separated), ``etcd_ca_cert_file``,
  ``etcd_cert_file``, ``etcd_key_file``, ``etcd_username``,
  ``etcd_password``; when ``etcd_endpoints`` is absent the process default is
  used (the cni-daemon's flags, else ``ETCD_*`` environment / config file);
- ``nodename`` (else env ``NODENAME``, else ``/var/lib/calico/nodename``,
  else the host name);
- ``ipam``: ``type`` (``pybgp-ipam``/``calico-ipam`` run in-process, anything
  else is executed from ``CNI_PATH``), ``ipv4_pools`` (names or CIDRs),
  ``assign_ipv4`` (must not be false: pybgp is IPv4 only for now),
  ``max_blocks_per_host`` (pybgp extension, 0 = no limit from the config);
- ``feature_control.ip_addrs_no_ipam`` (gates the ``ipAddrsNoIpam`` annotation);
- ``log_level`` (debug/info/warning/error), ``log_file_path``;
- ``daemon_socket`` (read by the entry point).

Pod annotations (no Kubernetes API here): ``args.pybgp.annotations`` is a
map of Calico annotation name to its value *as Kubernetes would store it*
(a JSON text), e.g. ``{"cni.projectcalico.org/ipAddrs": "[\\"198.19.0.5\\"]"}``.

Invariants: pure functions of the config and the environment they are given
(plus, for the node name, one file read); every problem is a ``CNIError``
with code 7 (invalid config) naming the offending key.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
from collections.abc import Mapping
from typing import Any

from pybgp.cni.spec import INVALID_CONFIG, CNIError

ANNOTATION_PREFIX = "cni.projectcalico.org/"
IP_ADDRS = ANNOTATION_PREFIX + "ipAddrs"
IP_ADDRS_NO_IPAM = ANNOTATION_PREFIX + "ipAddrsNoIpam"
IPV4_POOLS = ANNOTATION_PREFIX + "ipv4pools"
IN_PROCESS_IPAM = ("pybgp-ipam", "calico-ipam")
NODENAME_FILE = "/var/lib/calico/nodename"
_ETCD_KEYS = {
    "ca_cert_file": "etcd_ca_cert_file",
    "cert_file": "etcd_cert_file",
    "key_file": "etcd_key_file",
    "username": "etcd_username",
    "password": "etcd_password",
}


class Annotations:
    """The Calico pod annotations a request carries, parsed and feature-gated."""

    def __init__(
        self,
        ip_addrs: list[str] | None = None,
        ip_addrs_no_ipam: list[str] | None = None,
        ipv4_pools: list[str] | None = None,
    ):
        self.ip_addrs = ip_addrs or []
        self.ip_addrs_no_ipam = ip_addrs_no_ipam or []
        self.ipv4_pools = ipv4_pools or []


class Settings:
    """What the plugin needs from one network config (a plain class: cheap to import)."""

    def __init__(self, config: Mapping[str, Any], env: Mapping[str, str] | None = None):
        env = os.environ if env is None else env
        self.raw = dict(config)
        self.network = str(config.get("name") or "")
        self.version = str(config.get("cniVersion") or "1.1.0")
        self.mtu = int(config.get("mtu") or 1500)
        self.dns = _object(config, "dns")
        ipam = _object(config, "ipam")
        self.ipam_type = str(ipam.get("type") or "")
        self.ipv4_pools = _str_list(ipam.get("ipv4_pools"), "ipam.ipv4_pools")
        self.max_blocks_per_host = _int(ipam.get("max_blocks_per_host", 0),
                                        "ipam.max_blocks_per_host")
        assign4 = ipam.get("assign_ipv4", True)
        if str(assign4).lower() in ("false", "0"):
            raise CNIError(INVALID_CONFIG, "ipam.assign_ipv4 is false, but pybgp assigns "
                           "IPv4 addresses only: there would be nothing to assign")
        features = _object(config, "feature_control")
        self.ip_addrs_no_ipam_enabled = bool(features.get("ip_addrs_no_ipam", False))
        self.log_level = str(config.get("log_level") or "info").lower()
        self.log_file_path = str(config.get("log_file_path") or "")
        self.nodename = node_name(config, env)
        self.etcd = etcd_settings(config)

    @property
    def ipam_in_process(self) -> bool:
        return self.ipam_type in IN_PROCESS_IPAM

    def handle(self, container_id: str) -> str:
        """The IPAM handle of one attachment, as Calico names it."""
        return f"{self.network}.{container_id}"


def _object(config: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = config.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise CNIError(INVALID_CONFIG, f"field {key!r} must be a JSON object")
    return value


def _int(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise CNIError(INVALID_CONFIG, f"field {key!r} must be a non-negative integer")
    return value


def _str_list(value: Any, key: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise CNIError(INVALID_CONFIG, f"field {key!r} must be a list of strings")
    return list(value)


def node_name(config: Mapping[str, Any], env: Mapping[str, str],
              nodename_file: str = NODENAME_FILE) -> str:
    """Calico's order: config ``nodename``, env NODENAME, the nodename file, host name."""
    name = str(config.get("nodename") or env.get("NODENAME") or "")
    if not name:
        try:
            with open(nodename_file) as fh:
                name = fh.read().strip()
        except OSError:
            name = ""
    return name or socket.gethostname()


def etcd_settings(config: Mapping[str, Any]) -> dict[str, Any] | None:
    """The config's etcd settings (keys of ``EtcdConfig``), None if it names no endpoints."""
    endpoints = config.get("etcd_endpoints")
    if not endpoints:
        return None
    if isinstance(endpoints, str):
        endpoints = [e.strip() for e in endpoints.split(",") if e.strip()]
    elif not isinstance(endpoints, list):
        raise CNIError(INVALID_CONFIG, "field 'etcd_endpoints' must be a comma separated string")
    out: dict[str, Any] = {"endpoints": [str(e) for e in endpoints]}
    for ours, theirs in _ETCD_KEYS.items():
        if config.get(theirs):
            out[ours] = str(config[theirs])
    return out


def parse_annotations(config: Mapping[str, Any], *, no_ipam_enabled: bool) -> Annotations:
    """The Calico annotations in ``args.pybgp.annotations``, validated and feature-gated."""
    args = config.get("args") or {}
    raw = ((args.get("pybgp") or {}) if isinstance(args, dict) else {}).get("annotations") or {}
    if not isinstance(raw, dict):
        raise CNIError(INVALID_CONFIG, "args.pybgp.annotations must be a JSON object")
    out = Annotations(
        ip_addrs=_ip_list(raw, IP_ADDRS),
        ip_addrs_no_ipam=_ip_list(raw, IP_ADDRS_NO_IPAM),
        ipv4_pools=_json_list(raw, IPV4_POOLS),
    )
    if out.ip_addrs_no_ipam and not no_ipam_enabled:
        raise CNIError(INVALID_CONFIG, f"annotation {IP_ADDRS_NO_IPAM} is set but the feature is "
                       "not enabled: set feature_control.ip_addrs_no_ipam to true")
    if out.ip_addrs and out.ip_addrs_no_ipam:
        raise CNIError(INVALID_CONFIG, f"annotations {IP_ADDRS} and {IP_ADDRS_NO_IPAM} "
                       "cannot be used together")
    if (out.ip_addrs or out.ip_addrs_no_ipam) and out.ipv4_pools:
        raise CNIError(INVALID_CONFIG, f"annotation {IPV4_POOLS} cannot be used together with "
                       "a fixed address annotation")
    return out


def _json_list(raw: Mapping[str, Any], key: str) -> list[str]:
    value = raw.get(key)
    if value is None or value == "":
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise CNIError(INVALID_CONFIG, f"annotation {key} is not valid JSON "
                           f"(expected a list such as [\"...\"]): {exc}") from None
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise CNIError(INVALID_CONFIG, f"annotation {key} must be a JSON list of strings")
    return list(value)


def _ip_list(raw: Mapping[str, Any], key: str) -> list[str]:
    out = []
    for text in _json_list(raw, key):
        try:
            addr = ipaddress.ip_address(text.split("/", 1)[0])
        except ValueError:
            raise CNIError(INVALID_CONFIG, f"annotation {key}: {text!r} is not an IP address"
                           ) from None
        if addr.version != 4:
            raise CNIError(INVALID_CONFIG, f"annotation {key}: {text} is IPv6; pybgp assigns "
                           "IPv4 addresses only")
        out.append(str(addr))
    if len(out) > 1:
        raise CNIError(INVALID_CONFIG, f"annotation {key} lists {len(out)} IPv4 addresses; "
                       "a pod takes at most one")
    return out
