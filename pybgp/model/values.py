"""Scalar value types and converters shared by every Calico v3 resource model.

A *converter* takes a raw JSON/YAML value and the dotted field path it came
from, and returns the typed value or raises ``ValidationError`` naming that
path and the bad value.  A *dumper* turns the typed value back into what
Calico writes in JSON.  This module knows nothing about resource kinds.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pybgp.errors import ValidationError
from pybgp.model.selector import parse as parse_selector

Conv = Callable[[Any, str], Any]
Dump = Callable[[Any], Any]

# DNS-1123 label / subdomain, as Calico's validator spells them.
NAME_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
NAME_SUBDOMAIN = NAME_LABEL + r"(\." + NAME_LABEL + r")*"
_NAME_RE = re.compile("^" + NAME_SUBDOMAIN + "$")
_IFACE_RE = re.compile(r"^[a-zA-Z0-9_.-]{1,15}$")
_CONTAINER_ID_RE = re.compile(r"^[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?$")
_MAC_RE = re.compile(r"^[0-9a-fA-F]{2}([:-][0-9a-fA-F]{2}){5}$")
_LABEL_NAME_RE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_PORT_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def fail(path: str, message: str) -> ValidationError:
    """The error for ``path``; callers ``raise fail(...)``."""
    return ValidationError(message, field=path or None)


def _type_name(value: Any) -> str:
    return {bool: "boolean", int: "integer", float: "number", str: "string",
            list: "list", dict: "object"}.get(type(value), type(value).__name__)


def expect(value: Any, kind: type | tuple[type, ...], path: str, what: str) -> Any:
    """``value`` if it is an instance of ``kind`` (bools are never numbers)."""
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise fail(path, f"expected {what}, got boolean {value!r}")
    if not isinstance(value, kind):
        raise fail(path, f"expected {what}, got {_type_name(value)} {value!r}")
    return value


# --- plain scalars -----------------------------------------------------------

def string(value: Any, path: str) -> str:
    return str(expect(value, str, path, "a string"))


def boolean(value: Any, path: str) -> bool:
    return bool(expect(value, bool, path, "true or false"))


def integer(lo: int, hi: int) -> Conv:
    def conv(value: Any, path: str) -> int:
        v = expect(value, int, path, "an integer")
        if not lo <= v <= hi:
            raise fail(path, f"value {v} out of range {lo}..{hi}")
        return int(v)
    return conv


def number(value: Any, path: str) -> float:
    return float(expect(value, (int, float), path, "a number"))


def dump_number(value: float) -> float | int:
    """Go marshals float64 100 as ``100``; keep that."""
    return int(value) if float(value).is_integer() else value


def enum(*choices: str, fold: bool = False) -> Conv:
    """One of ``choices``; with ``fold`` matched case-insensitively and kept as given."""
    def conv(value: Any, path: str) -> str:
        v = string(value, path)
        ok = v.lower() in {c.lower() for c in choices} if fold else v in choices
        if not ok:
            raise fail(path, f"invalid value '{v}' (expected one of {', '.join(choices)})")
        return v
    return conv


def pattern(regex: re.Pattern[str], what: str) -> Conv:
    def conv(value: Any, path: str) -> str:
        v = string(value, path)
        if not regex.match(v):
            raise fail(path, f"invalid {what} '{v}'")
        return v
    return conv


name = pattern(_NAME_RE, "name (lower case alphanumerics, '-' and '.')")
interface_name = pattern(_IFACE_RE, "interface name")
container_id = pattern(_CONTAINER_ID_RE, "container ID")
mac = pattern(_MAC_RE, "MAC address")


def valid_interface(value: str) -> bool:
    return bool(_IFACE_RE.match(value))


def valid_name(value: str) -> bool:
    return bool(_NAME_RE.match(value)) and len(value) <= 253


# --- collections -------------------------------------------------------------

def list_of(item: Conv) -> Conv:
    def conv(value: Any, path: str) -> list[Any]:
        items = expect(value, list, path, "a list")
        return [item(v, f"{path}[{i}]") for i, v in enumerate(items)]
    return conv


def dump_list(item: Dump) -> Dump:
    return lambda values: [item(v) for v in values]


def str_map(value: Any, path: str) -> dict[str, str]:
    mapping = expect(value, dict, path, "a map of strings")
    out: dict[str, str] = {}
    for k, v in mapping.items():
        key = string(k, path)
        out[key] = string(v, f"{path}.{key}")
    return out


def label_map(value: Any, path: str) -> dict[str, str]:
    """Kubernetes label rules: ``[prefix/]name`` keys, values ≤ 63 chars."""
    labels = str_map(value, path)
    for key, val in labels.items():
        prefix, _, lname = key.rpartition("/")
        if (prefix and not valid_name(prefix)) or len(lname) > 63 \
                or not _LABEL_NAME_RE.match(lname):
            raise fail(path, f"invalid label key '{key}'")
        if val and (len(val) > 63 or not _LABEL_NAME_RE.match(val)):
            raise fail(f"{path}.{key}", f"invalid label value '{val}'")
    return labels


# --- addresses ---------------------------------------------------------------

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def ip(version: int | None = None) -> Conv:
    """An IP address string, kept as given."""
    def conv(value: Any, path: str) -> str:
        v = string(value, path)
        try:
            addr = ipaddress.ip_address(v)
        except ValueError:
            raise fail(path, f"invalid IP address '{v}'") from None
        if version and addr.version != version:
            raise fail(path, f"invalid IPv{version} address '{v}'")
        return v
    return conv


def parse_net(text: str, path: str, *, strict: bool = False) -> IPNetwork:
    """``a.b.c.d/len`` (or a bare address = host route) as a network."""
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise fail(path, f"invalid CIDR '{text}'") from None
    if strict and str(net.network_address) != str(ipaddress.ip_interface(text).ip):
        raise fail(path, f"CIDR '{text}' is not strictly masked (expected '{net}')")
    return net


def net(value: Any, path: str) -> str:
    """A network (``nets``, ``ipNetworks``...): validated, kept as written."""
    v = string(value, path)
    parse_net(v, path)
    return v


def canonical_cidr(value: Any, path: str) -> str:
    """An IPPool CIDR: host bits must be zero; stored in canonical text form."""
    v = string(value, path)
    if "/" not in v:
        raise fail(path, f"invalid CIDR '{v}'")
    return str(parse_net(v, path, strict=True))


def interface_cidr(version: int) -> Conv:
    """A Node address in CIDR form ``198.18.0.11/24`` (host bits allowed)."""
    def conv(value: Any, path: str) -> str:
        v = string(value, path)
        try:
            iface = ipaddress.ip_interface(v)
        except ValueError:
            raise fail(path, f"invalid IPv{version} CIDR '{v}'") from None
        if iface.version != version:
            raise fail(path, f"invalid IPv{version} CIDR '{v}'")
        return v
    return conv


def ip_port(value: Any, path: str) -> str:
    """``IP``, ``IPv4:port`` or ``[IPv6]:port`` (BGPPeer ``peerIP``)."""
    v = string(value, path)
    if split_ip_port(v) is None:
        raise fail(path, f"invalid IP or IP:port '{v}'")
    return v


def split_ip_port(text: str) -> tuple[str, int | None] | None:
    """``(ip, port or None)`` for a peerIP value, or None when malformed."""
    host, port = text, None
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]:")
        if not sep or not rest.isdigit():
            return None
        port = int(rest)
    elif text.count(":") == 1:
        host, _, rest = text.partition(":")
        if not rest.isdigit():
            return None
        port = int(rest)
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return None
    if port is not None and not 1 <= port <= 65535:
        return None
    if text.startswith("[") and addr.version != 6:
        return None
    return host, port


# --- AS numbers, durations, ports, protocols ---------------------------------

def as_number(value: Any, path: str) -> int:
    """An AS number: int, numeric string or asdot ``1.10``; stored as an int."""
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            value = int(text)
        elif re.fullmatch(r"\d+\.\d+", text):
            hi, lo = (int(p) for p in text.split("."))
            if hi > 0xFFFF or lo > 0xFFFF:
                raise fail(path, f"invalid AS number '{value}'")
            value = (hi << 16) | lo
        else:
            raise fail(path, f"invalid AS number '{value}'")
    v = expect(value, int, path, "an AS number")
    if not 0 <= v <= 0xFFFFFFFF:
        raise fail(path, f"invalid AS number '{v}'")
    return int(v)


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True, order=True)
class Duration:
    """A Go ``time.Duration`` (``metav1.Duration``), e.g. ``120s``, ``2m``, ``1h30m``."""

    seconds: float

    @classmethod
    def parse(cls, text: str) -> Duration:
        body = text.strip()
        sign = -1.0 if body.startswith("-") else 1.0
        body = body.lstrip("+-")
        if body == "0":
            return cls(0.0)
        pos, total = 0, 0.0
        for m in _DURATION_PART.finditer(body):
            if m.start() != pos:
                break
            total += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
            pos = m.end()
        if not body or pos != len(body):
            raise ValueError(f"invalid duration '{text}'")
        return cls(sign * total)

    def __str__(self) -> str:
        """Go's ``Duration.String()``: ``2m0s``, ``1h0m0s``, ``500ms``, ``0s``."""
        ns = round(self.seconds * 1e9)
        if ns == 0:
            return "0s"
        sign, ns = ("-" if ns < 0 else ""), abs(ns)
        if ns < 1_000_000_000:
            for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
                if ns >= size:
                    return sign + _trim(ns / size) + unit
        hours, rest = divmod(ns, 3_600_000_000_000)
        minutes, rest = divmod(rest, 60_000_000_000)
        secs = _trim(rest / 1e9) + "s"
        if hours:
            return f"{sign}{hours}h{minutes}m{secs}"
        if minutes:
            return f"{sign}{minutes}m{secs}"
        return sign + secs


