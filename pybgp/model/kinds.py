"""The registry of Calico v3 kinds, their CLI aliases and their etcd keys.

``KINDS`` maps each kind ("IPPool") to a :class:`KindInfo`: plural used in
keys, whether it is namespaced, the calicoctl aliases (case-insensitive), the
spec class and the name rule.  Keys are
``/calico/resources/v3/projectcalico.org/<plural>/[<namespace>/]<name>``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pybgp.errors import ValidationError
from pybgp.model.endpoints import HostEndpointSpec, WorkloadEndpointSpec
from pybgp.model.felix import ClusterInformationSpec, FelixConfigurationSpec
from pybgp.model.network import BGPConfigurationSpec, BGPPeerSpec, IPPoolSpec, NodeSpec
from pybgp.model.policy import GlobalNetworkPolicySpec, NetworkPolicySpec, ProfileSpec
from pybgp.model.schema import Struct
from pybgp.model.values import NAME_LABEL, NAME_SUBDOMAIN

API_VERSION = "projectcalico.org/v3"
KEY_PREFIX = "/calico/resources/v3/projectcalico.org/"
MAX_NAME_LENGTH = 253

_SUBDOMAIN_RE = re.compile(f"^{NAME_SUBDOMAIN}$")
_GNP_NAME_RE = re.compile(rf"^({NAME_LABEL}\.)?{NAME_LABEL}$")
_NP_NAME_RE = re.compile(
    rf"^(({NAME_LABEL})(\.{NAME_LABEL})?|(knp|ossg)\.default\.{NAME_SUBDOMAIN})$")
_NAME_HINT = "lower case alphanumerics, '-' and '.', starting and ending alphanumeric"
_POLICY_HINT = "lower case alphanumerics and '-', with at most one '.' for a tier prefix"


@dataclass(frozen=True)
class KindInfo:
    kind: str
    plural: str
    namespaced: bool
    aliases: tuple[str, ...]
    spec_cls: type[Struct]
    name_re: re.Pattern[str] = _SUBDOMAIN_RE
    name_hint: str = _NAME_HINT

    def check_name(self, name: str) -> None:
        """Raise ``ValidationError`` (field metadata.name) unless ``name`` is valid."""
        if not isinstance(name, str) or not name:
            raise ValidationError("name is required", field="metadata.name")
        if len(name) > MAX_NAME_LENGTH or not self.name_re.match(name):
            raise ValidationError(f"invalid name '{name}' ({self.name_hint})",
                                  field="metadata.name")

    def key(self, name: str, namespace: str | None = None) -> str:
        return key_for(self, name, namespace)


def _k(kind: str, plural: str, spec: type[Struct], aliases: str, *, namespaced: bool = False,
       name_re: re.Pattern[str] = _SUBDOMAIN_RE, name_hint: str = _NAME_HINT) -> KindInfo:
    return KindInfo(kind, plural, namespaced, tuple(aliases.split()), spec, name_re, name_hint)


KINDS: dict[str, KindInfo] = {info.kind: info for info in (
    _k("IPPool", "ippools", IPPoolSpec, "ippool ippools ipp ipps pool pools"),
    _k("BGPConfiguration", "bgpconfigurations", BGPConfigurationSpec,
       "bgpconfiguration bgpconfigurations bgpconfig bgpconfigs"),
    _k("BGPPeer", "bgppeers", BGPPeerSpec, "bgppeer bgppeers bgpp bgpps bp bps"),
    _k("Node", "nodes", NodeSpec, "node nodes no nos"),
    _k("WorkloadEndpoint", "workloadendpoints", WorkloadEndpointSpec,
       "workloadendpoint workloadendpoints wep weps", namespaced=True),
    _k("HostEndpoint", "hostendpoints", HostEndpointSpec,
       "hostendpoint hostendpoints hep heps"),
    _k("Profile", "profiles", ProfileSpec, "profile profiles pro pros"),
    _k("NetworkPolicy", "networkpolicies", NetworkPolicySpec,
       "networkpolicy networkpolicies policy np policies pol pols netpol netpols",
       namespaced=True, name_re=_NP_NAME_RE, name_hint=_POLICY_HINT),
    _k("GlobalNetworkPolicy", "globalnetworkpolicies", GlobalNetworkPolicySpec,
       "globalnetworkpolicy globalnetworkpolicies gnp gnps",
       name_re=_GNP_NAME_RE, name_hint=_POLICY_HINT),
    _k("FelixConfiguration", "felixconfigurations", FelixConfigurationSpec,
       "felixconfiguration felixconfigurations felixconfig felixconfigs"),
    _k("ClusterInformation", "clusterinformations", ClusterInformationSpec,
       "clusterinformation clusterinformations clusterinfo clusterinfos"),
)}

_BY_ALIAS: dict[str, KindInfo] = {}
for _info in KINDS.values():
    for _alias in (_info.kind, _info.plural, *_info.aliases):
        _BY_ALIAS[_alias.lower()] = _info
_BY_PLURAL = {info.plural: info for info in KINDS.values()}


def lookup_kind(name: str) -> KindInfo:
    """The kind for a kind name, plural or CLI alias (case-insensitive)."""
    info = _BY_ALIAS.get(str(name).lower())
    if info is None:
        raise ValidationError(f"unknown resource kind '{name}'")
    return info


def key_for(info: KindInfo, name: str, namespace: str | None = None) -> str:
    """The etcd key of a resource; ``namespace`` is required for namespaced kinds."""
    if info.namespaced:
        if not namespace:
            raise ValidationError(f"{info.kind} needs a namespace", field="metadata.namespace")
        return f"{KEY_PREFIX}{info.plural}/{namespace}/{name}"
    if namespace:
        raise ValidationError(f"{info.kind} is not namespaced", field="metadata.namespace")
    return f"{KEY_PREFIX}{info.plural}/{name}"


def prefix_for(info: KindInfo, namespace: str | None = None) -> str:
    """The key prefix listing every resource of a kind (optionally one namespace)."""
    base = f"{KEY_PREFIX}{info.plural}/"
    return f"{base}{namespace}/" if info.namespaced and namespace else base


def parse_key(key: str) -> tuple[KindInfo, str | None, str]:
    """``(kind, namespace or None, name)`` of a resource key."""
    if not key.startswith(KEY_PREFIX):
        raise ValidationError(f"not a Calico v3 resource key '{key}'")
    parts = key[len(KEY_PREFIX):].split("/")
    info = _BY_PLURAL.get(parts[0])
    if info is None:
        raise ValidationError(f"unknown resource kind in key '{key}'")
    expected = 3 if info.namespaced else 2
    if len(parts) != expected or not all(parts[1:]):
        raise ValidationError(f"malformed {info.kind} key '{key}'")
    return (info, parts[1], parts[2]) if info.namespaced else (info, None, parts[1])


def kind_from_key(key: str) -> KindInfo:
    return parse_key(key)[0]
