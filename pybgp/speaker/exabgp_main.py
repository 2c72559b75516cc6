"""ExaBGP's entry point as the speaker runs it: stock ExaBGP 5, run leaner.

``python -m pybgp.speaker.exabgp_main server CONFIG`` is ``exabgp server
CONFIG`` with two changes to how ExaBGP's process runs, none to what it does:

1. ``asyncio`` is imported on first use. ExaBGP 5.0 imports it in one module only
   (``reactor/asynchronous.py``), to drive its API callbacks, which are plain
   generators; loading it (with ``ssl``, which asyncio imports, and libssl)
   costs each ExaBGP ~9 MiB (docs/benchmarks.md). With change 2 it is never
   touched, so never loaded; if some code does touch it, it loads then.
2. Those generator callbacks are resumed directly instead of inside a fresh
   event loop (``asyncio.run``) built and torn down on every turn of
   ExaBGP's reactor that has API work — ~0.85 ms of each announcement
   (docs/benchmarks.md). A queue holding a coroutine still goes through
   ExaBGP's own code.

Both apply only to the ExaBGP release they were checked against
(:data:`CHECKED`); any other release runs unchanged.

Must never: change ExaBGP's behaviour, configuration or output; import
anything of pybgp beyond this module (it runs inside ExaBGP's process).
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

#: ExaBGP releases whose ``ASYNC`` class these changes were read against.
CHECKED = ("5.0.",)


class LoadOnUse:
    """Stands in for a module in one importer's namespace; imports the real
    module on the first attribute asked for (``importlib.util.LazyLoader``
    cannot do this on Python 3.11: ``import`` itself reads ``__spec__``)."""

    __spec__ = None

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        return getattr(importlib.import_module(self._name), attr)


def import_without(module: str, missing: str) -> Any:
    """Import ``module`` with ``missing`` bound to a :class:`LoadOnUse`."""
    if missing in sys.modules:
        return importlib.import_module(module)
    stand_in = LoadOnUse(missing)
    sys.modules[missing] = stand_in  # type: ignore[assignment]
    try:
        return importlib.import_module(module)
    finally:
        if sys.modules.get(missing) is stand_in:
            del sys.modules[missing]


def run_callbacks(self: Any) -> bool:
    """``ASYNC.run`` for generator callbacks, without an event loop.

    ``_run_async`` only awaits when a callback is a coroutine; for generators
    it runs to completion on the first ``send``, as it would under
    ``asyncio.run``, and returns the same value.
    """
    if not self._async:
        return False
    if any(self._is_coroutine(callback) for _, callback in self._async):
        return bool(_STOCK_RUN(self))
    step = self._run_async()
    try:
        step.send(None)
    except StopIteration as done:
        return bool(done.value)
    step.close()
    raise RuntimeError("ExaBGP API callback suspended outside an event loop")


_STOCK_RUN: Any = None


def patch() -> bool:
    """Apply both changes when ExaBGP is a checked release; applied?"""
    global _STOCK_RUN
    from exabgp.version import version

    if not version.startswith(CHECKED):
        return False
    ASYNC = import_without("exabgp.reactor.asynchronous", "asyncio").ASYNC

    if ASYNC.run is run_callbacks:
        return True  # applied already: the stock method is kept from the first time
    if not all(hasattr(ASYNC, a) for a in ("run", "_run_async", "_is_coroutine")):
        return False
    _STOCK_RUN = ASYNC.run
    ASYNC.run = run_callbacks
    return True


def main() -> int:
    patch()
    from exabgp.application.main import main as exabgp_main

    sys.argv[0] = "exabgp"
    return int(exabgp_main() or 0)


if __name__ == "__main__":
    sys.exit(main())
