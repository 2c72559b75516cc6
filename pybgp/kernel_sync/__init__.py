"""Kernel route programming and watching for pybgp (BIRD's kernel protocol role).

Layers, imports pointing down only:

- :mod:`.desired` — pure values and the desired-vs-actual diff;
- :mod:`.codec` — pure rtnetlink encoding/decoding;
- :mod:`.netlink` — the socket shell (:class:`RouteWriter`);
- :mod:`.sync` — :class:`KernelSync`, what a daemon holds;
- :mod:`.monitor` — :class:`RouteMonitor`, the event-driven ``cali*`` route watch.

This package never imports the speaker, the agent or the CNI plugin, and
never imports pyroute2 (it speaks netlink itself, for speed and start-up time).
"""

from .desired import (
    DEFAULT_PROTOCOL,
    RT_TABLE_MAIN,
    RTPROT_BIRD,
    RTPROT_FELIX,
    KRoute,
    NextHop,
    Plan,
    blackhole,
    diff,
    via,
)
from .monitor import RouteEvent, RouteMonitor
from .netlink import ApplyResult, RouteError, RouteWriter
from .sync import KernelSync

__all__ = [
    "DEFAULT_PROTOCOL",
    "RTPROT_BIRD",
    "RTPROT_FELIX",
    "RT_TABLE_MAIN",
    "ApplyResult",
    "KRoute",
    "KernelSync",
    "NextHop",
    "Plan",
    "RouteError",
    "RouteEvent",
    "RouteMonitor",
    "RouteWriter",
    "blackhole",
    "diff",
    "via",
]
