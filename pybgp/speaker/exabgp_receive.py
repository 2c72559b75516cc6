"""ExaBGP's receive path, run leaner: changes 6 and 7 of ``exabgp_main``.

A peer sending a full table sends UPDATEs of hundreds of IPv4 /32s each.
ExaBGP 5.0 reads each prefix through four calls that build and throw away
two ``Family`` objects, look its class up by a formatted string and make a
debug closure twice, then turns each back into JSON through three more
(docs/benchmarks.md: 6.7 + 2.7 µs a prefix, ExaBGP the slowest stage of
``fib_learn``).

6. ``Update.unpack_message``: the IPv4 unicast prefixes of the UPDATE's own
   NLRI fields (not ADD-PATH ones) are read in one loop into the same
   ``INET`` objects ExaBGP's parser makes, in the same order. Anything the
   loop does not take as well formed — a mask over 32, a prefix cut short —
   and everything after it goes through ExaBGP's parser, which says what is
   wrong as it would. The rest of the message (attributes, MP_REACH /
   MP_UNREACH, End-of-RIB) is ExaBGP's code, copied with its debug lines
   left out: the change applies only while ExaBGP's ``parser`` and
   ``routes`` debug logging are off, and its own code runs when they are on.
7. ``JSON._update``: prefixes grouped by family and next hop, and each
   written as ``INET.json`` writes it, without a ``Family`` per prefix or
   the next hop's text made again per prefix. An UPDATE holding any NLRI
   other than a plain ``INET`` (labels, route distinguishers, ADD-PATH
   identifiers, other families' classes) takes ExaBGP's own code.

Tests compare both with ExaBGP's code on the same messages. Must never
change what ExaBGP reads or writes; imports nothing of pybgp.
"""

from __future__ import annotations

from typing import Any

_STOCK_UNPACK: Any = None
_STOCK_JSON_UPDATE: Any = None
_X: Any = None  # ExaBGP's names, bound by patch()


class _Names:
    def __init__(self) -> None:
        from exabgp.bgp.message import Action
        from exabgp.bgp.message.direction import Direction
        from exabgp.bgp.message.update import (
            EOR,
            EOR_IPV4_UNICAST_LENGTH,
            EOR_WITH_PREFIX_LENGTH,
            Update,
        )
        from exabgp.bgp.message.update.attribute import MPRNLRI, MPURNLRI, Attribute, Attributes
        from exabgp.bgp.message.update.nlri import NLRI
        from exabgp.bgp.message.update.nlri.cidr import CIDR
        from exabgp.bgp.message.update.nlri.inet import INET
        from exabgp.bgp.message.update.nlri.qualifier import PathInfo
        from exabgp.logger.option import option
        from exabgp.protocol.family import AFI, SAFI
        from exabgp.protocol.ip import NoNextHop

        self.Action, self.Direction, self.EOR, self.Update = Action, Direction, EOR, Update
        self.Attribute, self.Attributes, self.MPRNLRI, self.MPURNLRI = (
            Attribute, Attributes, MPRNLRI, MPURNLRI)
        self.NLRI, self.CIDR, self.INET, self.NOPATH = NLRI, CIDR, INET, PathInfo.NOPATH
        self.option, self.NoNextHop = option, NoNextHop
        # what INET(AFI.ipv4, SAFI.unicast) holds: AFI.create / SAFI.create's objects
        self.IPV4, self.UNICAST = AFI.create(AFI.ipv4), SAFI.create(SAFI.unicast)
        self.NEXT_HOP = Attribute.CODE.NEXT_HOP
        # the End-of-RIB bodies ExaBGP tells apart by their length first
        self.EOR_LENGTHS = (EOR_IPV4_UNICAST_LENGTH, EOR_WITH_PREFIX_LENGTH)


def _stock_nlris(data: Any, action: Any, addpath: Any, nexthop: Any) -> list[Any]:
    """What ``Update.unpack_message``'s own loop makes of an NLRI field."""
    x = _X
    nlris = []
    while data:
        nlri, data = x.NLRI.unpack_nlri(x.IPV4, x.UNICAST, data, action, addpath)
        if nexthop is not None:
            nlri.nexthop = nexthop
        nlris.append(nlri)
    return nlris


def _ipv4_nlris(data: bytes, action: Any, addpath: Any, nexthop: Any) -> list[Any]:
    """The IPv4 unicast NLRI field ``data`` as ExaBGP's parser reads it
    (``nexthop`` None: left as the parser leaves it, for withdrawals)."""
    x = _X
    if addpath or x.NLRI.registered_nlri.get("ipv4/unicast") is not x.INET:
        return _stock_nlris(data, action, addpath, nexthop)
    cls, cidr_cls, new = x.INET, x.CIDR, object.__new__
    afi, safi, nopath = x.IPV4, x.UNICAST, x.NOPATH
    hop = x.NoNextHop if nexthop is None else nexthop
    nlris: list[Any] = []
    end = len(data)
    pos = 0
    while pos < end:
        mask = data[pos]
        size = (mask + 7) >> 3
        if mask > 32 or pos + 1 + size > end:  # ExaBGP's parser raises what it raises
            return nlris + _stock_nlris(data[pos:], action, addpath, nexthop)
        nlri = new(cls)
        nlri.__dict__.update(afi=afi, safi=safi, action=action, path_info=nopath,
                             cidr=cidr_cls(data[pos + 1:pos + 1 + size] + bytes(4 - size), mask),
                             nexthop=hop)
        nlris.append(nlri)
        pos += 1 + size
    return nlris


