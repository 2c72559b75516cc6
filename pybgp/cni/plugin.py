"""``pybgp-cni`` commands: ADD, DEL, CHECK, STATUS, GC (VERSION is answered by the entry point).

``handle(req)`` is what both the executable (in-process fallback) and the
cni-daemon run. Each command is a short straight line, like the reference
ptp plugin:

- ADD: config → IPAM (in-process or delegated) → wire the veth pair →
  write the WorkloadEndpoint → result. Each step registers its undo; any
  failure runs them newest first, so a failed ADD leaves no address, veth,
  route or endpoint (the only exception: an undo that itself cannot reach
  etcd; the runtime's DEL, or GC, finishes it — the error says code 11).
- DEL: remove the container interface (its host peer goes with it; never by
  the host name, which a newer sandbox of the same pod may own), release
  IPAM by handle, delete the endpoint if its containerID is ours. Every step
  tolerates "already gone"; etcd unreachable is code 11, never success.
- CHECK: the kernel state and the endpoint against prevResult; IPAM CHECK.
- STATUS: 50 when ADD could not be served (etcd unreachable, no pool).
- GC: see ``pybgp.cni.gc``.

Returns the JSON to print (ADD) or None; raises ``spec.CNIError``.
Test hook: ``PYBGP_CNI_TEST_PAUSE=<step>:<file>`` (step ``ipam`` or
``wire``) makes ADD create ``<file>`` after that step and sleep, so a test
can kill it at a known point. Nothing else reads it.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

from pybgp.cni import endpoint, ipam_plugin, spec
from pybgp.cni.config import Settings, parse_annotations
from pybgp.cni.store import cni_errors, connected
from pybgp.cni.undo import UndoStack
from pybgp.cni.wiring import NetnsGone, host_veth_name, inspect, unwire, wire
from pybgp.datastore.kv import KVStore

log = logging.getLogger("pybgp.cni")
_configured: set[str] = set()


def handle(req: spec.Request) -> dict[str, Any] | None:
    s = Settings(req.config)
    _setup_logging(s)
    log.debug("%s %s netns=%s ifname=%s", req.command, req.container_id, req.netns, req.ifname)
    commands = {"ADD": cmd_add, "DEL": cmd_del, "CHECK": cmd_check,
                "STATUS": cmd_status, "GC": cmd_gc}
    if req.command not in commands:
        raise spec.CNIError(spec.INVALID_ENVIRONMENT, f"unsupported command {req.command}")
    if req.command == "CHECK" and req.version.startswith("0.3"):
        raise spec.CNIError(spec.INCOMPATIBLE_VERSION,
                            f"CHECK is not defined for cniVersion {req.version}")
    started = time.monotonic()
    try:
        with cni_errors(f"{req.command} {req.container_id or s.network}".strip()):
            return commands[req.command](req, s)
    except spec.CNIError as exc:
        log.error("%s %s failed (code %d): %s", req.command, req.container_id, exc.code, exc.msg)
        raise
    finally:
        log.debug("%s %s took %.1f ms", req.command, req.container_id,
                  (time.monotonic() - started) * 1000)


# -------------------------------------------------------------------- ADD

def cmd_add(req: spec.Request, s: Settings) -> dict[str, Any]:
    notes = parse_annotations(req.config, no_ipam_enabled=s.ip_addrs_no_ipam_enabled)
    host_if = host_veth_name(req.pod_namespace, req.pod_name, req.container_id)
    ident = endpoint.Identity(s, req)
    with connected(s) as kv, UndoStack() as undo:
        ip, dns = _allocate(req, s, kv, notes, undo)
        _test_pause("ipam")
        wired = wire(req.netns, req.ifname, host_if, [f"{ip}/32"], s.mtu)
        undo.push(f"remove veth {host_if}", lambda: unwire(host_if))
        _test_pause("wire")
        wep = endpoint.build(ident, ip, host_if, wired.container_mac)
        endpoint.ensure_profile(kv, ident)
        endpoint.write(kv, wep)
        undo.push(f"delete WorkloadEndpoint {ident.name}",
                  lambda: endpoint.delete_if_ours(kv, ident.key, req.container_id))
        undo.commit()
    log.info("ADD %s: %s on %s (host %s)", req.container_id, ip, req.ifname, host_if)
    from pybgp.cni.result import add_result

    result = add_result(host_ifname=host_if, host_mac=wired.host_mac, ifname=req.ifname,
                        mac=wired.container_mac, netns=req.netns, ip=ip, mtu=s.mtu,
                        dns=s.dns or dns)
    return spec.format_result(result, req.version)


def _allocate(req: spec.Request, s: Settings, kv: KVStore, notes: Any,
              undo: UndoStack) -> tuple[str, dict[str, Any]]:
    """The pod's address (and the IPAM's dns), with the release registered on ``undo``."""
    if notes.ip_addrs_no_ipam:
        return notes.ip_addrs_no_ipam[0], {}
    fixed = notes.ip_addrs[0] if notes.ip_addrs else None
    if s.ipam_in_process:
        # Only a fixed address can come back already held by this handle (a
        # repeated ADD); auto-assignment always takes a new one.
        before = set(ipam_plugin.held(kv, s.handle(req.container_id))) if fixed else set()
        ip = ipam_plugin.assign(kv, s, req, ip=fixed, pools=notes.ipv4_pools)
        if ip not in before:  # a repeated ADD must not free what the first one holds
            undo.push(f"release {ip}", lambda: ipam_plugin.release_ip(kv, s, ip))
        return ip, {}
    config = req.config
    if notes.ipv4_pools:
        config = dict(config, ipam=dict(config["ipam"], ipv4_pools=notes.ipv4_pools))
    result = ipam_plugin.exec_ipam(req, s, "ADD", config=config,
                                   extra_args={"IP": fixed} if fixed else None)
    assert result is not None
    undo.push(f"{s.ipam_type} DEL", lambda: ipam_plugin.exec_ipam(req, s, "DEL", config=config))
    return ipam_plugin.first_ipv4(result, s.ipam_type), dict(result.get("dns") or {})


def _test_pause(step: str) -> None:
    hook = os.environ.get("PYBGP_CNI_TEST_PAUSE", "")
    want, _, path = hook.partition(":")
    if want == step and path:
        with open(path, "w") as fh:
            fh.write(str(os.getpid()))
        time.sleep(30)


# -------------------------------------------------------------------- DEL

def cmd_del(req: spec.Request, s: Settings) -> None:
    _remove_container_interface(req.netns, req.ifname)
    with connected(s) as kv:
        if s.ipam_in_process:
            released = ipam_plugin.release(kv, s, req.container_id)
            log.info("DEL %s: released %s", req.container_id, ", ".join(released) or "nothing")
        elif s.ipam_type:
            ipam_plugin.exec_ipam(req, s, "DEL")
        ident = endpoint.Identity(s, req)
        endpoint.delete_if_ours(kv, ident.key, req.container_id)
    return None


def _remove_container_interface(netns: str, ifname: str) -> None:
    """Delete ``ifname`` inside ``netns`` (and so its host peer); gone is fine."""
    if not netns:
        return
    from pybgp.cni.wiring import remove_container_interface

    try:
        remove_container_interface(netns, ifname)
    except NetnsGone:
        log.info("DEL: network namespace %s is already gone", netns)


# ------------------------------------------------------------------ CHECK

def cmd_check(req: spec.Request, s: Settings) -> None:
    from pybgp.cni.result import compare, parse_previous

    prev = parse_previous(req.config, req.ifname, req.netns)
    host_if = host_veth_name(req.pod_namespace, req.pod_name, req.container_id)
    try:
        seen = inspect(req.netns, req.ifname, host_if)
    except NetnsGone as exc:
        raise spec.CNIError(spec.CHECK_MISMATCH, str(exc)) from None
    problems = compare(prev, seen, host_if)
    with connected(s) as kv:
        ident = endpoint.Identity(s, req)
        found = endpoint.read(kv, ident.key)
        if found is None:
            problems.append(f"WorkloadEndpoint {ident.name} does not exist")
        else:
            wep = found[1].get("spec") or {}
            if wep.get("containerID") != req.container_id:
                problems.append(f"WorkloadEndpoint {ident.name} belongs to container "
                                f"{wep.get('containerID')}")
            nets = sorted(wep.get("ipNetworks") or [])
            if nets != sorted(f"{ip}/32" for ip in prev.ips):
                problems.append(f"WorkloadEndpoint {ident.name} has ipNetworks {nets}")
        if problems:
            raise spec.CNIError(spec.CHECK_MISMATCH, "CHECK failed: " + "; ".join(problems))
        if s.ipam_in_process:
            have = ipam_plugin.held(kv, s.handle(req.container_id))
            missing = [ip for ip in prev.ips if ip not in have]
            if missing and not parse_annotations(
                req.config, no_ipam_enabled=s.ip_addrs_no_ipam_enabled
            ).ip_addrs_no_ipam:
                raise spec.CNIError(spec.CHECK_MISMATCH, "CHECK failed: IPAM holds no "
                                    f"allocation of {', '.join(missing)} for this container")
        elif s.ipam_type:
            ipam_plugin.exec_ipam(req, s, "CHECK")
    return None


# --------------------------------------------------------- STATUS and GC

def cmd_status(req: spec.Request, s: Settings) -> None:
    with connected(s) as kv:
        if s.ipam_in_process:
            ipam_plugin.status(kv, s)
        else:
            from pybgp.cni.store import unavailable_message
            from pybgp.errors import DatastoreUnavailable

            try:
                kv.get(ipam_plugin.IPPOOL_PREFIX)
            except DatastoreUnavailable as exc:
                raise spec.CNIError(spec.STATUS_CANNOT_ADD, unavailable_message(exc)) from exc
    return None


def cmd_gc(req: spec.Request, s: Settings) -> None:
    from pybgp.cni.gc import collect

    valid = ipam_plugin.valid_container_ids(req.config)
    with connected(s) as kv:
        collect(kv, s, valid)
    return None


# ---------------------------------------------------------------- logging

def _setup_logging(s: Settings) -> None:
    """Log to ``log_file_path`` if set, else stderr (unless the process has handlers: the
    daemon's); never stdout, which carries the result."""
    logger = logging.getLogger("pybgp")
    logger.setLevel(getattr(logging, s.log_level.upper(), logging.INFO))
    target = s.log_file_path or "<stderr>"
    if target in _configured:
        return
    if s.log_file_path:
        os.makedirs(os.path.dirname(s.log_file_path) or ".", exist_ok=True)
        handler: logging.Handler = logging.FileHandler(s.log_file_path)
    elif logger.handlers or logging.getLogger().handlers:
        return
    else:
        handler = logging.StreamHandler(sys.stderr)
    _configured.add(target)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s pybgp-cni: %(message)s"))
    logger.addHandler(handler)
