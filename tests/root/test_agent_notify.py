"""The agent's readiness as systemd's ``Type=notify`` sees it.

The real ``pybgp agent`` in a node namespace with one pod, started with a
``$NOTIFY_SOCKET`` as systemd starts it: ``READY=1`` arrives only once the
dataplane is programmed (the pod's chains and route are already in the
node's kernel, ``/readiness`` answers 200), and SIGTERM — what ``systemctl
stop`` sends — makes it say ``STOPPING=1`` and exit 0.
"""

from __future__ import annotations

from pathlib import Path

from agent_net import fresh_cluster, http_get

from pybgp.testing.etcd import EtcdServer


def test_ready_once_programmed_and_stopping_on_sigterm(etcd_server: EtcdServer,
                                                      session_run_id: str,
                                                      tmp_path: Path) -> None:
    with fresh_cluster(etcd_server, session_run_id, str(tmp_path)) as cluster:
        cn = cluster.add_node("node-a", "198.18.0.11/24")
        pod = cluster.add_pod("node-a", "web", cni=True)
        cluster.start_agent("node-a", notify=True)
        status = cluster.wait_ready("node-a", 30, daemon="agent")
        # nothing below waits: all of it must be true the moment READY=1 arrives
        assert status == "in sync, 1 endpoints, 0 policies"
        rules = cluster.topo.exec(cn.node, "iptables-save", "-t", "filter").stdout
        dispatch = [line for line in rules.splitlines()
                    if line.startswith(f"-A cali-to-wl-dispatch -o {pod.host_iface} ")]
        assert len(dispatch) == 1 and dispatch[0].endswith(f"-g cali-tw-{pod.host_iface}"), rules
        routes = cluster.topo.exec(cn.node, "ip", "route", "show", "proto", "80").stdout
        assert f"{pod.addr} dev {pod.host_iface}" in routes
        code, body = http_get(cluster.topo, cn.node, 9099, "/readiness")
        assert code == 200, body

        # SIGTERM, what `systemctl stop` sends
        assert cluster.terminate("node-a", "agent") == ("STOPPING=1", 0)
        # it left the dataplane as it was
        assert f"cali-tw-{pod.host_iface}" in cluster.topo.exec(
            cn.node, "iptables-save", "-t", "filter").stdout
