"""etcd key paths of Calico IPAM (libcalico-go's etcd v3 layout), built and parsed.

Owns nothing but strings. The layout, exactly as libcalico-go writes it::

    /calico/ipam/v2/assignment/ipv4/block/198.19.0.0-26      AllocationBlock
    /calico/ipam/v2/assignment/ipv6/block/2001:db8::-122     AllocationBlock
    /calico/ipam/v2/host/<node>/ipv4/block/198.19.0.0-26     BlockAffinity
    /calico/ipam/v2/handle/<handle id>                       IPAMHandle
    /calico/ipam/v2/config                                   IPAMConfig

Invariants:
- a CIDR token is the network's canonical text (Go's ``IPNet.String()``, which
  equals Python's compressed form) with its one ``/`` replaced by ``-``. IPv6
  keys therefore keep their colons (``2001:db8::-122``); the all-dashes form
  (``2001-db8---122``) is the Kubernetes-datastore resource *name*, not an
  etcd key, and is never produced here.
- ``parse_*`` return None for anything that is not exactly such a key.
"""

from __future__ import annotations

import ipaddress

from pybgp.errors import ValidationError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

ROOT = "/calico/ipam/v2"
CONFIG_KEY = f"{ROOT}/config"
HANDLE_PREFIX = f"{ROOT}/handle/"
HOST_PREFIX = f"{ROOT}/host/"
ASSIGNMENT_PREFIX = f"{ROOT}/assignment/"


def cidr_token(net: Network) -> str:
    return str(net).replace("/", "-", 1)


def parse_cidr_token(token: str) -> Network | None:
    addr, sep, plen = token.rpartition("-")
    if not sep or not plen.isdigit():
        return None
    try:
        return ipaddress.ip_network(f"{addr}/{plen}")
    except ValueError:
        return None


def blocks_prefix(version: int) -> str:
    return f"{ASSIGNMENT_PREFIX}ipv{version}/block/"


def block_key(net: Network) -> str:
    return f"{blocks_prefix(net.version)}{cidr_token(net)}"


def parse_block_key(key: str) -> Network | None:
    for version in (4, 6):
        prefix = blocks_prefix(version)
        if key.startswith(prefix):
            net = parse_cidr_token(key[len(prefix) :])
            return net if net is not None and net.version == version else None
    return None


def affinities_prefix(node: str | None = None, version: int | None = None) -> str:
    """All affinities, one node's, or one node's for one IP version."""
    if node is None:
        return HOST_PREFIX
    if version is None:
        return f"{HOST_PREFIX}{node}/"
    return f"{HOST_PREFIX}{node}/ipv{version}/block/"


def affinity_key(node: str, net: Network) -> str:
    return f"{affinities_prefix(node, net.version)}{cidr_token(net)}"


def parse_affinity_key(key: str) -> tuple[str, Network] | None:
    if not key.startswith(HOST_PREFIX):
        return None
    parts = key[len(HOST_PREFIX) :].split("/")
    if len(parts) != 4 or parts[2] != "block" or parts[1] not in ("ipv4", "ipv6") or not parts[0]:
        return None
    net = parse_cidr_token(parts[3])
    if net is None or f"ipv{net.version}" != parts[1]:
        return None
    return parts[0], net


def check_handle(handle: str) -> str:
    """``handle`` if usable as the last segment of a key, else ValidationError."""
    if not handle or "/" in handle or handle != handle.strip():
        raise ValidationError(f"invalid IPAM handle {handle!r}: must be non-empty, without '/'")
    return handle


def check_node(node: str) -> str:
    if not node or "/" in node or node != node.strip():
        raise ValidationError(f"invalid node name {node!r}: must be non-empty, without '/'")
    return node


def handle_key(handle: str) -> str:
    return f"{HANDLE_PREFIX}{check_handle(handle)}"


def parse_handle_key(key: str) -> str | None:
    if not key.startswith(HANDLE_PREFIX):
        return None
    handle = key[len(HANDLE_PREFIX) :]
    return handle if handle and "/" not in handle else None
