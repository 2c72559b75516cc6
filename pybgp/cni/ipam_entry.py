"""``pybgp-ipam``: Calico-semantics IPAM as a stand-alone CNI IPAM plugin.

Runs ``pybgp.cni.ipam_plugin.handle`` in this process (no daemon hand-off:
the daemon answers main-plugin requests only). ``pybgp-cni`` with
``ipam.type`` ``pybgp-ipam``/``calico-ipam`` calls the same function
in-process instead of executing this file. Output: the CNI result or error
JSON on stdout; logs on stderr; never a traceback on stdout.
"""

from __future__ import annotations

import sys
from typing import Any

from pybgp.cni import spec
from pybgp.cni.entry import run


def _ipam(req: spec.Request) -> dict[str, Any] | None:
    from pybgp.cni.ipam_plugin import handle

    return handle(req)


def main() -> int:
    return run(_ipam)


if __name__ == "__main__":
    sys.exit(main())
