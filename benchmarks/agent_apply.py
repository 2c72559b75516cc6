"""Benchmark: the agent's cold start against the kernel floor.

Run as root: ``python -m benchmarks.agent_apply [--endpoints 1000] [--policies 200]
[--reps 3]``.

Set-up (not timed): a node namespace ``pybgp-bench-<hex>-node`` with N
workload veths (``cali…`` there, the peers in ``…-pods``; the sysctls the
CNI plugin sets already set, as on a node whose pods were made while the
agent was down), a throwaway etcd (127.0.0.1 and a unix socket) holding N
WorkloadEndpoints over 10 namespaces and 50 apps, their namespace profiles,
P policies (3/4 NetworkPolicies selecting an app, 1/4 GlobalNetworkPolicies
selecting a tier, rules with selectors, namespace selectors, ports and nets)
and a NAT-outgoing pool. Nothing of the agent's is in the kernel.

Per repetition, alternating:

- **agent**: ``pybgp agent`` started in the node namespace; the clock runs
  from the start of the process until ``/readiness`` answers 200 (datastore
  in sync and the first apply done), polled every 10 ms from a socket in the
  namespace; then everything is read back and compared with what the
  agent's calculation wants (every rule hash, set member, route, PERMANENT
  neighbour, rp_filter) — a mismatch fails the run;
- **floor**: the same final state, read back from the agent's run, loaded
  directly: one ``iptables-restore`` (all tables), one ``ipset restore``, one
  netlink batch (routes and neighbours) and the rp_filter writes.

Between runs the agent's chains, sets, routes and neighbours are removed.
Then, informational: K more endpoints (veths made beforehand) are written to
etcd one at a time, each timed until the agent reports it ``up`` in etcd
(which it does after the apply that programs its chains).

The last line: ``RESULT endpoints=N policies=P rules=R agent_s=… floor_s=…
ratio=<agent/floor> endpoint_p50_ms=…``. Everything it creates is removed by
name and PID at the end, also on failure.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pybgp.datastore.etcdv3 import EtcdClient, EtcdConfig
from pybgp.datastore.kv import Put
from pybgp.kernel_sync import links
from pybgp.kernel_sync.desired import KRoute, NextHop
from pybgp.kernel_sync.links import Rtnl
from pybgp.kernel_sync.netlink import run_in_netns
from pybgp.model import parse_resource, wep_name
from pybgp.testing.etcd import EtcdServer

APPS, NAMESPACES, TIERS = 50, 10, ("web", "api", "db", "cache")
HEALTH_PORT = 9099


def sh(*args: str, input: str | None = None) -> str:
    proc = subprocess.run(args, capture_output=True, text=True, input=input, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:6])} exited {proc.returncode}: {proc.stderr[-500:]}")
    return proc.stdout


def ns_sh(ns: str, *args: str, input: str | None = None) -> str:
    return sh("ip", "netns", "exec", ns, *args, input=input)


def addr(i: int) -> str:
    return f"198.19.{(i >> 8) + 1}.{i & 255}"


def iface(i: int) -> str:
    return f"cali{i:011x}"


def mac(i: int) -> str:
    return "02:00:" + ":".join(f"{(i >> s) & 255:02x}" for s in (24, 16, 8, 0))


def doc(kind: str, name: str, spec: dict, **meta: object) -> dict:
    return {"apiVersion": "projectcalico.org/v3", "kind": kind,
            "metadata": {"name": name, **meta}, "spec": spec}


def endpoint_doc(i: int) -> dict:
    ns = f"ns-{i % NAMESPACES}"
    pod = f"pod-{i}"
    name = wep_name("bench", "k8s", pod, "eth0")
    return doc("WorkloadEndpoint", name, {
        "orchestrator": "k8s", "node": "bench", "pod": pod, "endpoint": "eth0",
        "ipNetworks": [f"{addr(i)}/32"], "interfaceName": iface(i), "mac": mac(i),
        "profiles": [f"kns.{ns}"]}, namespace=ns,
        labels={"app": f"app-{i % APPS}", "tier": TIERS[i % len(TIERS)]})


def policy_docs(n: int) -> list[dict]:
    out = []
    for j in range(n):
        port = 8000 + j % 20
        if j % 4 == 0:
            out.append(doc("GlobalNetworkPolicy", f"tier-{j}", {
                "order": j, "selector": f"tier == '{TIERS[(j // 4) % 4]}'",
                "types": ["Ingress"], "ingress": [
                    {"action": "Allow", "protocol": "TCP", "source": {
                        "namespaceSelector": f"team == 't{j % 3}'"},
                     "destination": {"ports": [port]}},
                    {"action": "Deny", "protocol": "UDP", "destination": {"ports": [53]}}]}))
        else:
            ns = f"ns-{j % NAMESPACES}"
            out.append(doc("NetworkPolicy", f"app-{j}", {
                "order": j, "selector": f"app == 'app-{j % APPS}'", "ingress": [
                    {"action": "Allow", "protocol": "TCP",
                     "source": {"selector": f"tier == '{TIERS[j % 4]}'"},
                     "destination": {"ports": [port, f"{port + 100}:{port + 110}"]}},
                    {"action": "Allow", "protocol": "ICMP"}],
                "egress": [
                    {"action": "Deny", "destination": {"nets": ["198.18.99.0/24"]}},
                    {"action": "Allow"}]}, namespace=ns))
    return out


def load_etcd(kv: EtcdClient, docs: list[dict]) -> None:
    ops = []
    for d in docs:
        res = parse_resource(d)
        ops.append(Put(res.etcd_key(), res.to_json().encode()))
    for i in range(0, len(ops), 128):
        kv.txn([], ops[i:i + 128])


def make_veths(node: str, pods: str, start: int, count: int) -> None:
    cmds = []
    for i in range(start, start + count):
        cmds.append(f"link add {iface(i)} type veth peer name e{i} address {mac(i)} "
                    f"netns {pods}")
        cmds.append(f"link set {iface(i)} up")
    sh("ip", "-n", node, "-batch", "-", input="\n".join(cmds) + "\n")
    sh("ip", "-n", pods, "-batch", "-",
       input="".join(f"link set e{i} up\n" for i in range(start, start + count)))
    settings = []
    for i in range(start, start + count):  # what the CNI plugin sets
        for key in ("forwarding", "proxy_arp", "route_localnet"):
            settings.append(f"net.ipv4.conf.{iface(i)}.{key}=1")
        settings.append(f"net.ipv4.neigh.{iface(i)}.proxy_delay=0")
    for k in range(0, len(settings), 2000):
        ns_sh(node, "sysctl", "-q", "-w", *settings[k:k + 2000])


def ready(node: str) -> bool:
    def get() -> bool:
        s = socket.socket()
        s.settimeout(1.0)
        try:
            s.connect(("127.0.0.1", HEALTH_PORT))
            s.sendall(b"GET /readiness HTTP/1.0\r\n\r\n")
            return s.recv(64).startswith(b"HTTP/1.0 200")
        except OSError:
            return False
        finally:
            s.close()

    return run_in_netns(node, get)


def state(node: str) -> dict[str, object]:
    """What the kernel holds of the agent's: rules, sets, routes, neighbours."""
    save = ns_sh(node, "iptables-save")
    rules = sorted(line for line in save.splitlines() if "cali:" in line)
    sets = ns_sh(node, "ipset", "save")
    members = sorted(line for line in sets.splitlines() if line.startswith("add cali40"))
    routes = sorted(sh("ip", "-n", node, "route", "show", "proto", "80").splitlines())
    neigh = sorted(line for line in sh("ip", "-n", node, "neigh", "show", "nud",
                                       "permanent").splitlines())
    return {"save": save, "sets": sets, "rules": rules, "members": members, "routes": routes,
            "neigh": neigh}