def _trim(x: float) -> str:
    return f"{x:.9f}".rstrip("0").rstrip(".")


def duration(value: Any, path: str) -> Duration:
    v = string(value, path)
    try:
        return Duration.parse(v)
    except ValueError:
        raise fail(path, f"invalid duration '{v}' (expected e.g. 120s, 2m, 1h30m)") from None


@dataclass(frozen=True)
class Port:
    """A policy port: a single port, a ``min:max`` range or a named port."""

    min: int = 0
    max: int = 0
    name: str = ""

    def dump(self) -> int | str:
        if self.name:
            return self.name
        return self.min if self.min == self.max else f"{self.min}:{self.max}"

    def __str__(self) -> str:
        return str(self.dump())


def port(value: Any, path: str) -> Port:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    v = string(value, path)
    if v.isdigit():
        lo = hi = int(v)
    elif re.fullmatch(r"\d+:\d+", v):
        lo, hi = (int(p) for p in v.split(":"))
    else:
        if len(v) > 15 or not _PORT_NAME_RE.match(v) or not re.search("[a-z]", v):
            raise fail(path, f"invalid port '{v}'")
        return Port(name=v)
    if not (1 <= lo <= 65535 and 1 <= hi <= 65535) or lo > hi:
        raise fail(path, f"invalid port '{v}' (ports are 1..65535, ranges min:max)")
    return Port(lo, hi)


