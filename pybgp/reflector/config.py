"""``pybgp reflector --config FILE``: the YAML file, read and checked (pure).

Owns: the file's schema (see ``configs/reflector.yaml``), its defaults
(cluster id = router id, listen on every address, port 179, hold time 90 s,
graceful restart 120 s), and turning its neighbours into what the daemon
runs: explicit addresses, CIDR ranges (passive: any address inside may
connect) and Calico Nodes chosen by a label selector (their
``spec.bgp.ipv4Address``/``ipv6Address`` become peers while they match).

Every mistake is a ``ValidationError`` naming the file and the field
(``clients[2].range``), and nothing starts with a half-read file.

Must never: read the datastore or open sockets; a ``passwordFile`` is read
by ``load`` (the file names it), not later.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from pybgp.errors import ValidationError
from pybgp.model import selector
from pybgp.reflector import wire
from pybgp.reflector.peer import PeerSpec, protocol_name
from pybgp.speaker.rr import Role

FAMILIES = {"ipv4": wire.IPV4_UNICAST, "ipv6": wire.IPV6_UNICAST}
_TOP = {"routerId", "clusterId", "asNumber", "listen", "holdTime", "connectRetry",
        "gracefulRestart", "startupHold", "families", "clients", "peers"}
_NEIGHBOR = {"address", "range", "nodeSelector", "passive", "password", "passwordFile",
             "port", "description"}


@dataclass(frozen=True)
class Neighbors:
    """One entry of ``clients`` or ``peers``: exactly one of address, range, selector."""

    role: Role
    address: str | None = None
    range: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
    node_selector: str | None = None
    passive: bool = False
    password: str | None = None
    port: int = 179
    description: str = ""

    def spec(self, address: str, *, dynamic: bool = False) -> PeerSpec:
        return PeerSpec(address=address, name=protocol_name(address, self.role),
                        role=self.role, passive=self.passive or dynamic,
                        password=self.password, port=self.port, dynamic=dynamic,
                        description=self.description)


@dataclass(frozen=True)
class ReflectorConfig:
    router_id: str
    asn: int
    cluster_id: str
    listen_address: str = "0.0.0.0"
    listen_port: int = 179
    hold_time: int = 90
    connect_retry: float = 5.0
    restart_time: int | None = 120  # our graceful-restart capability (None: off)
    stale_time: float = 360.0
    restart_limit: int | None = None
    startup_hold: float = 10.0
    families: tuple[wire.Family, ...] = (wire.IPV4_UNICAST,)
    neighbors: tuple[Neighbors, ...] = ()
    source: str = ""

    @property
    def uses_datastore(self) -> bool:
        return any(n.node_selector is not None for n in self.neighbors)

    def static_peers(self) -> dict[str, PeerSpec]:
        """The explicitly addressed neighbours, by address."""
        return {n.address: n.spec(n.address) for n in self.neighbors if n.address is not None}

    def range_for(self, address: str) -> Neighbors | None:
        """The first range that lets ``address`` connect."""
        ip = ipaddress.ip_address(address)
        for n in self.neighbors:
            if n.range is not None and ip.version == n.range.version and ip in n.range:
                return n
        return None

    def selected_peers(self, nodes: Iterable[tuple[Mapping[str, str], Iterable[str]]]
                       ) -> dict[str, PeerSpec]:
        """Peers from Nodes (labels, addresses) that a ``nodeSelector`` picks
        (an explicit address of the same peer wins)."""
        out: dict[str, PeerSpec] = {}
        static = {n.address for n in self.neighbors if n.address is not None}
        entries = [n for n in self.neighbors if n.node_selector is not None]
        for labels, addresses in nodes:
            for n in entries:
                if selector.matches(n.node_selector or "", labels):
                    for a in addresses:
                        if a not in static and a not in out and a != self.router_id:
                            out[a] = n.spec(a)
                    break
        return out


def _err(message: str, fld: str, source: str) -> ValidationError:
    return ValidationError(message, field=fld, source=source or None)


def _ipv4(value: Any, fld: str, source: str) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 0xFFFFFFFF:
        return str(ipaddress.IPv4Address(value))
    try:
        return str(ipaddress.IPv4Address(str(value)))
    except ValueError:
        raise _err(f"{value!r} is not an IPv4 address (a BGP identifier)", fld, source) \
            from None


def _int(value: Any, fld: str, source: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise _err(f"{value!r} is not an integer from {lo} to {hi}", fld, source)
    return value


def _seconds(value: Any, fld: str, source: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise _err(f"{value!r} is not a number of seconds", fld, source)
    return float(value)


def _bool(value: Any, fld: str, source: str) -> bool:
    if not isinstance(value, bool):
        raise _err(f"{value!r} is not true or false", fld, source)
    return value


def _mapping(value: Any, fld: str, source: str, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _err("must be a mapping", fld, source)
    unknown = sorted(set(value) - allowed)
    if unknown:
        where = f"{fld}.{unknown[0]}" if fld else str(unknown[0])
        raise _err(f"unknown field (expected one of: {', '.join(sorted(allowed))})",
                   where, source)
    return value


def _neighbor(raw: Any, fld: str, role: Role, source: str, base: str) -> Neighbors:
    d = _mapping(raw, fld, source, _NEIGHBOR)
    which = [k for k in ("address", "range", "nodeSelector") if k in d]
    if len(which) != 1:
        raise _err("give exactly one of address, range or nodeSelector", fld, source)
    kw: dict[str, Any] = {"role": role}
    if "address" in d:
        try:
            kw["address"] = str(ipaddress.ip_address(str(d["address"])))
        except ValueError:
            raise _err(f"{d['address']!r} is not an IP address", f"{fld}.address",
                       source) from None
    if "range" in d:
        try:
            kw["range"] = ipaddress.ip_network(str(d["range"]), strict=False)
        except ValueError:
            raise _err(f"{d['range']!r} is not a CIDR range", f"{fld}.range", source) \
                from None
        if d.get("passive") is False:
            raise _err("a range is always passive: its peers connect to us",
                       f"{fld}.passive", source)
        kw["passive"] = True
    if "nodeSelector" in d:
        text = d["nodeSelector"]
        if not isinstance(text, str):
            raise _err("must be a selector string", f"{fld}.nodeSelector", source)
        try:
            selector.parse(text)
        except ValidationError as exc:
            raise _err(exc.message, f"{fld}.nodeSelector", source) from None
        kw["node_selector"] = text
    if "passive" in d and "range" not in d:
        kw["passive"] = _bool(d["passive"], f"{fld}.passive", source)
    if "port" in d:
        kw["port"] = _int(d["port"], f"{fld}.port", source, 1, 65535)
    if "password" in d and "passwordFile" in d:
        raise _err("give password or passwordFile, not both", fld, source)
    if "password" in d:
        kw["password"] = _password(d["password"], f"{fld}.password", source)
    if "passwordFile" in d:
        path = os.path.join(base, str(d["passwordFile"]))
        try:
            with open(path) as fh:
                kw["password"] = _password(fh.read().strip(), f"{fld}.passwordFile", source)
        except OSError as exc:
            raise _err(f"cannot read {path}: {exc.strerror}", f"{fld}.passwordFile",
                       source) from None
    if "description" in d:
        kw["description"] = str(d["description"])
    return Neighbors(**kw)


def _password(value: Any, fld: str, source: str) -> str:
    # Linux TCP_MD5SIG_MAXKEYLEN is 80 bytes.
    if not isinstance(value, str) or not value or len(value.encode()) > 80:
        raise _err("must be a non-empty string of at most 80 bytes", fld, source)
    return value


def parse(doc: Any, source: str = "", base: str = ".") -> ReflectorConfig:
    """A parsed YAML document → ``ReflectorConfig`` (``base``: where relative
    ``passwordFile`` paths start)."""
    d = _mapping(doc, "", source, _TOP)
    for required in ("routerId", "asNumber"):
        if required not in d:
            raise _err("is required", required, source)
    kw: dict[str, Any] = {"source": source}
    kw["router_id"] = _ipv4(d["routerId"], "routerId", source)
    kw["asn"] = _int(d["asNumber"], "asNumber", source, 1, 0xFFFFFFFF)
    kw["cluster_id"] = _ipv4(d.get("clusterId", kw["router_id"]), "clusterId", source)
    if "listen" in d:
        lst = _mapping(d["listen"], "listen", source, {"address", "port"})
        if "address" in lst:
            try:
                kw["listen_address"] = str(ipaddress.ip_address(str(lst["address"])))
            except ValueError:
                raise _err(f"{lst['address']!r} is not an IP address", "listen.address",
                           source) from None
        if "port" in lst:
            kw["listen_port"] = _int(lst["port"], "listen.port", source, 1, 65535)
    if "holdTime" in d:
        hold = _int(d["holdTime"], "holdTime", source, 0, 65535)
        if hold in (1, 2):
            raise _err("must be 0 or at least 3 (RFC 4271)", "holdTime", source)
        kw["hold_time"] = hold
    if "connectRetry" in d:
        kw["connect_retry"] = _seconds(d["connectRetry"], "connectRetry", source) or 1.0
    if "startupHold" in d:
        kw["startup_hold"] = _seconds(d["startupHold"], "startupHold", source)
    if "gracefulRestart" in d:
        gr = d["gracefulRestart"]
        if gr is False:
            kw["restart_time"] = None
        else:
            g = _mapping(gr, "gracefulRestart", source,
                         {"restartTime", "staleTime", "maxRestartTime"})
            if "restartTime" in g:
                kw["restart_time"] = _int(g["restartTime"], "gracefulRestart.restartTime",
                                          source, 0, 4095) or None
            if "staleTime" in g:
                kw["stale_time"] = _seconds(g["staleTime"], "gracefulRestart.staleTime",
                                            source)
            if "maxRestartTime" in g:
                kw["restart_limit"] = _int(g["maxRestartTime"],
                                           "gracefulRestart.maxRestartTime", source, 0, 4095)
    if "families" in d:
        fams = d["families"]
        if not isinstance(fams, list) or not fams:
            raise _err("must be a non-empty list of ipv4, ipv6", "families", source)
        out = []
        for i, f in enumerate(fams):
            if f not in FAMILIES:
                raise _err(f"{f!r} is not ipv4 or ipv6", f"families[{i}]", source)
            out.append(FAMILIES[f])
        kw["families"] = tuple(dict.fromkeys(out))
    neighbors: list[Neighbors] = []
    seen: dict[str, str] = {}
    for key, role in (("clients", Role.CLIENT), ("peers", Role.NON_CLIENT)):
        entries = d.get(key) or []
        if not isinstance(entries, list):
            raise _err("must be a list", key, source)
        for i, raw in enumerate(entries):
            fld = f"{key}[{i}]"
            n = _neighbor(raw, fld, role, source, base)
            if n.address is not None:
                if n.address in (kw["router_id"], kw.get("listen_address")):
                    raise _err(f"{n.address} is this reflector's own address",
                               f"{fld}.address", source)
                if n.address in seen:
                    raise _err(f"{n.address} is already listed as {seen[n.address]}",
                               f"{fld}.address", source)
                seen[n.address] = fld
            neighbors.append(n)
    if not neighbors:
        raise _err("at least one client or peer is needed", "clients", source)
    kw["neighbors"] = tuple(neighbors)
    return ReflectorConfig(**kw)


def load(path: str) -> ReflectorConfig:
    try:
        with open(path) as fh:
            text = fh.read()
    except OSError as exc:
        raise ValidationError(f"cannot read it: {exc.strerror}", source=path) from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValidationError(f"not valid YAML: {exc}", source=path) from None
    return parse(doc, path, os.path.dirname(os.path.abspath(path)))