def clean(node: str, n: int) -> None:
    ns_sh(node, "iptables-restore", input="*filter\nCOMMIT\n*nat\nCOMMIT\n*raw\nCOMMIT\n")
    ns_sh(node, "ipset", "destroy")
    sh("ip", "-n", node, "route", "flush", "proto", "80")
    sh("ip", "-n", node, "neigh", "flush", "nud", "permanent")
    ns_sh(node, "sysctl", "-q", "-w", "net.ipv4.conf.all.rp_filter=0",
          *(f"net.ipv4.conf.{iface(i)}.rp_filter=0" for i in range(n)))


def run_agent(node: str, etcd: EtcdServer, logfile: Path) -> tuple[float, subprocess.Popen]:
    with open(logfile, "ab") as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            ["ip", "netns", "exec", node, sys.executable, "-m", "pybgp.cli.main", "agent",
             "--node", "bench", "--etcd-endpoints", etcd.unix_endpoint, "--metrics-port",
             "0"], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
    deadline = time.monotonic() + 300
    while not ready(node):
        if proc.poll() is not None:
            raise RuntimeError(f"agent exited {proc.returncode}; see {logfile}")
        if time.monotonic() > deadline:
            raise RuntimeError("agent not ready within 300 s")
        time.sleep(0.01)
    return time.perf_counter() - t0, proc


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def run_floor(node: str, want: dict[str, object], n: int) -> float:
    """The same final state, loaded as directly as the kernel allows."""
    save, sets = str(want["save"]), str(want["sets"])
    with tempfile.NamedTemporaryFile("w") as f:
        f.write(save)
        f.flush()
        with Rtnl(f"/run/netns/{node}") as rtnl:
            index = {name: v[0] for name, v in rtnl.links().items()}
            t0 = time.perf_counter()
            ns_sh(node, "ipset", "restore", input=sets)  # first: the rules use the sets
            ns_sh(node, "iptables-restore", "--noflush", f.name)
            reqs = []
            for i in range(n):
                route = KRoute(f"{addr(i)}/32", "unicast", (NextHop(dev=index[iface(i)]),), 80)
                reqs.append((f"route {i}", links.route("replace", route)))
                reqs.append((f"neigh {i}", links.neighbour(index[iface(i)], addr(i), mac(i))))
            rtnl.call(*reqs)

            def sysctls() -> None:
                for i in range(n):
                    with open(f"/proc/sys/net/ipv4/conf/{iface(i)}/rp_filter", "w") as fh:
                        fh.write("1")

            run_in_netns(f"/run/netns/{node}", sysctls)
            return time.perf_counter() - t0


