"""A tiny TCP listener and connector for tests, run inside pod/host namespaces.

``python -m pybgp.testing.probe serve PORT...`` listens on every port; each
connection is first told the address it came from, as the server sees it
(so a test learns whether a source was NATed), then gets its lines echoed.

``python -m pybgp.testing.probe check [--timeout S] HOST:PORT...`` tries every
target at once and prints a JSON list of ``{"target", "ok", "seen", "error"}``.

``python -m pybgp.testing.probe udp-listen PORT --seconds S`` prints the JSON
list of source addresses of the datagrams that arrived; ``udp-send
HOST:PORT [--source IP] [--count N]`` sends datagrams (from ``IP`` if given:
a spoofing test binds an address the pod does not own).

``python -m pybgp.testing.probe hold HOST:PORT --seconds S [--interval I]``
keeps one connection and sends a line every interval, expecting its echo;
prints ``{"sent", "echoed", "errors"}`` and exits 1 on any loss.

Every wait is bounded. Standard library only; imports nothing of pybgp, so
it starts quickly in any namespace.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time


def _serve_conn(conn: socket.socket, peer: str) -> None:
    with conn:
        conn.settimeout(60)
        try:
            conn.sendall(f"{peer}\n".encode())
            while True:
                data = conn.recv(4096)
                if not data:
                    return
                conn.sendall(data)
        except OSError:
            return


def serve(ports: list[int]) -> None:
    socks = []
    for port in ports:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port))
        s.listen(128)
        socks.append(s)

    def accept(s: socket.socket) -> None:
        while True:
            conn, addr = s.accept()
            threading.Thread(target=_serve_conn, args=(conn, addr[0]), daemon=True).start()

    for s in socks:
        threading.Thread(target=accept, args=(s,), daemon=True).start()
    print("ready", flush=True)
    while True:
        time.sleep(3600)


def _split(target: str) -> tuple[str, int]:
    host, _, port = target.rpartition(":")
    return host, int(port)


def _read_line(s: socket.socket) -> str:
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = s.recv(256)
        if not chunk:
            break
        buf += chunk
    return buf.decode().strip()


def try_one(target: str, timeout: float) -> dict[str, object]:
    host, port = _split(target)
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            seen = _read_line(s)
            return {"target": target, "ok": bool(seen), "seen": seen, "error": ""}
    except OSError as exc:
        return {"target": target, "ok": False, "seen": "", "error": str(exc) or type(exc).__name__}


def check(targets: list[str], timeout: float) -> list[dict[str, object]]:
    results: list[dict[str, object]] = [{} for _ in targets]

    def run(i: int, t: str) -> None:
        results[i] = try_one(t, timeout)

    threads = [threading.Thread(target=run, args=(i, t)) for i, t in enumerate(targets)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout + 5)
    return results


def hold(target: str, seconds: float, interval: float) -> dict[str, object]:
    host, port = _split(target)
    sent = echoed = 0
    errors: list[str] = []
    with socket.create_connection((host, port), timeout=5) as s:
        s.settimeout(5)
        _read_line(s)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            sent += 1
            try:
                s.sendall(b"x\n")
                if _read_line(s) == "x":
                    echoed += 1
                else:
                    errors.append(f"no echo for line {sent}")
            except OSError as exc:
                errors.append(f"line {sent}: {exc}")
                break
            time.sleep(interval)
    return {"sent": sent, "echoed": echoed, "errors": errors}


def udp_listen(port: int, seconds: float) -> list[str]:
    seen: list[str] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("0.0.0.0", port))
        print("ready", flush=True)
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            s.settimeout(left)
            try:
                _, addr = s.recvfrom(2048)
            except TimeoutError:
                break
            seen.append(addr[0])
    return seen


def udp_send(target: str, source: str | None, count: int) -> None:
    host, port = _split(target)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        if source:
            s.setsockopt(socket.SOL_IP, 15, 1)  # IP_FREEBIND: any source address
            s.bind((source, 0))
        for _ in range(count):
            s.sendto(b"probe", (host, port))
            time.sleep(0.02)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="probe")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("serve")
    p.add_argument("ports", nargs="+", type=int)
    p = sub.add_parser("check")
    p.add_argument("targets", nargs="+")
    p.add_argument("--timeout", type=float, default=1.0)
    p = sub.add_parser("udp-listen")
    p.add_argument("port", type=int)
    p.add_argument("--seconds", type=float, required=True)
    p = sub.add_parser("udp-send")
    p.add_argument("target")
    p.add_argument("--source")
    p.add_argument("--count", type=int, default=3)
    p = sub.add_parser("hold")
    p.add_argument("target")
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--interval", type=float, default=0.1)
    args = ap.parse_args(argv)
    if args.cmd == "serve":
        serve(args.ports)
        return 0
    if args.cmd == "check":
        print(json.dumps(check(args.targets, min(args.timeout, 30.0))))
        return 0
    if args.cmd == "udp-send":
        udp_send(args.target, args.source, max(1, min(args.count, 100)))
        return 0
    if not 0 < args.seconds <= 600:
        ap.error("--seconds must be in (0, 600]")
    if args.cmd == "udp-listen":
        print(json.dumps(udp_listen(args.port, args.seconds)))
        return 0
    result = hold(args.target, args.seconds, max(args.interval, 0.01))
    print(json.dumps(result))
    return 0 if result["sent"] == result["echoed"] and not result["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
