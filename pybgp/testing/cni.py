"""A small libcni-like CNI runtime for tests and benchmarks (Debian ships no cnitool).

Owns: loading a conflist, running its plugins as a container runtime does, a
result cache per attachment, and a timing record of every plugin execution.

What it does, as libcni does:
- ADD runs the plugins in order; each gets its own config plus ``name``,
  ``cniVersion``, ``runtimeConfig`` (only the capabilities the plugin declares
  true in ``capabilities``) and ``prevResult`` (the previous plugin's result).
  The final result is cached per (network, containerID, ifname).
- DEL runs the plugins in reverse with the cached result as ``prevResult``
  (from 0.4.0 on), then forgets the cache entry; with nothing cached the
  plugins get no ``prevResult`` (a DEL of something never added).
- CHECK (≥ 0.4.0) runs in order with the cached result as ``prevResult``.
- STATUS and GC (≥ 1.1.0) run on every plugin; GC first DELs cached
  attachments that are not valid, then hands ``cni.dev/valid-attachments``
  to each plugin. VERSION asks one plugin.
- A plugin is ``<dir>/<type>`` for the first dir of ``cni_path`` that has it;
  it runs with CNI_COMMAND / CNI_CONTAINERID / CNI_NETNS / CNI_IFNAME /
  CNI_ARGS / CNI_PATH, inside the "host" network namespace named by
  ``host_netns`` (``ip netns exec NS plugin``), with a bounded timeout after
  which its whole process group is killed. Non-zero exit is an error, whose
  JSON (``code``/``msg``/``details``) is read from stdout.

Every execution is recorded as a ``Call`` (command, plugin, wall time from
fork to exit as the runtime sees it, exit status, output), in ``Runtime.calls``.

Must never: run a plugin in the root network namespace when ``host_netns`` is
given, leave a plugin process running after a call returns, or write outside
its ``cache_dir`` (when one is given; otherwise the cache is in memory).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KNOWN_VERSIONS = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
DEFAULT_TIMEOUT = 30.0
VALID_ATTACHMENTS = "cni.dev/valid-attachments"


def version_key(version: str) -> tuple[int, ...]:
    """``"0.3.1"`` → ``(0, 3, 1)``; raises ValueError for anything else."""
    if not re.fullmatch(r"\d+\.\d+\.\d+", version):
        raise ValueError(f"not a CNI version: {version!r}")
    return tuple(int(p) for p in version.split("."))


def at_least(version: str, minimum: str) -> bool:
    return version_key(version) >= version_key(minimum)


class CNIError(Exception):
    """A plugin failed: CNI error JSON (code/msg/details), or no/invalid output."""

    def __init__(self, code: int | None, msg: str, details: str = "", *,
                 plugin: str = "", command: str = "", stderr: str = "") -> None:
        self.code = code
        self.msg = msg
        self.details = details
        self.plugin = plugin
        self.command = command
        self.stderr = stderr
        super().__init__(self._render())

    def _render(self) -> str:
        head = f"{self.command} {self.plugin}: " if self.plugin else ""
        text = f"{head}CNI error {self.code}: {self.msg}"
        if self.details:
            text += f" ({self.details})"
        if self.stderr.strip():
            text += f"\n  stderr: {self.stderr.strip()[-1500:]}"
        return text


class PluginTimeout(CNIError):
    """The plugin did not exit within the runtime's timeout (it was killed)."""


@dataclass(frozen=True)
class Call:
    """One plugin execution as the runtime saw it."""

    command: str
    plugin: str
    container_id: str
    ifname: str
    elapsed: float  # seconds, fork+exec to exit (includes `ip netns exec`)
    returncode: int
    stdout: str
    stderr: str


@dataclass
class NetworkConfigList:
    """A parsed conflist (``cniVersion``/``cniVersions``, ``name``, ``plugins``)."""

    name: str
    cni_version: str
    plugins: list[dict[str, Any]]
    raw: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> NetworkConfigList:
        if not isinstance(doc, Mapping):
            raise ValueError("a conflist must be a JSON object")
        name = doc.get("name")
        if not isinstance(name, str) or not name:
            raise ValueError("conflist: 'name' is required")
        plugins = doc.get("plugins")
        if not isinstance(plugins, list) or not plugins:
            raise ValueError("conflist: 'plugins' must be a non-empty list")
        for i, p in enumerate(plugins):
            if not isinstance(p, dict) or not isinstance(p.get("type"), str) or not p["type"]:
                raise ValueError(f"conflist: plugins[{i}] needs a 'type'")
        version = _pick_version(doc)
        return cls(name=name, cni_version=version, plugins=[dict(p) for p in plugins],
                   raw=dict(doc))

    @classmethod
    def from_json(cls, text: str | bytes) -> NetworkConfigList:
        return cls.from_dict(json.loads(text))

    @classmethod
    def load(cls, path: str | Path) -> NetworkConfigList:
        return cls.from_json(Path(path).read_text())

    @classmethod
    def build(cls, name: str, version: str, plugins: Sequence[Mapping[str, Any]]
              ) -> NetworkConfigList:
        return cls.from_dict({"cniVersion": version, "name": name,
                              "plugins": [dict(p) for p in plugins]})

    def to_dict(self) -> dict[str, Any]:
        return {**self.raw, "cniVersion": self.cni_version, "name": self.name,
                "plugins": self.plugins}


