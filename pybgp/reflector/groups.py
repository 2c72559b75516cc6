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


def _spans(messages: Iterable[tuple[str | None, bytes]]) -> tuple[bytes, dict[str, list[
        tuple[int, int]]]]:
    """Messages joined into one blob, and each named peer's (start, end)
    ranges in it (neighbouring ones merged)."""
    parts: list[bytes] = []
    spans: dict[str, list[tuple[int, int]]] = {}
    pos = 0
    for peer, m in messages:
        if peer is not None:
            ranges = spans.setdefault(peer, [])
            if ranges and ranges[-1][1] == pos:
                ranges[-1] = (ranges[-1][0], pos + len(m))
            else:
                ranges.append((pos, pos + len(m)))
        parts.append(m)
        pos += len(m)
    return b"".join(parts), spans


def _without(blob: bytes, ranges: list[tuple[int, int]]) -> list[bytes | memoryview]:
    """``blob`` minus ``ranges``, as views of it (nothing copied)."""
    if not ranges:
        return [blob] if blob else []
    view = memoryview(blob)
    out: list[bytes | memoryview] = []
    pos = 0
    for start, end in ranges:
        if start > pos:
            out.append(view[pos:start])
        pos = end
    if pos < len(blob):
        out.append(view[pos:])
    return out


class Chunk:
    """One batch of UPDATEs for a group, encoded once: ``blob`` for everyone,
    less the ranges of the paths a member sent itself (``skips``), plus the
    few messages meant for one member only (``only``)."""

    __slots__ = ("seq", "blob", "skips", "only")

    def __init__(self, seq: int, blob: bytes, skips: dict[str, list[tuple[int, int]]],
                 only: dict[str, bytes]):
        self.seq, self.blob, self.skips, self.only = seq, blob, skips, only

    def parts_for(self, peer: str) -> list[bytes | memoryview]:
        own = self.only.get(peer)
        parts = _without(self.blob, self.skips.get(peer, []))
        return [own, *parts] if own else parts

    @property
    def size(self) -> int:
        return len(self.blob) + sum(len(d) for d in self.only.values())


#: A message for a group: bytes, the member that must not get it (the
#: path's own peer) and the only member that gets it (or None: everyone).
Message = tuple[bytes, str | None, str | None]


class Table:
    """A group's whole table as it was at log position ``seq``: the UPDATEs
    joined into one ``blob``, and where each source peer's messages are.
    A peer joining later gets it (without its own paths' messages) and then
    the log from ``seq``: the table is encoded once for every peer that
    joins while the log since ``seq`` is kept (``Group.pin``)."""

    __slots__ = ("seq", "blob", "spans")

    def __init__(self, seq: int, messages: list[tuple[str, bytes]]):
        self.seq = seq
        self.blob, self.spans = _spans(messages)

    def for_peer(self, peer: str) -> list[bytes | memoryview]:
        """The table without ``peer``'s own paths, as views of the blob."""
        return _without(self.blob, self.spans.get(peer, []))


