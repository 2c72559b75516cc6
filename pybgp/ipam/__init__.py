"""Calico-semantics IPAM: /26 (/122) blocks affine to nodes, over a CAS key-value store.

Modules, bottom up: ``keys`` (etcd paths), ``records`` (JSON of blocks,
affinities, handles, config), ``block`` (pure block operations), ``pools``
(which pools a request may use), ``allocator`` (``IPAM``: assign / release
with compare-and-swap transactions), ``audit`` (``usage`` and ``check`` for
the CLI). Only ``allocator`` writes to the store.
"""

from pybgp.ipam.allocator import IPAM, IPInterface
from pybgp.ipam.audit import (
    PROBLEM_KINDS,
    BlockUsage,
    Endpoint,
    PoolUsage,
    Problem,
    Snapshot,
    Usage,
    check,
    check_snapshot,
    read_snapshot,
    usage,
    usage_of,
)
from pybgp.ipam.pools import Matcher, Pool, match_all_only
from pybgp.ipam.records import Affinity, Attribute, Block, Handle, IPAMConfig

__all__ = [
    "IPAM",
    "PROBLEM_KINDS",
    "Affinity",
    "Attribute",
    "Block",
    "BlockUsage",
    "Endpoint",
    "Handle",
    "IPAMConfig",
    "IPInterface",
    "Matcher",
    "Pool",
    "PoolUsage",
    "Problem",
    "Snapshot",
    "Usage",
    "check",
    "check_snapshot",
    "match_all_only",
    "read_snapshot",
    "usage",
    "usage_of",
]