def compare(a: dict[str, object], b: dict[str, object], what: str) -> None:
    for key in ("rules", "members", "routes", "neigh"):
        if a[key] != b[key]:
            raise RuntimeError(f"{what}: {key} differ ({len(a[key])} vs {len(b[key])})")  # type: ignore[arg-type]


def endpoint_latency(node: str, kv: EtcdClient, start: int, count: int) -> list[float]:
    out = []
    for i in range(start, start + count):
        d = endpoint_doc(i)
        ns, pod = d["metadata"]["namespace"], d["spec"]["pod"]
        key = f"/calico/felix/v2/no-region/host/bench/workload/k8s/{ns}%2f{pod}/endpoint/eth0"
        t0 = time.perf_counter()
        load_etcd(kv, [d])
        deadline = time.monotonic() + 30
        while True:
            item = kv.get(key)
            if item is not None and json.loads(item.value)["status"] == "up":
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"endpoint {pod} not up within 30 s")
            time.sleep(0.002)
        out.append(time.perf_counter() - t0)
        ns_sh(node, "iptables", "-S", f"cali-tw-{iface(i)}")  # its chain is there
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--endpoints", type=int, default=1000)
    ap.add_argument("--policies", type=int, default=200)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--latency-endpoints", type=int, default=20)
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("agent_apply: must run as root (it creates network namespaces)", file=sys.stderr)
        return 2
    n, k = args.endpoints, args.latency_endpoints
    if not 1 <= n <= 20000 or not 0 <= k <= 200 or not 1 <= args.reps <= 10:
        ap.error("--endpoints 1..20000, --latency-endpoints 0..200, --reps 1..10")
    tag = secrets.token_hex(3)
    node, pods = f"pybgp-bench-{tag}-node", f"pybgp-bench-{tag}-pods"
    workdir = Path(tempfile.mkdtemp(prefix="pybgp-bench-agent-"))
    made: list[str] = []
    procs: list[subprocess.Popen] = []
    try:
        for ns in (node, pods):
            sh("ip", "netns", "add", ns)
            made.append(ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        t = time.perf_counter()
        make_veths(node, pods, 0, n + k)
        print(f"set-up: {n + k} veths in {time.perf_counter() - t:.1f}s", flush=True)
        with EtcdServer(name=f"pybgp-bench-{tag}") as etcd:
            kv = EtcdClient(EtcdConfig(endpoints=[etcd.endpoint]))
            docs = [doc("Profile", f"kns.ns-{m}", {
                "ingress": [{"action": "Allow"}], "egress": [{"action": "Allow"}],
                "labelsToApply": {"pcns.projectcalico.org/name": f"ns-{m}",
                                  "pcns.team": f"t{m % 3}"}}) for m in range(NAMESPACES)]
            docs.append(doc("IPPool", "default", {"cidr": "198.19.0.0/16",
                                                  "natOutgoing": True}))
            docs += policy_docs(args.policies)
            docs += [endpoint_doc(i) for i in range(n)]
            load_etcd(kv, docs)
            agent_times, floor_times = [], []
            want: dict[str, object] | None = None
            for rep in range(args.reps):
                clean(node, n + k)
                t_agent, proc = run_agent(node, etcd, workdir / "agent.log")
                procs.append(proc)
                stop(proc)
                got = state(node)
                if want is None:
                    want = got
                compare(got, want, f"agent run {rep + 1}")
                agent_times.append(t_agent)
                clean(node, n + k)
                floor_times.append(run_floor(node, want, n))
                compare(state(node), want, f"floor run {rep + 1}")
                print(f"rep {rep + 1}: agent {t_agent:.3f}s floor {floor_times[-1]:.3f}s",
                      flush=True)
            assert want is not None
            latencies: list[float] = []
            if k:
                clean(node, n + k)
                _, proc = run_agent(node, etcd, workdir / "agent.log")
                procs.append(proc)
                try:
                    latencies = endpoint_latency(node, kv, n, k)
                finally:
                    stop(proc)
            kv.close()
        rules = len(want["rules"])  # type: ignore[arg-type]
        a, f = statistics.median(agent_times), statistics.median(floor_times)
        print(f"\nendpoints={n} policies={args.policies} rules={rules} "
              f"set members={len(want['members'])} routes={len(want['routes'])}")  # type: ignore[arg-type]
        print(f"{'run':<58} {'median s':>9}  runs")
        print(f"{'pybgp agent: start → ready (in sync, all programmed)':<58} {a:>9.3f}  "
              + ", ".join(f"{x:.3f}" for x in agent_times))
        print(f"{'floor: iptables-restore + ipset restore + netlink batch':<58} {f:>9.3f}  "
              + ", ".join(f"{x:.3f}" for x in floor_times))
        p50 = statistics.median(latencies) * 1000 if latencies else float("nan")
        if latencies:
            print(f"endpoint written to etcd → reported up (rules in place), {k} endpoints: "
                  f"p50 {p50:.1f} ms, max {max(latencies) * 1000:.1f} ms")
        print(f"RESULT endpoints={n} policies={args.policies} rules={rules} agent_s={a:.3f} "
              f"floor_s={f:.3f} ratio={a / f:.2f} endpoint_p50_ms={p50:.1f}")
        return 0
    finally:
        for proc in procs:
            stop(proc)
        for ns in reversed(made):
            subprocess.run(["ip", "netns", "del", ns], check=False)


if __name__ == "__main__":
    sys.exit(main())
