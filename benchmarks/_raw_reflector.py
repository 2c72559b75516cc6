"""The floor of ``rr_fanout``: a "reflector" that does nothing but move bytes.

``python -m benchmarks._raw_reflector --listen A --clients C --routes R
--injector ADDR``: accepts C+1 sessions (OPEN, KEEPALIVE, nothing else
checked), and once the injector has sent R /32s (counted as the swarm
counts them) writes the same R routes, pre-encoded before the clock starts
with the attributes a reflector adds, to every other session as fast as
``sendall`` goes. What the swarm measures against it is the cost of the
network and of the swarm itself: the time no reflector can beat here.

Must never: run outside the benchmark's namespace.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from pybgp.reflector import wire
from pybgp.reflector.wire import Caps
from pybgp.testing.bgp_clients import attributes, injected_prefixes, update


class _Session(asyncio.Protocol):
    def __init__(self, server: Server):
        self.server = server
        self.framer = wire.Framer()
        self.transport: asyncio.Transport | None = None
        self.address = ""
        self.count = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.address = transport.get_extra_info("peername")[0]
        transport.write(wire.encode_open(self.server.asn, 240, self.server.router_id,
                                         Caps(asn4=self.server.asn)))
        self.server.sessions.append(self)

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        for kind, body in self.framer.feed(data):
            if kind == wire.OPEN:
                self.transport.write(wire.KEEPALIVE_MESSAGE)
            elif kind == wire.UPDATE and self.address == self.server.injector:
                wlen = (body[0] << 8) | body[1]
                alen = (body[2 + wlen] << 8) | body[3 + wlen]
                self.count += len(body[4 + wlen + alen:]) // 5
                if self.count >= self.server.routes:
                    self.server.fan_out(self)


class Server:
    def __init__(self, args: argparse.Namespace):
        self.asn, self.router_id, self.routes = args.asn, args.listen, args.routes
        self.injector = args.injector
        self.sessions: list[_Session] = []
        attrs = attributes(args.injector, originator_id=args.injector,
                           cluster_list=(args.cluster_id,))
        self.data = b"".join(update(attrs, injected_prefixes(args.routes)))

    def fan_out(self, source: _Session) -> None:
        for s in self.sessions:
            if s is not source and s.transport is not None:
                s.transport.write(self.data)


async def _main(args: argparse.Namespace) -> int:
    server = Server(args)
    loop = asyncio.get_running_loop()
    srv = await loop.create_server(lambda: _Session(server), args.listen, 179, backlog=1024)
    print("ready", flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)  # until told (or EOF)
    srv.close()
    return 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", required=True)
    ap.add_argument("--injector", required=True)
    ap.add_argument("--routes", type=int, required=True)
    ap.add_argument("--cluster-id", required=True)
    ap.add_argument("--asn", type=int, default=64512)
    return asyncio.run(_main(ap.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
