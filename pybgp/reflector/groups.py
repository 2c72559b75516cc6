"""Update groups and the outbox of every connection, pure (FRR's idea).

Peers with the same outbound view — role (client or not), 4-octet AS,
families — form a ``Group``. What the group must send is encoded once, as
a ``Chunk`` appended to the group's log: one ``bytes`` object written to
every member, except the few members a chunk names specially (the peer a
path came from never gets it back; the peer whose path became best gets a
withdrawal of what it had from us), which get a bytes object of their own.
A member is a position in the log: nothing per member per route is kept,
and a member that is slow to read simply lags behind in the shared log.

Each connection has an ``Outbox``: its own messages (OPEN, KEEPALIVE,
NOTIFICATION, its initial table, End-of-RIB) and, once Established and in a
group, its cursor in the group's log. An own message queued with ``after``
= a log position goes out once the member has read the log that far, so an
End-of-RIB or a refreshed table follows the updates queued before it.
``buffers()`` lists what to write next, in order, without copying;
``advance(n)`` consumes what the socket took.

The log keeps what its slowest member has not read; ``log_bytes`` lets the
reflector reset a member that holds back too much (Cease, out of resources).

Must never: do I/O, copy a chunk per member, or reorder a member's bytes.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable
from dataclasses import dataclass

from pybgp.reflector.wire import Family
from pybgp.speaker.rr import Role


@dataclass(frozen=True)
class GroupKey:
    role: Role
    asn4: bool
    families: tuple[Family, ...]


class Chunk:
    """One batch of UPDATEs for a group, encoded once."""

    __slots__ = ("seq", "common", "special")

    def __init__(self, seq: int, common: bytes, special: dict[str, bytes]):
        self.seq, self.common, self.special = seq, common, special

    def data_for(self, peer: str) -> bytes:
        data = self.special.get(peer)
        return self.common if data is None else data

    @property
    def size(self) -> int:
        return len(self.common) + sum(len(d) for d in self.special.values())


#: A message for a group: bytes, the member that must not get it (the
#: path's own peer) and the only member that gets it (or None: everyone).
Message = tuple[bytes, str | None, str | None]


class Group:
    def __init__(self, key: GroupKey):
        self.key = key
        self.members: dict[str, Outbox] = {}
        self.log: collections.deque[Chunk] = collections.deque()
        self.next_seq = 0
        self.log_bytes = 0
        self.encoded = 0  # UPDATE messages encoded for this group (not per member)

    def join(self, box: Outbox) -> None:
        self.members[box.peer] = box
        box.group, box.cursor = self, self.next_seq

    def leave(self, box: Outbox) -> None:
        if self.members.get(box.peer) is box:
            del self.members[box.peer]
        box.group = None
        self.trim()

    def publish(self, messages: Iterable[Message]) -> Chunk | None:
        """Append one chunk holding ``messages``, in order."""
        msgs = list(messages)
        if not msgs:
            return None
        self.encoded += len(msgs)
        named = {p for _, skip, only in msgs for p in (skip, only) if p is not None}
        common = b"".join(m for m, _skip, only in msgs if only is None)
        special = {}
        for peer in named:
            if peer in self.members:
                special[peer] = b"".join(m for m, skip, only in msgs
                                         if (only == peer) or (only is None and skip != peer))
        chunk = Chunk(self.next_seq, common, special)
        self.next_seq += 1
        if not self.members:
            return chunk  # nobody to read it
        self.log.append(chunk)
        self.log_bytes += chunk.size
        return chunk

    def trim(self) -> None:
        """Forget the chunks every member has read."""
        if not self.members:
            self.log.clear()
            self.log_bytes = 0
            return
        low = min(b.cursor for b in self.members.values())
        log = self.log
        while log and log[0].seq < low:
            self.log_bytes -= log.popleft().size

    def chunk(self, seq: int) -> Chunk | None:
        if not self.log or seq < self.log[0].seq or seq >= self.next_seq:
            return None
        return self.log[seq - self.log[0].seq]

    def laggard(self) -> Outbox | None:
        """The member furthest behind (the one holding the log back)."""
        if not self.members:
            return None
        for box in self.members.values():
            box.skip_empty()
        return min(self.members.values(), key=lambda b: b.cursor)


class Outbox:
    """What one connection still has to write, in order."""

    __slots__ = ("peer", "own", "group", "cursor", "partial", "closing", "written")

    def __init__(self, peer: str):
        self.peer = peer
        self.own: collections.deque[tuple[int, bytes]] = collections.deque()  # (after, data)
        self.group: Group | None = None
        self.cursor = 0
        self.partial: memoryview | None = None
        self.closing = False  # close once everything queued is written
        self.written = 0

    def send(self, data: bytes, *, after: int | None = None) -> None:
        """Queue an own message; with ``after``, behind the group's log up to there."""
        if data:
            self.own.append((-1 if after is None else after, data))

    def send_after_log(self, data: bytes) -> None:
        """Queue behind everything the group has queued for this member so far."""
        self.send(data, after=self.group.next_seq if self.group is not None else None)

    def drop_own(self) -> None:
        self.own.clear()

    @property
    def idle(self) -> bool:
        return not self.buffers(1)

    def buffers(self, limit: int = 64) -> list[bytes | memoryview]:
        """The next buffers to write (at most ``limit``), in order."""
        self.skip_empty()
        out: list[bytes | memoryview] = []
        if self.partial is not None:
            out.append(self.partial)
        own = list(self.own)
        i = 0
        seq = self.cursor
        group = self.group
        head = group.next_seq if group is not None else seq
        while len(out) < limit:
            if i < len(own) and (group is None or own[i][0] <= seq):
                out.append(own[i][1])
                i += 1
                continue
            if group is not None and seq < head:
                chunk = group.chunk(seq)
                seq += 1
                if chunk is not None:
                    data = chunk.data_for(self.peer)
                    if data:
                        out.append(data)
                continue
            break
        return out

    def advance(self, n: int) -> None:
        """``n`` bytes of ``buffers()`` were written."""
        self.written += n
        if self.partial is not None:
            if n < len(self.partial):
                self.partial = self.partial[n:]
                return
            n -= len(self.partial)
            self.partial = None
        group = self.group
        while n > 0:
            if self.own and (group is None or self.own[0][0] <= self.cursor):
                data = self.own.popleft()[1]
            elif group is not None and self.cursor < group.next_seq:
                chunk = group.chunk(self.cursor)
                self.cursor += 1
                data = chunk.data_for(self.peer) if chunk is not None else b""
            else:
                raise AssertionError("advanced past what was queued")
            if n < len(data):
                self.partial = memoryview(data)[n:]
                return
            n -= len(data)
        self.skip_empty()

    def skip_empty(self) -> None:
        """Move past chunks with nothing for this member (those whose paths
        all came from it), so it never holds the log back for nothing."""
        group = self.group
        if group is None or self.partial is not None:
            return
        while self.cursor < group.next_seq and not (self.own and self.own[0][0] <= self.cursor):
            chunk = group.chunk(self.cursor)
            if chunk is not None and chunk.data_for(self.peer):
                break
            self.cursor += 1
