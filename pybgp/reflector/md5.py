"""TCP-MD5 signatures (RFC 2385) on Linux sockets: ``setsockopt(TCP_MD5SIG)``.

A key is set per peer address on the socket that connects to it, and on
the listening socket for every peer (or, with ``TCP_MD5SIG_EXT``, every
address of a range) that may connect; the kernel then signs and checks
every segment, and drops an unsigned or wrongly signed SYN before we see a
connection. ``struct tcp_md5sig`` (linux/tcp.h): a 128-byte sockaddr, flags,
prefix length, key length, interface index, an 80-byte key.

Must never: log or keep the password beyond the call.
"""

from __future__ import annotations

import ipaddress
import socket
import struct

TCP_MD5SIG = 14
TCP_MD5SIG_EXT = 32
TCP_MD5SIG_FLAG_PREFIX = 1
MAX_KEY = 80


def _sockaddr(address: str) -> bytes:
    ip = ipaddress.ip_address(address)
    if ip.version == 4:
        raw = struct.pack("=H", socket.AF_INET) + b"\x00\x00" + ip.packed
    else:
        raw = struct.pack("=H", socket.AF_INET6) + b"\x00\x00" + b"\x00" * 4 + ip.packed
    return raw.ljust(128, b"\x00")


def md5sig(address: str, key: str, prefixlen: int | None = None) -> bytes:
    """The ``struct tcp_md5sig`` for ``address`` (a range with ``prefixlen``);
    an empty ``key`` removes it."""
    raw = key.encode()
    if len(raw) > MAX_KEY:
        raise ValueError("a TCP-MD5 key is at most 80 bytes")
    flags = TCP_MD5SIG_FLAG_PREFIX if prefixlen is not None else 0
    return (_sockaddr(address) + struct.pack("=BBHi", flags, prefixlen or 0, len(raw), 0)
            + raw.ljust(MAX_KEY, b"\x00"))


def set_key(sock: socket.socket, address: str, key: str | None,
            prefixlen: int | None = None) -> None:
    """Sign segments to and from ``address`` (or the range) with ``key``
    (None or '': stop signing)."""
    opt = TCP_MD5SIG_EXT if prefixlen is not None else TCP_MD5SIG
    sock.setsockopt(socket.IPPROTO_TCP, opt, md5sig(address, key or "", prefixlen))