def _debugging() -> bool:
    log_enabled = _X.option.log_enabled
    return bool(log_enabled("parser", "DEBUG") or log_enabled("routes", "DEBUG"))


def unpack_message(cls: Any, data: bytes, direction: Any, negotiated: Any) -> Any:
    """``Update.unpack_message`` with the IPv4 prefixes read in one loop (change 6)."""
    x = _X
    if _debugging() or len(data) in x.EOR_LENGTHS:
        return _STOCK_UNPACK(data, direction, negotiated)
    withdrawn, packed_attributes, announced = cls.split(data)
    attributes = x.Attributes.unpack(packed_attributes, direction, negotiated)
    if direction == x.Direction.IN:
        addpath = negotiated.addpath.receive(x.IPV4, x.UNICAST)
    else:
        addpath = negotiated.addpath.send(x.IPV4, x.UNICAST)
    nexthop = attributes.get(x.NEXT_HOP, x.NoNextHop)
    nlris = _ipv4_nlris(withdrawn, x.Action.WITHDRAW, addpath, None)
    nlris += _ipv4_nlris(announced, x.Action.ANNOUNCE, addpath, nexthop)

    unreach = attributes.pop(x.MPURNLRI.ID, None)
    reach = attributes.pop(x.MPRNLRI.ID, None)
    if unreach is not None:
        nlris.extend(unreach.nlris)
    if reach is not None:
        nlris.extend(reach.nlris)
    if not attributes and not nlris:
        if unreach is None and reach is None:
            return x.EOR(x.IPV4, x.UNICAST)
        if unreach is not None:
            return x.EOR(unreach.afi, unreach.safi)
        return x.EOR(reach.afi, reach.safi)
    return x.Update(nlris, attributes)


def json_update(self: Any, update: Any) -> Any:
    """``JSON._update`` writing plain ``INET`` prefixes directly (change 7)."""
    x = _X
    inet, nopath, cidr_cls = x.INET, x.NOPATH, x.CIDR
    nlris = update.nlris
    if not nlris:
        return _STOCK_JSON_UPDATE(self, update)
    announce, withdraw = x.Action.ANNOUNCE, x.Action.WITHDRAW
    plus: dict[Any, dict[str, list[str]]] = {}
    minus: dict[Any, list[str]] = {}
    hops: dict[int, str] = {}
    compact = self.compact
    for nlri in nlris:
        if type(nlri) is not inet or nlri.path_info is not nopath:
            return _STOCK_JSON_UPDATE(self, update)
        cidr = nlri.cidr
        if type(cidr) is not cidr_cls:
            return _STOCK_JSON_UPDATE(self, update)
        prefix = f"{cidr.top()}/{cidr.mask}"
        text = f'"{prefix}"' if compact else f'{{ "nlri": "{prefix}" }}'
        action = nlri.action
        if action == announce:
            hop = nlri.nexthop
            nexthop = hops.get(id(hop))
            if nexthop is None:
                try:
                    nexthop = str(hop)
                except Exception:  # noqa: BLE001 - as ExaBGP writes it
                    nexthop = "null"
                hops[id(hop)] = nexthop
            plus.setdefault((nlri.afi, nlri.safi), {}).setdefault(nexthop, []).append(text)
        if action == withdraw:
            minus.setdefault((nlri.afi, nlri.safi), []).append(text)
    add = []
    for (afi, safi), by_hop in plus.items():
        inner = ", ".join(f'"{hop}": [ {", ".join(texts)} ]' for hop, texts in by_hop.items())
        add.append(f'"{afi} {safi}": {{ {inner} }}')
    remove = [f'"{afi} {safi}": [ {", ".join(texts)} ]' for (afi, safi), texts in minus.items()]
    if not add and not remove:
        return _STOCK_JSON_UPDATE(self, update)
    parts = []
    if add:
        parts.append(f'"announce": {{ {", ".join(add)} }}')
    if remove:
        parts.append(f'"withdraw": {{ {", ".join(remove)} }}')
    nlri_text = ", ".join(parts)
    if update.attributes:
        body = f'"update": {{ "attribute": {{ {update.attributes.json()} }}, {nlri_text} }}'
    else:
        body = f'"update": {{ {nlri_text} }}'
    return {"message": self._json(f"{{ {body} }}")}


def patch() -> bool:
    """Apply changes 6 and 7 (``exabgp_main.patch`` checked the release)."""
    global _STOCK_UNPACK, _STOCK_JSON_UPDATE, _X
    from exabgp.bgp.message.update import Update
    from exabgp.reactor.api.response.json import JSON

    if _STOCK_UNPACK is not None:
        return True
    if not (hasattr(Update, "split") and hasattr(JSON, "_update") and hasattr(JSON, "_json")):
        return False
    _X = _Names()
    _STOCK_UNPACK = Update.unpack_message  # bound to Update: called with the body only
    _STOCK_JSON_UPDATE = JSON._update
    Update.unpack_message = classmethod(unpack_message)
    JSON._update = json_update
    return True
