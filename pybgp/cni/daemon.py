"""``pybgp cni-daemon``: answers ``pybgp-cni`` over a unix socket.

The plugin's executable is started once per pod; importing pyroute2 and
connecting to etcd costs far more than the work itself. This daemon keeps
both warm and runs the same ``pybgp.cni.plugin.handle`` the executable would
run in-process. One thread per request (CNI runtimes call concurrently; IPAM
is compare-and-swap, so concurrent requests are safe).

Wire format: ``pybgp.cni.client`` (the raw CNI environment and stdin in; the
exit status and stdout bytes out). The socket is created mode 0600 (root
only), in a directory it creates 0700.
"""

from __future__ import annotations

import logging
import os
import socketserver
import threading

from pybgp.cni import client, spec
from pybgp.cni.entry import process, render

log = logging.getLogger("pybgp.cni.daemon")
MAX_REQUEST = 1 << 20  # a CNI config with prevResult is a few KiB


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        from pybgp.cni.plugin import handle

        data = self.rfile.read(MAX_REQUEST + 1)
        try:
            env, stdin = client.decode(data)
        except ValueError as exc:
            log.warning("bad request on the CNI socket: %s", exc)
            err = spec.CNIError(spec.DECODE_FAILURE, f"malformed request from pybgp-cni: {exc}")
            self.wfile.write(b"1\n" + render(1, err.to_json(spec.LATEST)))
            return
        status, out = process(env, stdin, handle)
        self.wfile.write(b"%d\n" % status + render(status, out))


class CNIDaemon(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    # A node starting many pods at once connects many plugins together;
    # socketserver's default backlog of 5 would turn them away.
    request_queue_size = 1024

    def __init__(self, path: str):
        os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
        if os.path.exists(path):
            os.unlink(path)
        old = os.umask(0o177)
        try:
            super().__init__(path, _Handler)
        finally:
            os.umask(old)
        self.path = path

    def serve_in_thread(self) -> threading.Thread:
        t = threading.Thread(target=self.serve_forever, name="cni-daemon", daemon=True)
        t.start()
        return t

    def server_close(self) -> None:
        super().server_close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def serve(path: str) -> None:
    # Warm the expensive imports before the first request arrives.
    import pybgp.cni.plugin  # noqa: F401

    server = CNIDaemon(path)
    log.info("pybgp cni-daemon listening on %s", path)
    try:
        server.serve_forever()
    finally:
        server.server_close()

