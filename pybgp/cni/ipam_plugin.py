"""IPAM for the CNI plugin: Calico's IPAM in-process, or any IPAM plugin from CNI_PATH.

``ipam.type`` ``pybgp-ipam`` or ``calico-ipam`` runs *in-process*: the very
code the ``pybgp-ipam`` executable runs (``handle`` below), called directly so
an ADD does not pay a second interpreter start. Any other type (Debian's
``host-local``...) is executed from ``CNI_PATH`` as the spec says: same
CNI_* environment, the network config on stdin; its error JSON is propagated
with its code and message.

Semantics (Calico's): handle ``<network name>.<containerID>``; attributes
namespace/pod/node/timestamp on the allocation; a fixed address (the
``ipAddrs`` annotation, or ``IP=`` in CNI_ARGS as calico-ipam accepts it) is
claimed with ``assign_ip``; otherwise ``auto_assign`` from ``ipv4pools``
(annotation) or ``ipam.ipv4_pools`` (config) or every enabled pool. DEL
releases by handle and succeeds when nothing is held.

Invariant: every allocation made here is recorded under the request's
handle, so ``release`` (DEL, GC, an ADD's undo) finds it.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any

from pybgp.cni import spec
from pybgp.cni.config import Settings
from pybgp.datastore.kv import KVStore, Prefetched
from pybgp.ipam.keys import (
    CONFIG_KEY,
    affinities_prefix,
    block_key,
    handle_key,
    parse_affinity_key,
)

EXEC_TIMEOUT = 60.0
IPPOOL_PREFIX = "/calico/resources/v3/projectcalico.org/ippools/"
NODE_PREFIX = "/calico/resources/v3/projectcalico.org/nodes/"


# ------------------------------------------------------------- in-process

_block_hint: dict[str, list[str]] = {}  # node → its affine blocks' keys, last seen

def load_pools(kv: KVStore) -> list[Any]:
    """Every IPPool in the datastore as an IPAM ``Pool``."""
    from pybgp.ipam import Pool

    kvs, _ = kv.list(IPPOOL_PREFIX)
    return [Pool.from_resource(json.loads(item.value)) for item in kvs]


def make_ipam(kv: KVStore, s: Settings, pools: Sequence[Any] | None = None) -> Any:
    """An IPAM for this node; its labels are read only if a pool selects nodes."""
    from pybgp.ipam import IPAM
    from pybgp.model.selector import matches

    labels: dict[str, str] = {}
    selective = pools is None or any(
        (p.node_selector or "all()").strip() != "all()" for p in pools)
    node = kv.get(NODE_PREFIX + s.nodename) if selective else None
    if node is not None:
        labels = dict((json.loads(node.value).get("metadata") or {}).get("labels") or {})
    return IPAM(kv, s.nodename, node_labels=labels, matches=matches,
                max_blocks_per_host=s.max_blocks_per_host or 20)


def attributes(req: spec.Request) -> dict[str, str]:
    if req.pod_name:
        return {"namespace": req.pod_namespace, "pod": req.pod_name}
    return {}


def assign(kv: KVStore, s: Settings, req: spec.Request, *, ip: str | None = None,
           pools: Sequence[str] = ()) -> str:
    """One IPv4 address for the request's handle; returns it without prefix."""
    handle = s.handle(req.container_id)
    # One round trip for the reads every assignment makes (config, pools, this
    # node's affinities, the handle) instead of four — plus, as a hint, the
    # blocks the node's affinities named last time (a long-lived daemon keeps
    # it; a wrong hint only costs the allocator its own read).
    hint = _block_hint.get(s.nodename, [])
    kv = Prefetched(kv, keys=[CONFIG_KEY, handle_key(handle), *hint],
                    prefixes=[IPPOOL_PREFIX, affinities_prefix(s.nodename, 4)])
    _block_hint[s.nodename] = [
        block_key(net) for item in kv.peek_list(affinities_prefix(s.nodename, 4))
        if (parsed := parse_affinity_key(item.key)) is not None for net in (parsed[1],)]
    all_pools = load_pools(kv)
    ipam = make_ipam(kv, s, all_pools)
    if ip:
        return str(ipam.assign_ip(ip, handle, attributes(req), all_pools).ip)
    wanted = list(pools) or s.ipv4_pools or None
    found = ipam.auto_assign(handle, 1, attributes(req), all_pools, wanted, ip_version=4)
    return str(found[0].ip)


def release(kv: KVStore, s: Settings, container_id: str) -> list[str]:
    return list(make_ipam(kv, s, ()).release_by_handle(s.handle(container_id)))


def release_ip(kv: KVStore, s: Settings, ip: str) -> list[str]:
    return list(make_ipam(kv, s, ()).release_ips([ip]))


def held(kv: KVStore, handle: str) -> list[str]:
    """The addresses IPAM holds for ``handle`` (read only)."""
    from pybgp.ipam import block as blk
    from pybgp.ipam.keys import block_key, handle_key
    from pybgp.ipam.records import Block, Handle

    hkv = kv.get(handle_key(handle))
    if hkv is None:
        return []
    out = []
    for cidr in Handle.decode(hkv.value).block:
        bkv = kv.get(block_key(ipaddress.ip_network(cidr)))
        if bkv is not None:
            block = Block.decode(bkv.value, bkv.key)
            out += [str(blk.ip_at(block, o)) for o in blk.ordinals_of_handle(block, handle)]
    return out


