"""Update-group logs and outboxes: order, partial writes, shared bytes, trimming."""

from __future__ import annotations

import random

from pybgp.reflector.groups import Group, GroupKey, Outbox
from pybgp.reflector.wire import IPV4_UNICAST
from pybgp.speaker.rr import Role

KEY = GroupKey(Role.CLIENT, True, (IPV4_UNICAST,))


def drain(box: Outbox, rng: random.Random | None = None) -> bytes:
    """Write everything, taking a random number of bytes each time (a socket)."""
    out = b""
    while True:
        bufs = box.buffers(rng.randint(1, 4) if rng else 64)
        if not bufs:
            return out
        data = b"".join(bytes(b) for b in bufs)
        n = rng.randint(1, len(data)) if rng else len(data)
        out += data[:n]
        box.advance(n)


def test_members_get_the_log_in_order_whatever_the_socket_takes():
    rng = random.Random(5)
    for _ in range(50):
        g = Group(KEY)
        a, b = Outbox("a"), Outbox("b")
        a.send(b"OPEN-a;")
        g.join(a)
        g.join(b)
        g.publish([(b"one;", None, None), (b"two;", "a", None)])
        a.send(b"KA;")  # own, no order: may go before queued chunks
        a.send_after_log(b"EOR;")  # behind the chunks queued so far
        g.publish([(b"three;", None, None), (b"only-b;", None, "b")])
        got_a = drain(a, rng)
        got_b = drain(b, rng)
        assert got_a == b"OPEN-a;KA;one;EOR;three;"
        # a chunk's messages for one member alone go first (withdrawals of what
        # it had from us, for prefixes no other message of the chunk names for it)
        assert got_b == b"one;two;only-b;three;"


def test_every_member_is_given_the_same_bytes_object():
    g = Group(KEY)
    boxes = [Outbox(str(i)) for i in range(5)]
    for box in boxes:
        g.join(box)
    chunk = g.publish([(b"x" * 100, "0", None)])
    assert chunk is not None and chunk.skips == {"0": [(0, 100)]} and chunk.only == {}
    firsts = [box.buffers()[0] for box in boxes[1:]]
    assert all(f is chunk.blob for f in firsts)
    assert boxes[0].buffers() == []  # its own path: nothing, and it does not lag
    assert boxes[0].cursor == g.next_seq


def test_the_log_is_trimmed_once_everyone_read_it():
    g = Group(KEY)
    a, b = Outbox("a"), Outbox("b")
    g.join(a)
    g.join(b)
    for i in range(3):
        g.publish([(bytes([i]) * 10, None, None)])
    assert g.log_bytes == 30
    drain(a)
    g.trim()
    assert len(g.log) == 3  # b has read nothing
    assert g.laggard() is b
    drain(b)
    g.trim()
    assert not g.log and g.log_bytes == 0
    # a chunk published with no member is not kept
    g.leave(a)
    g.leave(b)
    g.publish([(b"zz", None, None)])
    assert not g.log


def test_a_member_joining_late_starts_at_the_head():
    g = Group(KEY)
    a = Outbox("a")
    g.join(a)
    g.publish([(b"old;", None, None)])
    late = Outbox("late")
    late.send(b"table;")
    g.join(late)
    g.publish([(b"new;", None, None)])
    assert drain(late) == b"table;new;"
    assert drain(a) == b"old;new;"


def test_leaving_a_group_lets_own_messages_out():
    g = Group(KEY)
    a = Outbox("a")
    g.join(a)
    g.publish([(b"c;", None, None)])
    a.send_after_log(b"after;")
    g.leave(a)
    assert drain(a) == b"after;"


def test_a_chunk_with_many_sources_is_not_copied_per_member():
    g = Group(KEY)
    boxes = [Outbox(str(i)) for i in range(50)]
    for box in boxes:
        g.join(box)
    msgs = [(bytes([i]) * 100, str(i), None) for i in range(50)]  # one path from each
    chunk = g.publish(msgs)
    assert chunk is not None and chunk.size == 5000  # one copy, whatever the sources
    for i, box in enumerate(boxes):
        parts = box.buffers()
        assert all(isinstance(p, memoryview) and p.obj is chunk.blob for p in parts)
        assert drain(box) == b"".join(m for m, skip, _ in msgs if skip != str(i))