PROTOCOL_NAMES = ("TCP", "UDP", "ICMP", "ICMPv6", "SCTP", "UDPLite")
_PROTOCOL_NUMBERS = {"TCP": 6, "UDP": 17, "ICMP": 1, "ICMPv6": 58, "SCTP": 132, "UDPLite": 136}


def protocol(value: Any, path: str) -> int | str:
    """A protocol number 1..255 or a name (case-insensitive, stored canonical)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return integer(1, 255)(value, path)
    v = string(value, path)
    if v.isdigit():
        return integer(1, 255)(int(v), path)
    for canonical in PROTOCOL_NAMES:
        if v.lower() == canonical.lower():
            return canonical
    raise fail(path, f"invalid protocol '{v}' (expected one of {', '.join(PROTOCOL_NAMES)})")


def protocol_number(proto: int | str) -> int:
    """IANA number of a protocol value as returned by :func:`protocol`."""
    return proto if isinstance(proto, int) else _PROTOCOL_NUMBERS[proto]


def protocol_has_ports(proto: int | str | None) -> bool:
    """TCP, UDP and SCTP carry ports (Calico: UDPLite does not)."""
    return proto is not None and protocol_number(proto) in (6, 17, 132)


def selector(value: Any, path: str) -> str:
    """A selector expression: must parse; kept as written."""
    v = string(value, path)
    try:
        parse_selector(v)
    except ValidationError as exc:
        raise fail(path, exc.message) from None
    return v
