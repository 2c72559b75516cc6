"""ExaBGP's entry point as the speaker runs it: stock ExaBGP 5, run leaner.

``python -m pybgp.speaker.exabgp_main server CONFIG`` is ``exabgp server
CONFIG`` with seven changes to how ExaBGP's process does its work, none to
what it does (6 and 7, on the receive path, are in :mod:`.exabgp_receive`):

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
3. ``announce attributes <attributes> nlri <prefixes>``: ExaBGP runs its
   configuration parser over the whole line for every command, though the
   speaker repeats the same few attribute texts. The first command with an
   attribute text goes through ExaBGP's parser; later ones reuse what it
   made of the attributes and build each prefix's NLRI the way the parser
   does (``configuration/static/__init__.py``: class, AFI/SAFI and next
   hop of the template, a fresh ``CIDR``, a fresh ``Attributes`` per
   command shared by its prefixes). Lines with labels, route distinguishers,
   path information or ``split`` always take the parser.
4. ``next-hop self``: ExaBGP deep-copies a change for each neighbour, to
   give it that neighbour's address as next hop. The copy now covers the two
   objects that are changed, the NLRI (its next hop) and the attributes
   (their NEXT_HOP), and no longer everything they hold; other changes are
   deep-copied as before.

5. Each reactor turn ExaBGP tries ``accept`` on its listening sockets and
   gets EAGAIN: an exception on every turn (100 a second when idle, and one
   before each command or UPDATE it handles; ~0.1-0.25 ms of Python on a
   node whose caches went cold). The launcher asks ``select`` first and
   runs ExaBGP's own ``Listener.incoming`` only when a connection waits.

Changes 3 and 4 are ~60 % of ExaBGP's work per command (docs/benchmarks.md).
All apply only to the ExaBGP release they were checked against
(:data:`CHECKED`); any other release runs unchanged. Tests compare each with
ExaBGP's own code on the same input.

Must never: change ExaBGP's behaviour, configuration or output; import
anything of pybgp beyond this module and :mod:`.exabgp_receive` (it runs
inside ExaBGP's process).
"""

from __future__ import annotations

import importlib
import re
import select
import sys
from typing import Any

from pybgp.speaker import exabgp_receive

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
_STOCK_API_ATTRIBUTES: Any = None
_STOCK_REMOVE_SELF: Any = None
_STOCK_INCOMING: Any = None

# "announce attributes <attributes> nlri <prefix> [<prefix> …]", the form the
# speaker sends (after ExaBGP took the neighbour selector off), with none of
# the words that make the parser do more than read attributes.
_ANNOUNCE = re.compile(
    r"announce attributes (?P<attrs>(?:(?!\b(?:label|rd|route-distinguisher|"
    r"path-information|split|extended-community|nlri)\b)\S+ )+)nlri (?P<nlri>\S+(?: \S+)*)")
_TEMPLATES: dict[tuple[str, Any, Any], tuple[Any, ...]] = {}
_TEMPLATES_MAX = 64  # the speaker uses a handful of attribute texts


def api_attributes(self: Any, command: str, peers: Any) -> Any:
    """``API.api_attributes`` with the attribute text parsed once (change 3)."""
    match = _ANNOUNCE.fullmatch(command)
    if match is None:
        return _STOCK_API_ATTRIBUTES(self, command, peers)
    x = _EXABGP
    try:
        ipmasks = [x.prefix(lambda token=token: token) for token in match["nlri"].split(" ")]
    except Exception:  # noqa: BLE001 - ExaBGP's parser says what is wrong, as it would
        return _STOCK_API_ATTRIBUTES(self, command, peers)
    last = ipmasks[-1].top()  # the parser takes the family from the last prefix
    key = (match["attrs"], x.IP.toafi(last), x.IP.tosafi(last))
    template = _TEMPLATES.get(key)
    if template is None:
        changes = _STOCK_API_ATTRIBUTES(self, command, peers)
        if changes and len(_TEMPLATES) < _TEMPLATES_MAX:
            nlri = changes[0].nlri
            _TEMPLATES[key] = (type(nlri), nlri.afi, nlri.safi, nlri.nexthop,
                               changes[0].attributes.copy(), changes[0].attributes.cacheable)
        return changes
    cls, afi, safi, nexthop, values, cacheable = template
    attributes = x.Attributes()  # one per command, shared by its prefixes, as parsed
    dict.update(attributes, values)
    attributes.cacheable = cacheable
    changes = []
    for ipmask in ipmasks:
        nlri = cls(afi, safi, x.Action.UNSET)
        nlri.cidr = x.CIDR(ipmask.pack(), ipmask.mask)
        nlri.nexthop = nexthop
        changes.append(x.Change(nlri, attributes))
    return changes


