"""``pybgp-ipam``: Calico-semantics IPAM as a stand-alone CNI IPAM plugin.

Runs ``pybgp.cni.ipam_plugin.handle`` in this process (no daemon hand-off:
the daemon answers main-plugin requests only). ``pybgp-cni`` with
``ipam.type`` ``pybgp-ipam``/``calico-ipam`` calls the same function
in-process instead of executing this file. Output: the CNI result or error
JSON on stdout; logs on stderr; never a traceback on stdout.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from typing import Any

from pybgp.cni import spec


def run(env: Mapping[str, str], stdin: bytes) -> tuple[int, dict[str, Any] | None]:
    version = spec.LATEST
    try:
        req = spec.parse_request(env, stdin)
        version = req.version
        if req.command == "VERSION":
            return 0, spec.version_reply(req)
        from pybgp.cni.ipam_plugin import handle

        return 0, handle(req)
    except spec.CNIError as exc:
        from pybgp.cni.entry import _stdin_version

        return 1, exc.to_json(version if version != spec.LATEST else _stdin_version(stdin))


def main() -> int:
    stdin = sys.stdin.buffer.read() if not sys.stdin.isatty() else b""
    try:
        status, out = run(os.environ, stdin)
    except Exception as exc:  # the runtime must get JSON, not a traceback
        import traceback

        traceback.print_exc(file=sys.stderr)
        status, out = 1, spec.CNIError(spec.INTERNAL, f"internal error: {exc}").to_json(spec.LATEST)
    if out is not None:
        sys.stdout.write(json.dumps(out) + "\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
