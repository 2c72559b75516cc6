"""A :class:`~pybgp.datastore.syncer.Syncer` driven by an asyncio loop.

The loop reads the watch's socket itself (``add_reader``), so a change in
etcd reaches the consumer's callback in the loop's own thread: no thread
wakes up to read it and then wakes the loop (a syscall trace of the
speaker put that hand-off at 20-280 µs of a new block's way to the peers;
docs/benchmarks.md). What blocks runs in a worker thread: connecting, and
the whole-prefix reads (the snapshot, and the re-list after a lost watch
or a compaction), with the same back-off and the same events as the
threaded ``Syncer.events()``.

Must never: block the loop, or deliver events outside the loop's thread.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import Callable

from pybgp.datastore.etcdv3 import EtcdClient, WatchStream
from pybgp.datastore.syncer import Status, Syncer, SyncEvent
from pybgp.errors import CompactedError, DatastoreError, DatastoreUnavailable

READ_SIZE = 65536


def _would_block() -> tuple[type[BaseException], ...]:
    ssl = sys.modules.get("ssl")  # loaded only when the endpoint is TLS
    return (BlockingIOError, ssl.SSLWantReadError) if ssl else (BlockingIOError,)


class LoopSyncer:
    """Follows ``prefix`` over clients from ``client_factory`` (a
    :class:`Syncer` does the bookkeeping); ``emit`` gets each group of events,
    in order, in the loop's thread. ``start()`` and ``stop()`` from the loop."""

    def __init__(self, client_factory: Callable[[], EtcdClient], prefix: str,
                 emit: Callable[[list[SyncEvent]], None], *,
                 min_backoff: float = 0.1, max_backoff: float = 2.0):
        self.syncer = Syncer(client_factory, prefix,
                             min_backoff=min_backoff, max_backoff=max_backoff)
        self._factory = client_factory
        self._prefix = prefix
        self._emit = emit
        self._task: asyncio.Task[None] | None = None

    def start(self, on_bug: Callable[[BaseException], None] | None = None
              ) -> asyncio.Task[None]:
        """The task that follows; it ends only when stopped, or on a bug, which
        ``on_bug`` is told of (a daemon should stop and say why rather than run
        on a datastore view that no longer changes)."""
        task = self._task = asyncio.get_running_loop().create_task(self._run())
        if on_bug is not None:
            def ended(t: asyncio.Task[None]) -> None:
                exc = None if t.cancelled() else t.exception()
                if exc is not None:
                    on_bug(exc)

            task.add_done_callback(ended)
        return task

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def _run(self) -> None:
        syncer = self.syncer
        backoff = syncer.min_backoff
        client: EtcdClient | None = None
        try:
            while True:
                try:
                    if client is None:
                        client = await asyncio.to_thread(self._factory)
                    self._emit(await asyncio.to_thread(syncer.relist, client))
                    backoff = syncer.min_backoff
                    await self._follow(client)
                except CompactedError as exc:
                    syncer.resyncs += 1
                    self._emit([Status("resyncing", str(exc))])  # re-list at once
                except DatastoreError as exc:
                    syncer.resyncs += 1
                    self._emit([Status("down", str(exc))])
                    if client is not None:
                        client.close()
                        client = None
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, syncer.max_backoff)
        finally:
            if client is not None:
                client.close()

    async def _follow(self, client: EtcdClient) -> None:
        """Read the watch from the syncer's revision on, until it ends (raises)."""
        loop = asyncio.get_running_loop()
        sock, stream = await asyncio.to_thread(
            client.open_watch, self._prefix, self.syncer.revision + 1)
        ended: asyncio.Future[None] = loop.create_future()
        sock.setblocking(False)
        loop.add_reader(sock, self._readable, sock, stream, ended)
        try:
            await ended
        finally:
            loop.remove_reader(sock)
            sock.close()

    def _readable(self, sock: socket.socket, stream: WatchStream,
                  ended: asyncio.Future[None]) -> None:
        """Everything the socket holds now (a TLS socket can hold more than
        the kernel signals), through the stream, to the consumer."""
        out: list[SyncEvent] = []
        try:
            while True:
                try:
                    data = sock.recv(READ_SIZE)
                except _would_block():
                    break
                except OSError as exc:
                    raise DatastoreUnavailable(f"etcd watch lost: {exc}") from exc
                if not data:
                    raise DatastoreUnavailable("etcd closed the watch stream")
                for batch in stream.feed(data):
                    out += self.syncer.apply(batch)
        except DatastoreError as exc:
            asyncio.get_running_loop().remove_reader(sock)
            if not ended.done():
                ended.set_exception(exc)
        finally:
            if out:
                self._emit(out)