def _pick_version(doc: Mapping[str, Any]) -> str:
    """``cniVersions`` (1.1.0): the highest one this runtime knows; else ``cniVersion``."""
    versions = doc.get("cniVersions")
    if isinstance(versions, list) and versions:
        known = [v for v in versions if v in KNOWN_VERSIONS]
        if not known:
            raise ValueError(f"conflist: no known version in cniVersions {versions}")
        return max(known, key=version_key)
    version = doc.get("cniVersion")
    if not isinstance(version, str) or version not in KNOWN_VERSIONS:
        raise ValueError(f"conflist: unsupported cniVersion {version!r}")
    return version


@dataclass(frozen=True)
class Attachment:
    """Where a network attaches: (container ID, netns path, interface name, CNI_ARGS)."""

    container_id: str
    netns: str
    ifname: str = "eth0"
    args: Mapping[str, str] = field(default_factory=dict)

    def cni_args(self) -> str:
        return ";".join(f"{k}={v}" for k, v in self.args.items())


class Runtime:
    """Runs conflists the way libcni does; see the module docstring."""

    def __init__(
        self,
        cni_path: Sequence[str | Path],
        *,
        host_netns: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        cache_dir: str | Path | None = None,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        if not cni_path:
            raise ValueError("cni_path must name at least one directory")
        self.cni_path = [str(p) for p in cni_path]
        self.host_netns = host_netns
        self.timeout = timeout
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.extra_env = dict(extra_env or {})
        self.calls: list[Call] = []
        self._cache: dict[tuple[str, str, str], dict[str, Any]] = {}

    # ----- public commands ---------------------------------------------------
    def add(self, net: NetworkConfigList, att: Attachment,
            capability_args: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """ADD through every plugin in order; returns (and caches) the final result."""
        prev: dict[str, Any] | None = None
        for plugin in net.plugins:
            conf = self._inject(net, plugin, capability_args, prev)
            out = self._exec("ADD", plugin["type"], conf, att)
            if out is None:
                raise CNIError(None, "ADD printed no result", plugin=plugin["type"],
                               command="ADD")
            prev = out
        assert prev is not None
        self._store(net.name, att, prev, net, capability_args)
        return prev

    def check(self, net: NetworkConfigList, att: Attachment,
              capability_args: Mapping[str, Any] | None = None) -> None:
        """CHECK through every plugin in order with the cached result (≥ 0.4.0)."""
        if not at_least(net.cni_version, "0.4.0"):
            raise CNIError(None, f"CHECK is not supported by cniVersion {net.cni_version}",
                           command="CHECK")
        cached = self.cached_result(net.name, att)
        if cached is None:
            raise CNIError(None, f"no cached result for {att.container_id}/{att.ifname}",
                           command="CHECK")
        for plugin in net.plugins:
            conf = self._inject(net, plugin, capability_args, cached)
            self._exec("CHECK", plugin["type"], conf, att)

    def delete(self, net: NetworkConfigList, att: Attachment,
               capability_args: Mapping[str, Any] | None = None) -> None:
        """DEL through every plugin in reverse; the cache entry goes once all succeed."""
        cached = self.cached_result(net.name, att)
        prev = cached if at_least(net.cni_version, "0.4.0") else None
        for plugin in reversed(net.plugins):
            conf = self._inject(net, plugin, capability_args, prev)
            self._exec("DEL", plugin["type"], conf, att)
        self._forget(net.name, att)

    def status(self, net: NetworkConfigList) -> None:
        """STATUS on every plugin (≥ 1.1.0; a no-op for older versions, as libcni)."""
        if not at_least(net.cni_version, "1.1.0"):
            return
        for plugin in net.plugins:
            self._exec("STATUS", plugin["type"], self._inject(net, plugin, None, None), None)

    def gc(self, net: NetworkConfigList, valid: Iterable[Attachment | tuple[str, str]]) -> None:
        """GC (≥ 1.1.0): DEL stale cached attachments, then GC every plugin."""
        if not at_least(net.cni_version, "1.1.0"):
            return
        keep = {(a.container_id, a.ifname) if isinstance(a, Attachment) else tuple(a)
                for a in valid}
        errors: list[CNIError] = []
        for (name, cid, ifname), entry in list(self._entries()):
            if name != net.name or (cid, ifname) in keep:
                continue
            att = Attachment(cid, entry.get("netns", ""), ifname, entry.get("args") or {})
            try:
                self.delete(net, att)
            except CNIError as exc:
                errors.append(exc)
        attachments = [{"containerID": c, "ifname": i} for c, i in sorted(keep)]
        for plugin in net.plugins:
            conf = self._inject(net, plugin, None, None)
            conf[VALID_ATTACHMENTS] = attachments
            try:
                self._exec("GC", plugin["type"], conf, None)
            except CNIError as exc:
                errors.append(exc)
        if errors:
            raise errors[0]

    def version(self, plugin_type: str, cni_version: str = "1.0.0") -> dict[str, Any]:
        """VERSION of one plugin: ``{"cniVersion", "supportedVersions"}``."""
        out = self._exec("VERSION", plugin_type, {"cniVersion": cni_version}, None)
        if not out or not isinstance(out.get("supportedVersions"), list):
            raise CNIError(None, f"VERSION reply without supportedVersions: {out!r}",
                           plugin=plugin_type, command="VERSION")
        return out

    def supported_versions(self, plugin_type: str) -> list[str]:
        return [str(v) for v in self.version(plugin_type)["supportedVersions"]]

    # ----- cache ---------------------------------------------------------------
    def cached_result(self, network: str, att: Attachment) -> dict[str, Any] | None:
        entry = self._load(network, att.container_id, att.ifname)
        return entry["result"] if entry else None

    def _key(self, network: str, cid: str, ifname: str) -> tuple[str, str, str]:
        return (network, cid, ifname)

    def _file(self, network: str, cid: str, ifname: str) -> Path:
        assert self.cache_dir is not None
        return self.cache_dir / "results" / f"{network}-{cid}-{ifname}"

    def _store(self, network: str, att: Attachment, result: dict[str, Any],
               net: NetworkConfigList, capability_args: Mapping[str, Any] | None) -> None:
        entry = {"kind": "cniCacheV1", "containerId": att.container_id, "ifName": att.ifname,
                 "networkName": network, "netns": att.netns, "args": dict(att.args),
                 "config": net.to_dict(), "capabilityArgs": dict(capability_args or {}),
                 "result": result}
        if self.cache_dir is None:
            self._cache[self._key(network, att.container_id, att.ifname)] = entry
            return
        path = self._file(network, att.container_id, att.ifname)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(entry))
        tmp.replace(path)

    def _load(self, network: str, cid: str, ifname: str) -> dict[str, Any] | None:
        if self.cache_dir is None:
            return self._cache.get(self._key(network, cid, ifname))
        try:
            data: dict[str, Any] = json.loads(self._file(network, cid, ifname).read_text())
        except (OSError, ValueError):
            return None
        return data

    def _forget(self, network: str, att: Attachment) -> None:
        if self.cache_dir is None:
            self._cache.pop(self._key(network, att.container_id, att.ifname), None)
        else:
            self._file(network, att.container_id, att.ifname).unlink(missing_ok=True)

    def _entries(self) -> list[tuple[tuple[str, str, str], dict[str, Any]]]:
        if self.cache_dir is None:
            return list(self._cache.items())
        out = []
        results = self.cache_dir / "results"
        for path in sorted(results.glob("*")) if results.is_dir() else []:
            try:
                e = json.loads(path.read_text())
                out.append(((e["networkName"], e["containerId"], e["ifName"]), e))
            except (OSError, ValueError, KeyError):
                continue
        return out

    # ----- execution -----------------------------------------------------------
    def _inject(self, net: NetworkConfigList, plugin: Mapping[str, Any],
                capability_args: Mapping[str, Any] | None,
                prev: dict[str, Any] | None) -> dict[str, Any]:
        conf = dict(plugin)
        conf["name"] = net.name
        conf["cniVersion"] = net.cni_version
        caps = plugin.get("capabilities") or {}
        rc = {k: v for k, v in (capability_args or {}).items() if caps.get(k)}
        if rc:
            conf["runtimeConfig"] = rc
        else:
            conf.pop("runtimeConfig", None)
        if prev is not None:
            conf["prevResult"] = prev
        return conf

    def find_plugin(self, plugin_type: str) -> str:
        if "/" in plugin_type or plugin_type in (".", ".."):
            raise CNIError(None, f"invalid plugin type {plugin_type!r}")
        for d in self.cni_path:
            path = os.path.join(d, plugin_type)
            if os.path.isfile(path) and os.access(path, os.X_OK):
                return path
        raise CNIError(None, f"failed to find plugin {plugin_type!r} in path {self.cni_path}")

    def _env(self, command: str, att: Attachment | None) -> dict[str, str]:
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
               **self.extra_env,
               "CNI_COMMAND": command, "CNI_PATH": ":".join(self.cni_path)}
        if att is not None:
            env.update(CNI_CONTAINERID=att.container_id, CNI_NETNS=att.netns,
                       CNI_IFNAME=att.ifname, CNI_ARGS=att.cni_args())
        return env

    def _exec(self, command: str, plugin_type: str, conf: Mapping[str, Any],
              att: Attachment | None) -> dict[str, Any] | None:
        path = self.find_plugin(plugin_type)
        argv = ["ip", "netns", "exec", self.host_netns, path] if self.host_netns else [path]
        stdin = json.dumps(conf).encode()
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=self._env(command, att),
                                start_new_session=True, close_fds=True)
        try:
            out_b, err_b = proc.communicate(stdin, timeout=self.timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            out_b, err_b = proc.communicate()
            self._record(command, plugin_type, att, time.perf_counter() - start, -9,
                         out_b, err_b)
            raise PluginTimeout(None, f"no exit within {self.timeout:g}s (killed)",
                                plugin=plugin_type, command=command,
                                stderr=err_b.decode(errors="replace")) from None
        except BaseException:
            _kill_group(proc)
            proc.wait(timeout=10)
            raise
        elapsed = time.perf_counter() - start
        call = self._record(command, plugin_type, att, elapsed, proc.returncode, out_b, err_b)
        return _parse_output(call)

    def _record(self, command: str, plugin_type: str, att: Attachment | None, elapsed: float,
                rc: int, out_b: bytes, err_b: bytes) -> Call:
        call = Call(command=command, plugin=plugin_type,
                    container_id=att.container_id if att else "",
                    ifname=att.ifname if att else "", elapsed=elapsed, returncode=rc,
                    stdout=out_b.decode(errors="replace"), stderr=err_b.decode(errors="replace"))
        self.calls.append(call)
        return call

    def timings(self, command: str | None = None, plugin: str | None = None) -> list[float]:
        """Elapsed seconds of the recorded calls, filtered by command / plugin."""
        return [c.elapsed for c in self.calls
                if (command is None or c.command == command)
                and (plugin is None or c.plugin == plugin)]


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _parse_output(call: Call) -> dict[str, Any] | None:
    text = call.stdout.strip()
    parsed: Any = None
    if text:
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
    if call.returncode != 0:
        if isinstance(parsed, dict) and "code" in parsed:
            raise CNIError(parsed.get("code"), str(parsed.get("msg", "")),
                           str(parsed.get("details", "") or ""), plugin=call.plugin,
                           command=call.command, stderr=call.stderr)
        raise CNIError(None, f"exit status {call.returncode}, stdout {text[:500]!r}",
                       plugin=call.plugin, command=call.command, stderr=call.stderr)
    if not text:
        return None
    if not isinstance(parsed, dict):
        raise CNIError(None, f"unparsable output {text[:500]!r}", plugin=call.plugin,
                       command=call.command, stderr=call.stderr)
    return parsed


def make_cni_path(directory: str | Path, plugins: Mapping[str, str | Path]) -> Path:
    """Fill ``directory`` with symlinks ``name -> target`` (a CNI_PATH dir); returns it."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    for name, target in plugins.items():
        link = d / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(Path(target).resolve())
    return d


def debian_plugins(names: Iterable[str] = ("ptp", "host-local", "portmap", "loopback"),
                   root: str = "/usr/lib/cni") -> dict[str, str]:
    """The Debian reference plugins by name (only those present)."""
    return {n: os.path.join(root, n) for n in names if os.path.exists(os.path.join(root, n))}


def interfaces(result: Mapping[str, Any], sandbox: bool | None = None) -> list[dict[str, Any]]:
    """A result's interfaces; ``sandbox`` True = container side, False = host side."""
    out = []
    for iface in result.get("interfaces") or []:
        in_sandbox = bool(iface.get("sandbox"))
        if sandbox is None or in_sandbox == sandbox:
            out.append(iface)
    return out


def addresses(result: Mapping[str, Any]) -> list[str]:
    """The addresses (without prefix length) of a result's ``ips``."""
    return [str(ip["address"]).split("/")[0] for ip in result.get("ips") or []]
