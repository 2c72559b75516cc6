"""RFC 4456 route reflection rules, pure: whom a best path goes to and how.

Shared by ``pybgp reflector`` and by the speaker on a node that acts as a
route reflector (Calico's ``routeReflectorClusterID``), so both reflect
alike. The loop checks at import (our router id as ORIGINATOR_ID, our
cluster id in CLUSTER_LIST) and the RFC 4456 §9 tie-breakers of the
decision process live with the decision process in ``rib``.

- A route from a client goes to every client and every non-client; a route
  from a non-client goes to clients only; a route we originate goes to
  everyone (RFC 4456 §6). Never back to the peer it came from.
- Reflecting sets ORIGINATOR_ID to the router id of the peer the route came
  from when it has none, and prepends our cluster id to CLUSTER_LIST (§8).
  Every other attribute, the next hop included, is left as it came.

Must never: do I/O or know about sessions, encodings or ExaBGP.
"""

from __future__ import annotations

import enum


class Role(enum.Enum):
    """Where a path came from, or where it would go, as RFC 4456 sees it."""

    CLIENT = "client"
    NON_CLIENT = "non-client"
    LOCAL = "local"  # originated here (the node speaker's own blocks)


def reflects(source: Role, target: Role) -> bool:
    """Does a best path learned from a ``source`` peer go to a ``target`` peer
    (the two being different peers)? RFC 4456 §6."""
    if target is Role.LOCAL:
        return False
    if source is Role.NON_CLIENT:
        return target is Role.CLIENT
    return True


def send_to(source: Role, source_peer: str, target: Role, target_peer: str) -> bool:
    """``reflects``, and never back to the peer the path came from."""
    return source_peer != target_peer and reflects(source, target)


def reflected(originator_id: str | None, cluster_list: tuple[str, ...],
              source_router_id: str, cluster_id: str) -> tuple[str, tuple[str, ...]]:
    """(ORIGINATOR_ID, CLUSTER_LIST) of a reflected path (RFC 4456 §8)."""
    return originator_id or source_router_id, (cluster_id, *cluster_list)
