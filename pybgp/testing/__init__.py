"""Test and lab harness: a real etcd per session and network-namespace topologies.

Owns: starting/stopping throwaway etcd servers (`etcd.EtcdServer`), building
namespace topologies (`netns.Topology`) and the pure naming/address rules they
share (`names`).

Must never: touch the root network namespace, use addresses outside the lab
ranges (198.18.0.0/16 nodes, 198.19.0.0/16 pods, 2001:db8::/32 IPv6), or
remove anything it did not create itself (clean-up is by recorded name/PID).
"""

from pybgp.testing.etcd import EtcdError, EtcdServer
from pybgp.testing.names import (
    LabAddressError,
    cali_name,
    check_lab_destination,
    check_node_address,
    check_pod_address,
    make_run_id,
)
from pybgp.testing.netns import (
    CommandError,
    Node,
    Pod,
    Topology,
    leftover_namespaces,
    list_namespaces,
    remove_namespaces,
)

__all__ = [
    "CommandError",
    "EtcdError",
    "EtcdServer",
    "LabAddressError",
    "Node",
    "Pod",
    "Topology",
    "cali_name",
    "check_lab_destination",
    "check_node_address",
    "check_pod_address",
    "leftover_namespaces",
    "list_namespaces",
    "make_run_id",
    "remove_namespaces",
]
