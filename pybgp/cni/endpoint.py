"""The WorkloadEndpoint a CNI attachment writes, Calico's way.

Name: ``wep_name(node, orchestrator, pod|containerID, endpoint)`` — orchestrator
``k8s`` when ``K8S_POD_NAME`` is in CNI_ARGS (namespace = the pod's
namespace, profile ``kns.<namespace>``), else ``cni`` (namespace
``default``, profile = the network name). Labels
``projectcalico.org/namespace`` and ``projectcalico.org/orchestrator``.

The endpoint's profile is created when it does not exist yet (never
changed when it does), before the endpoint, so the agent never sees an
endpoint whose profile is missing — a missing profile drops all of the
pod's traffic, as in Felix. What is created is what Calico would have: for
a Kubernetes pod, ``kns.<namespace>`` allowing everything and applying
``pcns.projectcalico.org/name: <namespace>`` (what kube-controllers write
for a namespace, pybgp having no kube-controllers); otherwise a profile
named after the network that allows traffic from its own members
(``has(<network>)``) and everything out, as Calico's plugin makes one in
etcd mode.

Invariants: every write is compare-and-swap; an endpoint of the same pod
with another containerID (a stale sandbox) is replaced; delete removes an
endpoint only while its containerID is the caller's; an existing profile is
never written.
"""

from __future__ import annotations

import json
from typing import Any

from pybgp.cni import spec
from pybgp.cni.config import Settings
from pybgp.datastore.kv import KV, Check, Delete, KVStore
from pybgp.errors import AlreadyExistsError, ConflictError

WEP_PREFIX = "/calico/resources/v3/projectcalico.org/workloadendpoints/"
CAS_ATTEMPTS = 10


class Identity:
    """Where the endpoint of one attachment lives."""

    def __init__(self, s: Settings, req: spec.Request):
        from pybgp.model.names import wep_name

        self.k8s = bool(req.pod_name)
        self.orchestrator = "k8s" if self.k8s else "cni"
        self.namespace = (req.pod_namespace or "default") if self.k8s else "default"
        self.pod = req.pod_name
        self.node = s.nodename
        self.container_id = req.container_id
        self.endpoint = req.ifname
        self.name = wep_name(self.node, self.orchestrator, self.pod, self.endpoint,
                             container_id=req.container_id)
        self.profile = f"kns.{self.namespace}" if self.k8s else s.network

    @property
    def key(self) -> str:
        return f"{WEP_PREFIX}{self.namespace}/{self.name}"


def build(ident: Identity, ip: str, host_ifname: str, mac: str) -> Any:
    """The validated WorkloadEndpoint resource."""
    from pybgp.model import WorkloadEndpointSpec, new_resource

    wep_spec = WorkloadEndpointSpec(
        orchestrator=ident.orchestrator,
        node=ident.node,
        container_id=ident.container_id,
        pod=ident.pod,
        endpoint=ident.endpoint,
        ip_networks=[f"{ip}/32"],
        profiles=[ident.profile],
        interface_name=host_ifname,
        mac=mac,
    )
    if not ident.k8s:
        wep_spec.workload = ident.container_id
    labels = {"projectcalico.org/namespace": ident.namespace,
              "projectcalico.org/orchestrator": ident.orchestrator}
    return new_resource("WorkloadEndpoint", ident.name, wep_spec, namespace=ident.namespace,
                        labels=labels)


PROFILE_PREFIX = "/calico/resources/v3/projectcalico.org/profiles/"
NAMESPACE_NAME_LABEL = "pcns.projectcalico.org/name"


def profile_spec(ident: Identity) -> dict[str, Any]:
    """The spec of the profile Calico would have made for ``ident``'s endpoints."""
    if ident.k8s:
        return {"ingress": [{"action": "Allow"}], "egress": [{"action": "Allow"}],
                "labelsToApply": {NAMESPACE_NAME_LABEL: ident.namespace}}
    return {"ingress": [{"action": "Allow", "source": {"selector": f"has({ident.profile})"}}],
            "egress": [{"action": "Allow"}], "labelsToApply": {ident.profile: ""}}


def ensure_profile(kv: KVStore, ident: Identity) -> bool:
    """Create ``ident``'s profile unless it exists. True if this call made it."""
    if kv.get(PROFILE_PREFIX + ident.profile) is not None:
        return False
    from pybgp.datastore.resources import ResourceStore
    from pybgp.model import parse_resource

    res = parse_resource({"apiVersion": "projectcalico.org/v3", "kind": "Profile",
                          "metadata": {"name": ident.profile}, "spec": profile_spec(ident)})
    try:
        ResourceStore(kv).create(res)
    except AlreadyExistsError:
        return False  # another ADD made it meanwhile: theirs stands
    return True


def write(kv: KVStore, wep: Any) -> None:
    """Create the endpoint, or replace one left by an earlier sandbox of the pod (CAS)."""
    from pybgp.datastore.resources import ResourceStore

    store = ResourceStore(kv)
    try:  # the common case, one round trip: no endpoint for this pod yet
        store.create(wep)
        return
    except AlreadyExistsError:
        pass
    for _ in range(CAS_ATTEMPTS):
        current = kv.get(wep.etcd_key())
        try:
            if current is None:
                store.create(wep)
            else:
                wep.metadata.resource_version = str(current.mod_revision)
                store.update(wep)
            return
        except ConflictError:
            continue
    raise ConflictError(f"WorkloadEndpoint {wep.metadata.name} kept changing", key=wep.etcd_key())


def read(kv: KVStore, key: str) -> tuple[KV, dict[str, Any]] | None:
    item = kv.get(key)
    if item is None:
        return None
    return item, json.loads(item.value)


def delete_if_ours(kv: KVStore, key: str, container_id: str) -> bool:
    """Delete the endpoint at ``key`` iff its containerID is ``container_id``."""
    for _ in range(CAS_ATTEMPTS):
        found = read(kv, key)
        if found is None:
            return False
        item, doc = found
        if (doc.get("spec") or {}).get("containerID") != container_id:
            return False
        try:
            kv.txn([Check(key, item.mod_revision)], [Delete(key)])
            return True
        except ConflictError:
            continue
    raise ConflictError(f"WorkloadEndpoint {key} kept changing", key=key)


def of_node(kv: KVStore, node: str) -> list[tuple[KV, dict[str, Any]]]:
    """Every WorkloadEndpoint whose spec.node is ``node``."""
    kvs, _ = kv.list(WEP_PREFIX)
    out = []
    for item in kvs:
        try:
            doc = json.loads(item.value)
        except ValueError:
            continue
        if (doc.get("spec") or {}).get("node") == node:
            out.append((item, doc))
    return out


def delete_exact(kv: KVStore, item: KV) -> bool:
    try:
        kv.txn([Check(item.key, item.mod_revision)], [Delete(item.key)])
        return True
    except ConflictError:
        return False

