"""The CNI network configuration list pybgp installs on a node (the template).

One function renders it; ``pybgp install-cni`` writes its result into the
node's CNI conf dir, ``pybgp lab`` writes one per lab node the same way, and
``configs/cni/10-pybgp.conflist`` is its output for the example values (a
unit test keeps the file equal to the template). The plugins, in the order a
runtime runs them: ``pybgp-cni`` (with ``pybgp-ipam`` in-process), then the
reference ``portmap`` plugin (``hostPort`` mappings, from ``runtimeConfig``).

Must never: import anything beyond the standard library (the CLI and the
harness load it), or leave out a key a caller gave.
"""

from __future__ import annotations

from typing import Any

NETWORK = "k8s-pod-network"  # Calico's name: IPAM handles are "<network>.<containerID>"
FILENAME = "10-pybgp.conflist"
CNI_VERSION = "1.0.0"  # Debian's reference plugins (portmap 1.1.1) accept up to 1.0.0


def conflist(*, etcd_endpoints: str | None = None, etcd_ca_cert_file: str | None = None,
             etcd_cert_file: str | None = None, etcd_key_file: str | None = None,
             nodename: str | None = None, daemon_socket: str | None = None,
             mtu: int = 1500, log_level: str = "info",
             network: str = NETWORK) -> dict[str, Any]:
    """The conflist: unset values are left out (the plugin's own defaults apply)."""
    if not 68 <= mtu <= 65535:
        raise ValueError(f"mtu {mtu} out of range 68-65535")
    plugin: dict[str, Any] = {"type": "pybgp-cni", "log_level": log_level, "mtu": mtu}
    for key, value in (("etcd_endpoints", etcd_endpoints),
                       ("etcd_ca_cert_file", etcd_ca_cert_file),
                       ("etcd_cert_file", etcd_cert_file), ("etcd_key_file", etcd_key_file),
                       ("nodename", nodename), ("daemon_socket", daemon_socket)):
        if value:
            plugin[key] = value
    plugin["ipam"] = {"type": "pybgp-ipam"}
    return {
        "cniVersion": CNI_VERSION,
        "name": network,
        "plugins": [plugin, {"type": "portmap", "snat": True,
                             "capabilities": {"portMappings": True}}],
    }


# What configs/cni/10-pybgp.conflist is rendered from (tests compare the two).
EXAMPLE = {
    "etcd_endpoints": "https://198.18.0.1:2379,https://198.18.0.2:2379",
    "etcd_ca_cert_file": "/etc/pybgp/tls/ca.pem",
    "etcd_cert_file": "/etc/pybgp/tls/client.pem",
    "etcd_key_file": "/etc/pybgp/tls/client-key.pem",
    "nodename": "node-1",
}
