"""Calico projectcalico.org/v3 resources as typed, validated models.

Public entry points (see each module for details)::

    parse_resource(doc) -> Resource        # validate + default one decoded document
    parse_documents(text, source) -> [...] # YAML/JSON stream, List kinds expanded
    Resource.to_dict() / .to_json() / .etcd_key() / .validated()
    KINDS, KindInfo, lookup_kind(alias), key_for(info, name, ns), parse_key(key)
    selector.parse(text).matches(labels)
    names.wep_name(node, orchestrator, pod, endpoint)
    columns.columns(kind, wide)

Modules: values (scalar converters), schema (field tables), selector, names,
network / endpoints / policy / felix (specs per kind group), kinds, resource,
columns.  The model imports nothing from pybgp except ``pybgp.errors``.
"""

from pybgp.model.endpoints import HostEndpointSpec, WorkloadEndpointSpec
from pybgp.model.felix import ClusterInformationSpec, FelixConfigurationSpec
from pybgp.model.kinds import (
    API_VERSION,
    KEY_PREFIX,
    KINDS,
    KindInfo,
    key_for,
    kind_from_key,
    lookup_kind,
    parse_key,
    prefix_for,
)
from pybgp.model.names import wep_name
from pybgp.model.network import (
    BGPConfigurationSpec,
    BGPPeerSpec,
    IPPoolSpec,
    NodeBGPSpec,
    NodeSpec,
)
from pybgp.model.policy import (
    EntityRule,
    GlobalNetworkPolicySpec,
    NetworkPolicySpec,
    ProfileSpec,
    Rule,
)
from pybgp.model.resource import (
    Metadata,
    Resource,
    new_resource,
    parse_documents,
    parse_json,
    parse_resource,
)
from pybgp.model.values import Duration, Port

__all__ = [
    "API_VERSION", "KEY_PREFIX", "KINDS", "BGPConfigurationSpec", "BGPPeerSpec",
    "ClusterInformationSpec", "Duration", "EntityRule", "FelixConfigurationSpec",
    "GlobalNetworkPolicySpec", "HostEndpointSpec", "IPPoolSpec", "KindInfo", "Metadata",
    "NetworkPolicySpec", "NodeBGPSpec", "NodeSpec", "Port", "ProfileSpec", "Resource", "Rule",
    "WorkloadEndpointSpec", "key_for", "kind_from_key", "lookup_kind", "new_resource",
    "parse_documents", "parse_json", "parse_key", "parse_resource", "prefix_for", "wep_name",
]
