"""iptables, Felix's way: whole-chain rewrites in one ``iptables-restore --noflush``.

Pure part (:class:`TableSync`, :func:`parse_save`, :func:`rule_hashes`):
every rule the agent writes carries ``-m comment --comment "cali:<hash>"``,
where the hash covers the chain's name, the rule and every rule before it
(as Felix's hashes do), so reading ``iptables-save`` back tells which
chains are exactly as written without parsing iptables' rule syntax. A
chain whose hashes differ from the desired ones (hand-edited, missing, a
rule deleted) is rewritten whole; ``cali-`` chains nobody wants any more are
flushed and deleted; in the kernel's built-in chains only the agent's own
hook rules (one jump per chain, kept first) are inserted, moved or deleted.

Shell part (:func:`save`, :func:`restore`): ``iptables-save`` and
``iptables-restore --noflush`` subprocesses, in the caller's network
namespace.

Must never: touch a chain that does not start with ``cali-`` or a rule in
a built-in chain without a ``cali:`` hash, flush a table, or declare a
built-in chain (which would reset its policy).
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field

from pybgp.agent.selectors import digest
from pybgp.errors import KernelError

CHAIN_PREFIX = "cali-"
HASH_LEN = 16
BUILTIN = {"filter": ("INPUT", "FORWARD", "OUTPUT"),
           "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
           "raw": ("PREROUTING", "OUTPUT"),
           "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING")}
_HASH_RE = re.compile(r'--comment "?cali:([A-Za-z0-9_-]{' + str(HASH_LEN) + '})"?')


def rule_hashes(chain: str, bodies: tuple[str, ...]) -> tuple[str, ...]:
    out = []
    prev = chain
    for body in bodies:
        prev = digest(f"{prev}\0{body}", HASH_LEN)
        out.append(prev)
    return tuple(out)


def hook_hash(builtin: str, body: str) -> str:
    return digest(f"hook\0{builtin}\0{body}", HASH_LEN)


def tagged(h: str, body: str) -> str:
    return f'-m comment --comment "cali:{h}" {body}'.rstrip()


@dataclass
class TableState:
    """One table as ``iptables-save`` showed it: our chains as hash lists
    (None for a rule without a hash), built-in chains as their rule texts."""

    chains: dict[str, list[str | None]] = field(default_factory=dict)
    builtins: dict[str, list[str]] = field(default_factory=dict)


def parse_save(text: str) -> dict[str, TableState]:
    tables: dict[str, TableState] = {}
    state: TableState | None = None
    for line in text.splitlines():
        if line.startswith("*"):
            state = tables.setdefault(line[1:].strip(), TableState())
        elif state is None or not line or line[0] == "#" or line == "COMMIT":
            continue
        elif line.startswith(":"):
            name = line[1:].split(" ", 1)[0]
            if name.startswith(CHAIN_PREFIX):
                state.chains.setdefault(name, [])
            else:
                state.builtins.setdefault(name, [])
        elif line.startswith("-A "):
            _, name, *rest = line.split(" ", 2)
            body = rest[0] if rest else ""
            if name.startswith(CHAIN_PREFIX):
                m = _HASH_RE.search(body)
                state.chains.setdefault(name, []).append(m.group(1) if m else None)
            else:
                state.builtins.setdefault(name, []).append(body)
    return tables


def hash_of(body: str) -> str | None:
    m = _HASH_RE.search(body)
    return m.group(1) if m else None


class TableSync:
    """What one table holds of ours, and the transaction that makes it right."""

    def __init__(self, table: str) -> None:
        self.table = table
        self.kernel: dict[str, tuple[str | None, ...]] = {}
        self.kernel_builtins: dict[str, list[str]] = {}
        self.known = False  # nothing read yet: plan() needs a load() first
        self._hashes: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}

    def load(self, state: TableState | None) -> None:
        state = state or TableState()
        self.kernel = {c: tuple(h) for c, h in state.chains.items()}
        self.kernel_builtins = {c: list(r) for c, r in state.builtins.items()}
        self.known = True

    def hashes(self, chain: str, bodies: tuple[str, ...]) -> tuple[str, ...]:
        cached = self._hashes.get(chain)
        if cached is not None and cached[0] == bodies:
            return cached[1]
        hashes = rule_hashes(chain, bodies)
        self._hashes[chain] = (bodies, hashes)
        return hashes

    def plan(self, chains: Mapping[str, tuple[str, ...]],
             hooks: Mapping[str, str]) -> tuple[str, list[str], list[str]]:
        """(restore text for this table or "", chains it writes, chains it deletes)."""
        assert self.known, "load() the kernel's state first"
        write = [c for c, bodies in chains.items()
                 if self.kernel.get(c) != self.hashes(c, bodies)]
        delete = sorted(c for c in self.kernel if c not in chains)
        hook_ops = self._hook_ops(hooks)
        if not write and not delete and not hook_ops:
            return "", [], []
        lines = [f"*{self.table}"]
        lines += [f":{c} - [0:0]" for c in (*write, *delete)]
        for c in write:
            bodies = chains[c]
            for h, body in zip(self.hashes(c, bodies), bodies, strict=True):
                lines.append(f"-A {c} {tagged(h, body)}")
        lines += hook_ops
        lines += [f"-X {c}" for c in delete]
        lines.append("COMMIT")
        return "\n".join(lines) + "\n", write, delete

    def _hook_ops(self, hooks: Mapping[str, str]) -> list[str]:
        ops: list[str] = []
        for builtin in BUILTIN.get(self.table, ()):
            rules = self.kernel_builtins.get(builtin, [])
            body = hooks.get(builtin)
            want = hook_hash(builtin, body) if body is not None else None
            ours = [r for r in rules if hash_of(r) is not None]
            if want is None:
                right = not ours
            else:
                right = len(ours) == 1 and bool(rules) and hash_of(rules[0]) == want
            if right:
                continue
            # Each -D removes the first rule with that text, so duplicates go in turn.
            ops += [f"-D {builtin} {r}" for r in ours]
            if want is not None:
                assert body is not None
                ops.append(f"-I {builtin} 1 {tagged(want, body)}")
        return ops

    def committed(self, chains: Mapping[str, tuple[str, ...]], hooks: Mapping[str, str],
                  write: list[str], delete: list[str]) -> None:
        """Record that the transaction :meth:`plan` made went in."""
        for c in write:
            self.kernel[c] = self.hashes(c, chains[c])
        for c in delete:
            self.kernel.pop(c, None)
            self._hashes.pop(c, None)
        for builtin in BUILTIN.get(self.table, ()):
            rules = [r for r in self.kernel_builtins.get(builtin, []) if hash_of(r) is None]
            body = hooks.get(builtin)
            if body is not None:
                rules.insert(0, tagged(hook_hash(builtin, body), body))
            self.kernel_builtins[builtin] = rules


# -- the shell ------------------------------------------------------------------------

def run_tool(argv: list[str], timeout: float, text: str | None = None) -> str:
    """Run ``argv`` (with ``text`` on stdin) and return its output. Every way
    it can fail — exit status, a timeout, no such program — is a KernelError,
    which the apply reports and retries; nothing else escapes."""
    what = " ".join(argv[:2])
    try:
        proc = subprocess.run(argv, input=text, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        raise KernelError(f"{what} took longer than {timeout:g}s") from None
    except OSError as exc:
        raise KernelError(f"{what} failed to start: {exc}") from None
    if proc.returncode != 0:
        raise KernelError(f"{what} failed: {proc.stderr.strip()[-2000:]}")
    return proc.stdout


def save(timeout: float = 60.0) -> str:
    return run_tool(["iptables-save"], timeout)


def start_restore(text: str) -> subprocess.Popen[bytes]:
    """Start ``iptables-restore --noflush`` on ``text`` and return at once (its
    input is a file, so the caller works on while it parses and commits);
    :func:`finish_restore` waits for it."""
    stdin = tempfile.TemporaryFile()  # noqa: SIM115 - handed to the child
    stdin.write(text.encode())
    stdin.seek(0)
    err = tempfile.TemporaryFile()  # noqa: SIM115 - closed by finish_restore
    try:
        proc = subprocess.Popen(["iptables-restore", "--noflush", "-w", "5"], stdin=stdin,
                                stdout=subprocess.DEVNULL, stderr=err)
    except OSError as exc:
        err.close()
        raise KernelError(f"iptables-restore failed to start: {exc}") from None
    finally:
        stdin.close()
    proc.stderr = err  # read back by finish_restore
    return proc


def finish_restore(proc: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    err = proc.stderr
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise KernelError(f"iptables-restore took longer than {timeout:.0f}s") from None
    finally:
        text = b""
        if err is not None:
            err.seek(0)
            text = err.read()
            err.close()
    if proc.returncode != 0:
        why = text.decode(errors="replace").strip()[-2000:]
        raise KernelError(f"iptables-restore failed: {why}")


def restore(text: str) -> None:
    finish_restore(start_restore(text))
