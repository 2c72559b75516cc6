"""The CNI specification (1.1.0, with 0.3.0–1.0.0 configs) as pure data handling.

Owns: reading the environment and the network config into a ``Request``,
validating both, the result and error JSON for each spec version, and the
mapping of errors to the spec's codes. Standard library only and no I/O
beyond what it is handed: the plugin's entry point imports this on every
call, so it must stay cheap.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

SUPPORTED_VERSIONS = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]
LATEST = "1.1.0"
COMMANDS = ("ADD", "DEL", "CHECK", "VERSION", "STATUS", "GC")

# Error codes of the spec (section "Error").
INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
UNKNOWN_CONTAINER = 3
INVALID_ENVIRONMENT = 4
IO_FAILURE = 5
DECODE_FAILURE = 6
INVALID_CONFIG = 7
TRY_AGAIN_LATER = 11
STATUS_CANNOT_ADD = 50
STATUS_UNAVAILABLE = 51
# pybgp's own (100+)
IPAM_FAILURE = 100
WIRING_FAILURE = 101
DATASTORE_FAILURE = 102
CHECK_MISMATCH = 103
INTERNAL = 199

_CONTAINER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


class CNIError(Exception):
    """An error the plugin reports as CNI error JSON on stdout."""

    def __init__(self, code: int, msg: str, details: str = ""):
        self.code = code
        self.msg = msg
        self.details = details
        super().__init__(msg)

    def to_json(self, version: str) -> dict[str, Any]:
        out: dict[str, Any] = {"cniVersion": version, "code": self.code, "msg": self.msg}
        if self.details:
            out["details"] = self.details
        return out


class Request:
    """One invocation: the CNI_* environment and the network config.

    A plain class, not a dataclass: importing dataclasses costs ~15 ms
    (it pulls in inspect), paid on every pod start.
    """

    FIELDS = ("command", "container_id", "netns", "ifname", "path", "args", "config", "version")

    def __init__(
        self,
        command: str,
        container_id: str = "",
        netns: str = "",
        ifname: str = "",
        path: list[str] | None = None,
        args: dict[str, str] | None = None,
        config: dict[str, Any] | None = None,
        version: str = LATEST,
    ):
        self.command = command
        self.container_id = container_id
        self.netns = netns
        self.ifname = ifname
        self.path = path or []
        self.args = args or {}  # CNI_ARGS
        self.config = config or {}  # the network config, as given
        self.version = version

    def __repr__(self) -> str:
        return f"Request({self.command} {self.container_id} {self.ifname})"

    @property
    def pod_namespace(self) -> str:
        return self.args.get("K8S_POD_NAMESPACE", "")

    @property
    def pod_name(self) -> str:
        return self.args.get("K8S_POD_NAME", "")

    def to_wire(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.FIELDS}

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Request:
        return cls(**{k: data[k] for k in cls.FIELDS if k in data})


def parse_cni_args(text: str) -> dict[str, str]:
    """``K=V;K=V`` into a dict; a malformed pair is an environment error."""
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise CNIError(INVALID_ENVIRONMENT, f"CNI_ARGS: malformed pair {part!r}")
        out[key] = value
    return out


def check_ifname(name: str) -> None:
    if not name:
        raise CNIError(INVALID_ENVIRONMENT, "CNI_IFNAME is required")
    if len(name) > 15 or name in (".", "..") or re.search(r"[/:\s]", name):
        raise CNIError(
            INVALID_ENVIRONMENT,
            f"CNI_IFNAME {name!r} is not a valid interface name "
            "(at most 15 characters, no '/', ':' or white space)",
        )


def parse_request(env: Mapping[str, str], stdin: bytes | str) -> Request:
    """Read and validate the environment and the config for one invocation."""
    command = env.get("CNI_COMMAND", "")
    if command not in COMMANDS:
        raise CNIError(
            INVALID_ENVIRONMENT,
            f"CNI_COMMAND must be one of {', '.join(COMMANDS)} (got {command!r})",
        )
    config = parse_config(stdin, required=command != "VERSION")
    version = str(config.get("cniVersion") or LATEST)
    req = Request(command=command, config=config, version=version)
    if command in ("VERSION", "STATUS", "GC"):
        req.path = _split_path(env.get("CNI_PATH", ""))
        return req
    req.container_id = env.get("CNI_CONTAINERID", "")
    if not req.container_id:
        raise CNIError(INVALID_ENVIRONMENT, "CNI_CONTAINERID is required")
    if not _CONTAINER_ID.match(req.container_id):
        raise CNIError(
            INVALID_ENVIRONMENT, f"CNI_CONTAINERID {req.container_id!r} has invalid characters"
        )
    req.ifname = env.get("CNI_IFNAME", "")
    check_ifname(req.ifname)
    req.netns = env.get("CNI_NETNS", "")
    if command in ("ADD", "CHECK") and not req.netns:
        raise CNIError(INVALID_ENVIRONMENT, "CNI_NETNS is required for " + command)
    req.args = parse_cni_args(env.get("CNI_ARGS", ""))
    req.path = _split_path(env.get("CNI_PATH", ""))
    return req


def _split_path(text: str) -> list[str]:
    return [p for p in text.split(":") if p]


def parse_config(stdin: bytes | str, *, required: bool = True) -> dict[str, Any]:
    import json

    if not stdin or not str(stdin).strip():
        if not required:
            return {}
        raise CNIError(DECODE_FAILURE, "no network configuration on stdin")
    try:
        config = json.loads(stdin)
    except ValueError as exc:
        raise CNIError(DECODE_FAILURE, f"network configuration is not valid JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise CNIError(DECODE_FAILURE, "network configuration must be a JSON object")
    if not required:
        return config
    version = config.get("cniVersion")
    if not version:
        raise CNIError(INVALID_CONFIG, "network configuration has no cniVersion")
    if version not in SUPPORTED_VERSIONS:
        raise CNIError(
            INCOMPATIBLE_VERSION,
            f"cniVersion {version} is not supported (supported: {', '.join(SUPPORTED_VERSIONS)})",
        )
    for key in ("name", "type"):
        if not isinstance(config.get(key), str) or not config.get(key):
            raise CNIError(INVALID_CONFIG, f"network configuration field {key!r} is required")
    mtu = config.get("mtu", 1500)
    if not isinstance(mtu, int) or isinstance(mtu, bool) or not 576 <= mtu <= 65535:
        raise CNIError(INVALID_CONFIG, f"field 'mtu' must be an integer 576..65535 (got {mtu!r})")
    ipam = config.get("ipam")
    if ipam is not None and (not isinstance(ipam, dict) or not ipam.get("type")):
        raise CNIError(INVALID_CONFIG, "field 'ipam' must be an object with a 'type'")
    return config


def version_reply(req: Request) -> dict[str, Any]:
    version = req.version if req.config.get("cniVersion") else LATEST
    return {"cniVersion": version, "supportedVersions": SUPPORTED_VERSIONS}


def format_result(result: Mapping[str, Any], version: str) -> dict[str, Any]:
    """Render an internal (1.1-shaped) result for the caller's spec version.

    0.3.x/0.4.0 carry ``"version": "4"|"6"`` in each ip; 1.0.0 dropped it.
    ``mtu`` in interfaces is new in 1.1.0.
    """
    out: dict[str, Any] = {"cniVersion": version}
    legacy = version.startswith("0.")
    if "interfaces" in result:
        ifaces = []
        for iface in result["interfaces"]:
            item = dict(iface)
            if version != "1.1.0":
                item.pop("mtu", None)
            ifaces.append(item)
        out["interfaces"] = ifaces
    ips = []
    for ip in result.get("ips", []):
        item = dict(ip)
        if legacy:
            item["version"] = "6" if ":" in item["address"] else "4"
        ips.append(item)
    out["ips"] = ips
    if result.get("routes"):
        out["routes"] = [dict(r) for r in result["routes"]]
    out["dns"] = dict(result.get("dns") or {})
    return out
