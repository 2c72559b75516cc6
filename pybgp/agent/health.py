"""Tiny HTTP servers on the agent's event loop: health and metrics (stdlib only).

``/liveness`` and ``/readiness`` with Felix's semantics: 200 when healthy,
503 when not, a one-line JSON body saying why. Ready = the datastore is in
sync and the first full apply of the dataplane has succeeded (and the last
one did not fail); live = the event loop answers and no apply has been
running for longer than ``stuck_after`` seconds. ``/metrics`` serves the
Prometheus text of :class:`~pybgp.agent.metrics.Metrics`.

Each request is one line read with a timeout and one response; the
connection is closed after it (HTTP/1.0). Must never: block the loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable

log = logging.getLogger("pybgp.agent.health")
Handler = Callable[[], tuple[int, str, str]]  # → (status, content type, body)
REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed",
           500: "Internal Server Error", 503: "Service Unavailable"}


async def serve(host: str, port: int, routes: dict[str, Handler]) -> asyncio.Server:
    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5.0)
            # the rest of the request head (headers) until the blank line, bounded
            for _ in range(100):
                more = await asyncio.wait_for(reader.readline(), 5.0)
                if more in (b"\r\n", b"\n", b""):
                    break
            parts = line.decode("latin-1").split()
            if len(parts) < 2:
                return
            method, path = parts[0], parts[1].split("?", 1)[0]
            handler = routes.get(path)
            if handler is None:
                status, ctype, body = 404, "text/plain", "not found\n"
            elif method not in ("GET", "HEAD"):
                status, ctype, body = 405, "text/plain", "method not allowed\n"
            else:
                try:
                    status, ctype, body = handler()
                except Exception as exc:  # a bug: answer 500, keep serving
                    log.exception("%s handler failed", path)
                    status, ctype, body = 500, "text/plain", f"internal error: {exc}\n"
            data = body.encode()
            head = (f"HTTP/1.0 {status} {REASONS.get(status, '')}\r\n"
                    f"Content-Type: {ctype}\r\nContent-Length: {len(data)}\r\n"
                    "Connection: close\r\n\r\n").encode()
            writer.write(head if method == "HEAD" else head + data)
            await writer.drain()
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(client, host or None, port, reuse_address=True)


def health_routes(is_live: Callable[[], tuple[bool, str]],
                  is_ready: Callable[[], tuple[bool, str]]) -> dict[str, Handler]:
    def answer(check: Callable[[], tuple[bool, str]]) -> Handler:
        def handler() -> tuple[int, str, str]:
            ok, why = check()
            body = json.dumps({"healthy": ok, "detail": why}) + "\n"
            return (200 if ok else 503), "application/json", body
        return handler

    return {"/liveness": answer(is_live), "/readiness": answer(is_ready)}


def metrics_routes(render: Callable[[], str]) -> dict[str, Handler]:
    def handler() -> tuple[int, str, str]:
        return 200, "text/plain; version=0.0.4", render()

    return {"/metrics": handler}