def handle(req: spec.Request) -> dict[str, Any] | None:
    """The ``pybgp-ipam`` executable's commands (ADD/DEL/CHECK/STATUS/GC)."""
    from pybgp.cni.store import cni_errors, connected

    s = Settings(req.config)
    with cni_errors(f"pybgp-ipam {req.command}"), connected(s) as kv:
        if req.command == "ADD":
            ip = assign(kv, s, req, ip=req.args.get("IP") or None)
            return spec.format_result({"ips": [{"address": f"{ip}/32"}]}, req.version)
        if req.command == "DEL":
            release(kv, s, req.container_id)
        elif req.command == "CHECK":
            ips = prev_ips(req.config)
            have = held(kv, s.handle(req.container_id))
            missing = [ip for ip in ips if ip not in have]
            if missing:
                raise spec.CNIError(spec.CHECK_MISMATCH, f"IPAM holds no allocation of "
                                    f"{', '.join(missing)} for {s.handle(req.container_id)}")
        elif req.command == "STATUS":
            status(kv, s)
        elif req.command == "GC":
            from pybgp.cni.gc import collect_ipam

            collect_ipam(kv, s, valid_container_ids(req.config))
    return None


def status(kv: KVStore, s: Settings) -> None:
    """Raise CNIError 50 unless an ADD could be served (etcd answers, a v4 pool is enabled)."""
    from pybgp.errors import DatastoreUnavailable

    try:
        pools = load_pools(kv)
    except DatastoreUnavailable as exc:
        from pybgp.cni.store import unavailable_message

        raise spec.CNIError(spec.STATUS_CANNOT_ADD, unavailable_message(exc)) from exc
    if not any(p.version == 4 and not p.disabled for p in pools):
        raise spec.CNIError(spec.STATUS_CANNOT_ADD,
                            "no enabled IPv4 IPPool exists: create one (pybgp apply)")


def prev_ips(config: Mapping[str, Any]) -> list[str]:
    prev = config.get("prevResult") or {}
    return [str(ipaddress.ip_interface(i["address"]).ip) for i in prev.get("ips") or []
            if isinstance(i, dict) and i.get("address")]


def valid_container_ids(config: Mapping[str, Any]) -> set[str]:
    valid = config.get("cni.dev/valid-attachments")
    if valid is None:
        valid = (config.get("runtimeConfig") or {}).get("cni.dev/valid-attachments")
    if not isinstance(valid, list):
        raise spec.CNIError(spec.INVALID_CONFIG, "GC needs 'cni.dev/valid-attachments' (a list)")
    return {str(a.get("containerID")) for a in valid if isinstance(a, dict)}


# --------------------------------------------------------------- delegated

def find_plugin(name: str, path: Sequence[str]) -> str:
    if "/" in name or not name:
        raise spec.CNIError(spec.INVALID_CONFIG, f"invalid IPAM plugin name {name!r}")
    for d in path:
        candidate = os.path.join(d, name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise spec.CNIError(spec.INVALID_CONFIG, f"IPAM plugin {name!r} not found in CNI_PATH "
                        f"({':'.join(path) or 'empty'})")


def exec_ipam(req: spec.Request, s: Settings, command: str, *,
              config: Mapping[str, Any] | None = None,
              extra_args: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """Run the delegated IPAM plugin; its result (ADD) or None; its error as CNIError."""
    exe = find_plugin(s.ipam_type, req.path)
    args = dict(req.args)
    if extra_args:
        args.setdefault("IgnoreUnknown", "1")
        args.update(extra_args)
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": req.container_id,
        "CNI_NETNS": req.netns,
        "CNI_IFNAME": req.ifname,
        "CNI_ARGS": ";".join(f"{k}={v}" for k, v in args.items()),
        "CNI_PATH": ":".join(req.path),
    }
    stdin = json.dumps(dict(config if config is not None else req.config))
    try:
        proc = subprocess.run([exe], input=stdin, env=env, capture_output=True, text=True,
                              timeout=EXEC_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise spec.CNIError(spec.TRY_AGAIN_LATER, f"IPAM plugin {s.ipam_type} {command} did not "
                            f"answer within {EXEC_TIMEOUT:.0f}s") from None
    out: Any = None
    if proc.stdout.strip():
        try:
            out = json.loads(proc.stdout)
        except ValueError:
            out = None
    if proc.returncode != 0:
        if isinstance(out, dict) and "code" in out:
            raise spec.CNIError(int(out["code"]), f"IPAM plugin {s.ipam_type}: "
                                f"{out.get('msg', '')}", str(out.get("details") or ""))
        raise spec.CNIError(spec.IPAM_FAILURE, f"IPAM plugin {s.ipam_type} {command} failed "
                            f"(exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
    if command != "ADD":
        return None
    if not isinstance(out, dict):
        raise spec.CNIError(spec.IPAM_FAILURE,
                            f"IPAM plugin {s.ipam_type} returned no JSON result")
    return out


def first_ipv4(result: Mapping[str, Any], who: str) -> str:
    for item in result.get("ips") or []:
        try:
            iface = ipaddress.ip_interface(item["address"])
        except (KeyError, TypeError, ValueError):
            continue
        if iface.version == 4:
            return str(iface.ip)
    raise spec.CNIError(spec.IPAM_FAILURE, f"IPAM plugin {who} returned no IPv4 address")
