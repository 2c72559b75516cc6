"""Interfaces, addresses and neighbours over raw netlink (for wiring pods).

The CNI plugin wires a pod with about a dozen netlink requests. pyroute2
spins an asyncio loop for each call (~2 ms apiece, measured); here each
request is a hand-packed message on one socket, sent as one batch with its
acks read back and matched by sequence number (≈ 0.1 ms apiece).

``Rtnl`` is a small synchronous request/ack helper over a NETLINK_ROUTE
socket of a given network namespace (opened through a short-lived setns
thread; a missing namespace is an error, never created). Errors carry the
kernel's errno and, where the kernel gives one, its extended-ack text.
"""

from __future__ import annotations

import errno as _errno
import os
import socket
import struct
from dataclasses import dataclass

from pybgp.kernel_sync import codec
from pybgp.kernel_sync.desired import KRoute
from pybgp.kernel_sync.netlink import open_netlink_socket

RTM_NEWADDR = 20
RTM_NEWNEIGH = 28
RTM_DELNEIGH = 29
RTM_GETNEIGH = 30
IFLA_ADDRESS = 1
IFLA_IFNAME = 3
IFLA_MTU = 4
IFLA_LINKINFO = 18
IFLA_NET_NS_FD = 28
IFLA_INFO_KIND = 1
IFLA_INFO_DATA = 2
VETH_INFO_PEER = 1
NLA_F_NESTED = 0x8000
IFA_ADDRESS = 1
IFA_LOCAL = 2
NDA_DST = 1
NDA_LLADDR = 2
NUD_PERMANENT = 0x80
IFF_UP = 0x1

_IFINFO = struct.Struct("=BxHiII")  # family, type, index, flags, change
_IFADDR = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
_NDMSG = struct.Struct("=BxxxiHBB")  # family, ifindex, state, flags, type
_HDR = struct.Struct("=IHHII")
_U32 = struct.Struct("=I")

REQ = codec.NLM_F_REQUEST | codec.NLM_F_ACK
CREATE = REQ | codec.NLM_F_CREATE | codec.NLM_F_EXCL
REPLACE = REQ | codec.NLM_F_CREATE | codec.NLM_F_REPLACE


class NetlinkError(OSError):
    def __init__(self, err: int, what: str, text: str = ""):
        detail = f"{os.strerror(err)}" + (f" ({text})" if text else "")
        super().__init__(err, f"{what}: {detail}")
        self.what = what


def _rta(kind: int, payload: bytes) -> bytes:
    n = 4 + len(payload)
    return struct.pack("=HH", n, kind) + payload + b"\0" * (((n + 3) & ~3) - n)


def _name(name: str) -> bytes:
    return name.encode() + b"\0"


def _mac(text: str) -> bytes:
    return bytes(int(part, 16) for part in text.split(":"))


def _msg(kind: int, flags: int, body: bytes) -> tuple[int, int, bytes]:
    return kind, flags, body


# -- message bodies (no header: ``Rtnl.call`` adds it with the sequence) -----------

def veth(name: str, peer: str, peer_netns_fd: int, mtu: int,
         mac: str | None = None) -> tuple[int, int, bytes]:
    """A veth pair ``name`` (here) ⇄ ``peer`` (created directly in the peer's namespace)."""
    peer_body = (_IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + _rta(IFLA_IFNAME, _name(peer))
                 + _rta(IFLA_MTU, _U32.pack(mtu)) + _rta(IFLA_NET_NS_FD, _U32.pack(peer_netns_fd)))
    info = _rta(IFLA_INFO_KIND, b"veth") + _rta(
        IFLA_INFO_DATA | NLA_F_NESTED, _rta(VETH_INFO_PEER | NLA_F_NESTED, peer_body))
    body = (_IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + _rta(IFLA_IFNAME, _name(name))
            + _rta(IFLA_MTU, _U32.pack(mtu)) + _rta(IFLA_LINKINFO | NLA_F_NESTED, info))
    if mac:
        body += _rta(IFLA_ADDRESS, _mac(mac))
    return _msg(codec.RTM_NEWLINK, CREATE, body)


def link_up(index: int) -> tuple[int, int, bytes]:
    return _msg(codec.RTM_NEWLINK, REQ, _IFINFO.pack(socket.AF_UNSPEC, 0, index, IFF_UP, IFF_UP))


def link_del(index: int) -> tuple[int, int, bytes]:
    return _msg(codec.RTM_DELLINK, REQ, _IFINFO.pack(socket.AF_UNSPEC, 0, index, 0, 0))


def address(index: int, ip: str, prefixlen: int) -> tuple[int, int, bytes]:
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    raw = socket.inet_pton(family, ip)
    body = (_IFADDR.pack(family, prefixlen, 0, 0, index)
            + _rta(IFA_LOCAL, raw) + _rta(IFA_ADDRESS, raw))
    return _msg(RTM_NEWADDR, CREATE, body)


def neighbour(index: int, ip: str, lladdr: str) -> tuple[int, int, bytes]:
    """A PERMANENT neighbour entry (replaces any existing one)."""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    body = (_NDMSG.pack(family, index, NUD_PERMANENT, 0, 0)
            + _rta(NDA_DST, socket.inet_pton(family, ip)) + _rta(NDA_LLADDR, _mac(lladdr)))
    return _msg(RTM_NEWNEIGH, REPLACE, body)


def neighbour_del(index: int, ip: str) -> tuple[int, int, bytes]:
    """Delete the neighbour entry for ``ip`` on interface ``index``."""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    body = (_NDMSG.pack(family, index, 0, 0, 0)
            + _rta(NDA_DST, socket.inet_pton(family, ip)))
    return _msg(RTM_DELNEIGH, REQ, body)


