"""The CNI plugin run in this process (when no ``pybgp cni-daemon`` listens).

``process`` is one invocation as pure data handling around a handler:
environment + stdin in, (exit status, JSON to print) out. The daemon calls
it with ``plugin.handle`` for requests ``pybgp.cni.client`` forwards; the
client calls ``main`` here when there is no daemon. Output is the CNI result
or CNI error JSON on stdout; logs go to stderr; a traceback never reaches
stdout.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from typing import Any

from pybgp.cni import spec

Handler = Callable[[spec.Request], "dict[str, Any] | None"]


def process(env: Mapping[str, str], stdin: bytes, handler: Handler) -> tuple[int, Any]:
    """One invocation: (exit status, JSON to print or None)."""
    version = spec.LATEST
    try:
        req = spec.parse_request(env, stdin)
        version = req.version
        if req.command == "VERSION":
            return 0, spec.version_reply(req)
        return 0, handler(req)
    except spec.CNIError as exc:
        return 1, exc.to_json(version if version != spec.LATEST else stdin_version(stdin))
    except Exception as exc:  # the runtime must get JSON, not a traceback
        import traceback

        traceback.print_exc(file=sys.stderr)
        err = spec.CNIError(spec.INTERNAL, f"internal error: {exc}")
        return 1, err.to_json(stdin_version(stdin))


def render(status: int, out: Any) -> bytes:
    return b"" if out is None else json.dumps(out).encode() + b"\n"


def stdin_version(stdin: bytes) -> str:
    """The config's cniVersion for an error reply, even when the request was invalid."""
    try:
        version = json.loads(stdin).get("cniVersion")
    except (ValueError, AttributeError):
        return spec.LATEST
    return version if version in spec.SUPPORTED_VERSIONS else spec.LATEST


def try_again_later(stdin: bytes, message: str) -> int:
    err = spec.CNIError(spec.TRY_AGAIN_LATER, message)
    sys.stdout.write(json.dumps(err.to_json(stdin_version(stdin))) + "\n")
    return 1


def _plugin(req: spec.Request) -> dict[str, Any] | None:
    from pybgp.cni.plugin import handle

    return handle(req)


def run(handler: Handler, stdin: bytes | None = None) -> int:
    """A plugin executable's whole life: request in, answer on stdout, exit status."""
    import os

    if stdin is None:
        stdin = sys.stdin.buffer.read() if not sys.stdin.isatty() else b""
    status, out = process(os.environ, stdin, handler)
    sys.stdout.buffer.write(render(status, out))
    return status


def main(stdin: bytes | None = None) -> int:
    return run(_plugin, stdin)


if __name__ == "__main__":
    sys.exit(main())
