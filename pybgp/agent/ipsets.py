"""ipsets, Felix's way: one ``ipset restore`` for the additions, one for removals.

Pure part (:class:`IpsetSync`, :func:`parse_save`): the agent owns the sets
whose names start with ``cali40`` (and ``cali4t``, its temporary sets). A
new set is created and filled; a set whose members differ gets the missing
members added and the extra ones deleted; a set whose type differs is
rebuilt under a temporary name and swapped in, so a rule never sees it
empty. Sets nobody wants are destroyed in a *second* restore, which the
caller runs only after iptables stopped referencing them.

Shell part: ``ipset save`` / ``ipset restore -exist`` subprocesses.

Must never: touch a set without the ``cali40``/``cali4t`` prefix, or destroy a
set before the iptables transaction that stops using it has committed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pybgp.agent.iptables import run_tool

OWNED = ("cali40", "cali4t")
MAXELEM = 1048576


@dataclass(frozen=True)
class KernelSet:
    kind: str
    members: frozenset[str]


def temp_name(name: str) -> str:
    return "cali4t" + name[len("cali40"):]


def parse_save(text: str) -> dict[str, KernelSet]:
    kinds: dict[str, str] = {}
    members: dict[str, set[str]] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 3 or not parts[1].startswith(OWNED):
            continue
        if parts[0] == "create":
            kinds[parts[1]] = parts[2]
            members.setdefault(parts[1], set())
        elif parts[0] == "add":
            members.setdefault(parts[1], set()).add(parts[2])
    return {name: KernelSet(kinds.get(name, "?"), frozenset(m)) for name, m in members.items()}


def _create(name: str, kind: str) -> str:
    return f"create {name} {kind} family inet maxelem {MAXELEM}"


class IpsetSync:
    def __init__(self) -> None:
        self.kernel: dict[str, KernelSet] = {}
        self.known = False

    def load(self, sets: dict[str, KernelSet]) -> None:
        self.kernel = dict(sets)
        self.known = True

    def plan_adds(self, desired: Mapping[str, KernelSet]) -> str:
        """Restore text that makes every desired set right (no destroys of
        unwanted sets: :meth:`plan_removals`)."""
        assert self.known, "load() the kernel's sets first"
        lines: list[str] = []
        for name, want in desired.items():
            have = self.kernel.get(name)
            if have is None or have.kind != want.kind:
                target = name if have is None else temp_name(name)
                lines.append(_create(target, want.kind))
                lines += [f"add {target} {m}" for m in sorted(want.members)]
                if have is not None:
                    lines += [f"swap {target} {name}", f"destroy {target}"]
                continue
            if have.members == want.members:
                continue
            lines += [f"add {name} {m}" for m in sorted(want.members - have.members)]
            lines += [f"del {name} {m}" for m in sorted(have.members - want.members)]
        return "\n".join(lines) + "\n" if lines else ""

    def plan_removals(self, desired: Mapping[str, KernelSet]) -> str:
        lines = [f"destroy {name}" for name in sorted(self.kernel) if name not in desired]
        return "\n".join(lines) + "\n" if lines else ""

    def added(self, desired: Mapping[str, KernelSet]) -> None:
        for name, want in desired.items():
            self.kernel[name] = want

    def removed(self, desired: Mapping[str, KernelSet]) -> None:
        self.kernel = {n: s for n, s in self.kernel.items() if n in desired}


# -- the shell --------------------------------------------------------------------------

def save(timeout: float = 60.0) -> str:
    return run_tool(["ipset", "save"], timeout)


def restore(text: str, timeout: float = 120.0) -> None:
    run_tool(["ipset", "restore", "-exist"], timeout, text)