@dataclass(frozen=True, slots=True)
class Neighbour:
    index: int
    ip: str
    lladdr: str  # "" when the entry has none
    state: int  # NUD_* bits

    @property
    def permanent(self) -> bool:
        return bool(self.state & NUD_PERMANENT)


def parse_neighbour(msg: codec.Message) -> Neighbour | None:
    family, index, state, _flags, _type = _NDMSG.unpack_from(msg.data, codec.HDR_LEN)
    attrs = codec.parse_attrs(msg.data, codec.HDR_LEN + _NDMSG.size)
    dst = attrs.get(NDA_DST)
    if dst is None or family not in (socket.AF_INET, socket.AF_INET6):
        return None
    lladdr = ":".join(f"{b:02x}" for b in attrs.get(NDA_LLADDR, b""))
    return Neighbour(index, socket.inet_ntop(family, dst), lladdr, state)


def route(op: str, r: KRoute) -> tuple[int, int, bytes]:
    """A route request (``add``/``replace``/``delete``), devices given as ifindexes."""
    raw = codec.encode_route(op, r, 0, lambda dev: int(dev))
    kind, flags = struct.unpack_from("=HH", raw, 4)
    return _msg(kind, flags, raw[codec.HDR_LEN:])


class Rtnl:
    """One NETLINK_ROUTE socket in ``netns`` (a path; None: this namespace)."""

    def __init__(self, netns: str | None = None):
        self.sock = open_netlink_socket(netns, bufsize=1 << 20)
        self._seq = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, *requests: tuple[str, tuple[int, int, bytes]],
             ok: tuple[int, ...] = ()) -> list[codec.Message]:
        """Send ``(what, message)`` requests in one batch; raise on the first failure.

        Replies other than acks (to a GET) are returned. Errnos in ``ok`` are
        accepted as success (e.g. ENODEV when deleting what is gone).
        """
        batch, names = [], {}
        for what, (kind, flags, body) in requests:
            self._seq += 1
            names[self._seq] = what
            batch.append(_HDR.pack(codec.HDR_LEN + len(body), kind, flags, self._seq, 0) + body)
        self.sock.sendall(b"".join(batch))
        pending, replies, failure = set(names), [], None
        while pending:
            data = self.sock.recv(1 << 16)
            for msg in codec.iter_messages(data):
                if msg.type == codec.NLMSG_ERROR:
                    ack = codec.parse_ack(msg)
                    pending.discard(ack.seq)
                    if ack.error and ack.error not in ok and failure is None:
                        failure = NetlinkError(ack.error, names.get(ack.seq, "netlink"), ack.text)
                elif msg.seq in names:
                    replies.append(msg)
                    if not msg.flags & codec.NLM_F_MULTI:
                        pending.discard(msg.seq)
        if failure is not None:
            raise failure
        return replies

    def link(self, name: str) -> tuple[int, str] | None:
        """(ifindex, MAC) of the interface ``name``, or None if there is none."""
        body = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + _rta(IFLA_IFNAME, _name(name))
        try:
            replies = self.call((f"look up {name}",
                                 (codec.RTM_GETLINK, codec.NLM_F_REQUEST, body)))
        except NetlinkError as exc:
            if exc.errno == _errno.ENODEV:
                return None
            raise
        for msg in replies:
            link = codec.parse_link(msg)
            attrs = codec.parse_attrs(msg.data, codec.HDR_LEN + _IFINFO.size)
            mac = ":".join(f"{b:02x}" for b in attrs.get(IFLA_ADDRESS, b""))
            return link.index, mac
        return None

    def neighbours(self) -> list[Neighbour]:
        """Every neighbour entry of the namespace (IPv4 and IPv6), one dump."""
        self._seq += 1
        seq = self._seq
        body = _NDMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
        self.sock.sendall(_HDR.pack(codec.HDR_LEN + len(body), RTM_GETNEIGH,
                                    codec.NLM_F_REQUEST | codec.NLM_F_DUMP, seq, 0) + body)
        out: list[Neighbour] = []
        while True:
            for msg in codec.iter_messages(self.sock.recv(1 << 16)):
                if msg.seq != seq:
                    continue
                if msg.type == codec.NLMSG_DONE:
                    return out
                if msg.type == codec.NLMSG_ERROR:
                    ack = codec.parse_ack(msg)
                    if ack.error:
                        raise NetlinkError(ack.error, "dump neighbours", ack.text)
                    return out
                if msg.type == RTM_NEWNEIGH:
                    neigh = parse_neighbour(msg)
                    if neigh is not None:
                        out.append(neigh)

    def links(self) -> dict[str, tuple[int, str, bool]]:
        """Every interface of the namespace: name → (ifindex, MAC, up)."""
        self._seq += 1
        seq = self._seq
        self.sock.sendall(codec.encode_link_dump(seq))
        out: dict[str, tuple[int, str, bool]] = {}
        while True:
            for msg in codec.iter_messages(self.sock.recv(1 << 16)):
                if msg.seq != seq:
                    continue
                if msg.type in (codec.NLMSG_DONE, codec.NLMSG_ERROR):
                    return out
                if msg.type == codec.RTM_NEWLINK:
                    link = codec.parse_link(msg)
                    attrs = codec.parse_attrs(msg.data, codec.HDR_LEN + _IFINFO.size)
                    mac = ":".join(f"{b:02x}" for b in attrs.get(IFLA_ADDRESS, b""))
                    out[link.name] = (link.index, mac, bool(link.flags & IFF_UP))