def _shallow_copy(obj: Any) -> Any:
    """``copy.copy`` for ExaBGP's NLRI and Attributes classes (plain
    ``__dict__``, a dict subclass without its own ``__setitem__``), without
    the generic ``__reduce_ex__`` round trip."""
    cls: Any = type(obj)
    new = cls.__new__(cls)
    new.__dict__.update(obj.__dict__)
    if isinstance(obj, dict):
        dict.update(new, obj)
    return new


def remove_self(self: Any, changes: Any) -> Any:
    """``Neighbor.remove_self`` copying only what ``next-hop self`` changes (change 4)."""
    if not changes.nlri.nexthop.SELF:
        return _STOCK_REMOVE_SELF(self, changes)
    x = _EXABGP
    nlri = _shallow_copy(changes.nlri)
    attributes = _shallow_copy(changes.attributes)
    neighbor_self = self.ip_self(nlri.afi)
    nlri.nexthop = neighbor_self
    if x.Attribute.CODE.NEXT_HOP in attributes:
        attributes[x.Attribute.CODE.NEXT_HOP] = x.NextHop(str(neighbor_self), neighbor_self.pack())
    return x.Change(nlri, attributes)


def incoming(self: Any) -> bool:
    """``Listener.incoming`` when a connection waits; else its answer, False (change 5)."""
    if not self.serving:
        return False
    waiting = [sock for sock in self._sockets if sock not in self._accepted]
    if not waiting:
        return False
    try:
        ready, _, _ = select.select(waiting, [], [], 0)
    except (OSError, ValueError):  # a socket closed under us: ExaBGP's code decides
        return bool(_STOCK_INCOMING(self))
    return bool(ready) and bool(_STOCK_INCOMING(self))


class _Names:
    """ExaBGP's names the changes use, bound once by :func:`patch`."""

    def __init__(self) -> None:
        from exabgp.bgp.message import Action
        from exabgp.bgp.message.update.attribute import Attribute, Attributes, NextHop
        from exabgp.bgp.message.update.nlri import CIDR
        from exabgp.configuration.static.parser import prefix
        from exabgp.protocol.ip import IP
        from exabgp.rib.change import Change

        self.Action, self.Attribute, self.Attributes, self.NextHop = (
            Action, Attribute, Attributes, NextHop)
        self.CIDR, self.prefix, self.IP, self.Change = CIDR, prefix, IP, Change


_EXABGP: Any = None


def patch() -> bool:
    """Apply the changes when ExaBGP is a checked release; applied?"""
    global _STOCK_RUN, _STOCK_API_ATTRIBUTES, _STOCK_REMOVE_SELF, _STOCK_INCOMING, _EXABGP
    from exabgp.version import version

    if not version.startswith(CHECKED):
        return False
    ASYNC = import_without("exabgp.reactor.asynchronous", "asyncio").ASYNC
    from exabgp.bgp.neighbor import Neighbor
    from exabgp.reactor.api import API
    from exabgp.reactor.listener import Listener

    if ASYNC.run is run_callbacks:
        return True  # applied already: the stock methods are kept from the first time
    if not all(hasattr(ASYNC, a) for a in ("run", "_run_async", "_is_coroutine")) or not (
            hasattr(API, "api_attributes") and hasattr(Neighbor, "remove_self")
            and hasattr(Listener, "incoming")):
        return False
    _EXABGP = _Names()
    _STOCK_RUN, ASYNC.run = ASYNC.run, run_callbacks
    _STOCK_API_ATTRIBUTES, API.api_attributes = API.api_attributes, api_attributes
    _STOCK_REMOVE_SELF, Neighbor.remove_self = Neighbor.remove_self, remove_self
    _STOCK_INCOMING, Listener.incoming = Listener.incoming, incoming
    return exabgp_receive.patch()


def main() -> int:
    patch()
    from exabgp.application.main import main as exabgp_main

    sys.argv[0] = "exabgp"
    return int(exabgp_main() or 0)


if __name__ == "__main__":
    sys.exit(main())
