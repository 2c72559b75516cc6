"""A JSON document on disk, rewritten atomically on every change.

The harness pieces of a long-lived lab (``Topology``, ``EtcdServer``,
``Cluster``) each own one key of it and write their part *before* they create
a thing (a namespace's name goes in before ``ip netns add``) and right after
a process starts (its PID and start time). Whatever kills their process, the
file on disk names everything that may exist, so a later ``down`` removes it
by identity.

Owns: one file; every write is a temp file in the same directory, fsynced,
then renamed over it (a reader sees the old document or the new one, never
half of one).

A writer killed between creating its temp file and the rename leaves that
file behind; :meth:`Journal.temp_files` names such files so whoever removes
the journal removes them too.

Must never: write anywhere but its own path and the temp file beside it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


class Journal:
    def __init__(self, path: str | Path, doc: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        self.doc: dict[str, Any] = dict(doc or {})

    @classmethod
    def load(cls, path: str | Path) -> Journal:
        """The journal at ``path`` (raises FileNotFoundError / ValueError)."""
        doc = json.loads(Path(path).read_text())
        if not isinstance(doc, dict):
            raise ValueError(f"{path}: not a JSON object")
        return cls(path, doc)

    @staticmethod
    def temp_files(path: str | Path) -> list[Path]:
        """Temp files of writers of the journal at ``path`` (left by a killed one)."""
        path = Path(path)
        return sorted(path.parent.glob(f".{path.name}.tmp*"))

    def _temp(self) -> Path:
        return self.path.with_name(f".{self.path.name}.tmp{os.getpid()}")

    def get(self, key: str, default: Any = None) -> Any:
        return self.doc.get(key, default)

    def update(self, key: str, value: Any) -> None:
        """Set ``key`` and write the whole document."""
        self.doc[key] = value
        self.write()

    def write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._temp()
        with open(tmp, "w") as fh:
            json.dump(self.doc, fh, indent=1, sort_keys=True)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