class Group:
    def __init__(self, key: GroupKey):
        self.key = key
        self.members: dict[str, Outbox] = {}
        self.log: collections.deque[Chunk] = collections.deque()
        self.next_seq = 0
        self.log_bytes = 0
        self.encoded = 0  # UPDATE messages encoded for this group (not per member)
        self.table: Table | None = None  # the last table made, while its log is kept

    def join(self, box: Outbox, at: int | None = None) -> None:
        """``box`` reads the log from ``at`` (default: its head)."""
        self.members[box.peer] = box
        box.group, box.cursor = self, self.next_seq if at is None else at

    def usable_table(self, limit: int) -> Table | None:
        """The kept table, if the log since it is whole and not larger than
        ``limit`` bytes (else a new one is cheaper than the replay)."""
        t = self.table
        if t is None:
            return None
        if t.seq != self.next_seq and not (self.log and self.log[0].seq <= t.seq):
            self.table = None
            return None
        since = sum(c.size for c in self.log if c.seq >= t.seq) if t.seq != self.next_seq else 0
        if since > limit:
            self.table = None
            return None
        return t

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
        blob, skips = _spans((skip, m) for m, skip, only in msgs if only is None)
        only: dict[str, list[bytes]] = {}
        for m, _skip, to in msgs:
            if to is not None:
                only.setdefault(to, []).append(m)
        chunk = Chunk(self.next_seq, blob, skips, {p: b"".join(ms) for p, ms in only.items()})
        self.next_seq += 1
        if not self.members and self.table is None:
            return chunk  # nobody to read it
        self.log.append(chunk)
        self.log_bytes += chunk.size
        return chunk

    def trim(self) -> None:
        """Forget the chunks every member has read (and the kept table does
        not need)."""
        if self.table is not None and self.log_bytes > len(self.table.blob):
            self.table = None  # replaying would cost more than a new table
        if not self.members and self.table is None:
            self.log.clear()
            self.log_bytes = 0
            return
        low = min((b.cursor for b in self.members.values()), default=self.next_seq)
        if self.table is not None:
            low = min(low, self.table.seq)
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
    """What one connection still has to write, in order: the rest of a
    buffer the socket took part of, the parts of a chunk begun, own
    messages that are due, and the group's chunks from ``cursor``."""

    __slots__ = ("peer", "own", "group", "cursor", "partial", "pending", "written")

    def __init__(self, peer: str):
        self.peer = peer
        self.own: collections.deque[tuple[int, bytes | memoryview]] = collections.deque()
        self.group: Group | None = None
        self.cursor = 0
        self.partial: memoryview | None = None
        self.pending: collections.deque[bytes | memoryview] = collections.deque()
        self.written = 0

    def send(self, data: bytes | memoryview, *, after: int | None = None) -> None:
        """Queue an own message; with ``after``, behind the group's log up to there."""
        if data:
            self.own.append((-1 if after is None else after, data))

    def send_after_log(self, data: bytes) -> None:
        """Queue behind everything the group has queued for this member so far."""
        self.send(data, after=self.group.next_seq if self.group is not None else None)

    def _own_due(self, seq: int, i: int = 0) -> bool:
        return i < len(self.own) and (self.group is None or self.own[i][0] <= seq)

    @property
    def idle(self) -> bool:
        return not self.buffers(1)

    def buffers(self, limit: int = 64) -> list[bytes | memoryview]:
        """The next buffers to write (at most ``limit``), in order."""
        self.skip_empty()
        out: list[bytes | memoryview] = []
        if self.partial is not None:
            out.append(self.partial)
        out.extend(self.pending)
        i, seq, group = 0, self.cursor, self.group
        while len(out) < limit:
            if self._own_due(seq, i):
                out.append(self.own[i][1])
                i += 1
            elif group is not None and seq < group.next_seq:
                chunk = group.chunk(seq)
                seq += 1
                if chunk is not None:
                    out += chunk.parts_for(self.peer)
            else:
                break
        return out[:limit] if len(out) > limit else out

    def advance(self, n: int) -> None:
        """``n`` bytes of ``buffers()`` were written."""
        self.written += n
        group = self.group
        while n > 0:
            data: bytes | memoryview
            if self.partial is not None:
                data, self.partial = self.partial, None
            elif self.pending:
                data = self.pending.popleft()
            elif self._own_due(self.cursor):
                data = self.own.popleft()[1]
            elif group is not None and self.cursor < group.next_seq:
                chunk = group.chunk(self.cursor)
                self.cursor += 1
                if chunk is not None:
                    self.pending.extend(chunk.parts_for(self.peer))
                continue
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
        if group is None or self.partial is not None or self.pending:
            return
        while self.cursor < group.next_seq and not self._own_due(self.cursor):
            chunk = group.chunk(self.cursor)
            if chunk is not None and chunk.parts_for(self.peer):
                break
            self.cursor += 1
