"""Specs of the endpoint kinds: WorkloadEndpoint and HostEndpoint.

WorkloadEndpoint follows libcalico-go: ``ipNetworks`` are single addresses
(/32, /128), NATs must lie inside them, gateways match their family, and
``interfaceName`` is required.  The WEP *name* rule (it must equal the name
built from node/orchestrator/pod/endpoint) lives in resource.py because it
needs the metadata too.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import ClassVar

from pybgp.model import values as v
from pybgp.model.schema import F, Struct, checked, dump_struct, join, struct

_dump_structs = v.dump_list(dump_struct)


@dataclass
class IPNAT(Struct):
    internal_ip: str = ""
    external_ip: str = ""

    FIELDS = (F("internalIP", "internal_ip", v.ip(), always=True),
              F("externalIP", "external_ip", v.ip(), always=True))


@dataclass
class EndpointPort(Struct):
    """A named port of an endpoint (policy can refer to it by name)."""

    name: str = ""
    protocol: int | str = "TCP"
    port: int = 0
    host_port: int = 0
    host_ip: str = ""

    FIELDS: ClassVar[tuple[F, ...]] = (
        F("name", "name", v.string, always=True),
        F("protocol", "protocol", v.protocol, always=True, required=True),
        F("port", "port", v.integer(1, 65535), always=True, required=True),
    )

    def finish(self, path: str) -> None:
        if not v.protocol_has_ports(self.protocol):
            raise v.fail(join(path, "protocol"),
                         f"protocol {self.protocol} does not support ports")


@dataclass
class WorkloadEndpointPort(EndpointPort):
    FIELDS = EndpointPort.FIELDS + (
        F("hostPort", "host_port", v.integer(0, 65535), always=True),
        F("hostIP", "host_ip", v.string, always=True),
    )

    def finish(self, path: str) -> None:
        super().finish(path)
        if self.host_ip:
            v.net(self.host_ip, join(path, "hostIP"))
        if not self.name and not self.host_port:
            raise v.fail(join(path, "name"), "port name must not be empty without a hostPort")


def _single_address(value: object, path: str) -> str:
    text = v.net(value, path)
    net = ipaddress.ip_network(text, strict=False)
    if net.num_addresses != 1:
        raise v.fail(path, f"IP network '{text}' contains multiple addresses")
    return text


@dataclass
class WorkloadEndpointSpec(Struct):
    orchestrator: str = ""
    workload: str = ""
    node: str = ""
    container_id: str = ""
    pod: str = ""
    endpoint: str = ""
    service_account_name: str = ""
    ip_networks: list[str] = field(default_factory=list)
    ip_nats: list[IPNAT] = field(default_factory=list)
    ipv4_gateway: str = ""
    ipv6_gateway: str = ""
    profiles: list[str] = field(default_factory=list)
    interface_name: str = ""
    mac: str = ""
    ports: list[WorkloadEndpointPort] = field(default_factory=list)
    allow_spoofed_source_prefixes: list[str] = field(default_factory=list)

    FIELDS = (
        F("orchestrator", "orchestrator", v.name),
        F("workload", "workload", v.name),
        F("node", "node", v.name),
        F("containerID", "container_id", v.container_id),
        F("pod", "pod", v.name),
        F("endpoint", "endpoint", v.name),
        F("serviceAccountName", "service_account_name", v.name),
        F("ipNetworks", "ip_networks", v.list_of(_single_address)),
        F("ipNATs", "ip_nats", v.list_of(struct(IPNAT)), _dump_structs),
        F("ipv4Gateway", "ipv4_gateway", v.ip(4)),
        F("ipv6Gateway", "ipv6_gateway", v.ip(6)),
        F("profiles", "profiles", v.list_of(v.name)),
        F("interfaceName", "interface_name", v.interface_name, required=True),
        F("mac", "mac", v.mac),
        F("ports", "ports", v.list_of(struct(WorkloadEndpointPort)), _dump_structs),
        F("allowSpoofedSourcePrefixes", "allow_spoofed_source_prefixes", v.list_of(v.net)),
    )

    @property
    def addresses(self) -> list[str]:
        """The endpoint's addresses without prefix length."""
        return [text.split("/")[0] for text in self.ip_networks]

    def finish(self, path: str) -> None:
        if not self.node:
            raise v.fail(join(path, "node"), "required field is missing")
        nets = [ipaddress.ip_network(t, strict=False) for t in self.ip_networks]
        for i, nat in enumerate(self.ip_nats):
            inside = ipaddress.ip_address(nat.internal_ip)
            if not any(inside in n for n in nets if n.version == inside.version):
                raise v.fail(f"{join(path, 'ipNATs')}[{i}].internalIP",
                             f"NAT address '{nat.internal_ip}' is not in the endpoint's "
                             "ipNetworks")


@dataclass
class HostEndpointSpec(Struct):
    node: str = ""
    interface_name: str = ""
    expected_ips: list[str] = field(default_factory=list)
    profiles: list[str] = field(default_factory=list)
    ports: list[EndpointPort] = field(default_factory=list)

    FIELDS = (
        F("node", "node", v.name),
        F("interfaceName", "interface_name",
          checked(v.string, lambda s: None if s == "*" or v.valid_interface(s)
                    else f"invalid interface name '{s}'")),
        F("expectedIPs", "expected_ips", v.list_of(v.ip())),
        F("profiles", "profiles", v.list_of(v.name)),
        F("ports", "ports", v.list_of(struct(EndpointPort)), _dump_structs),
    )

    def finish(self, path: str) -> None:
        if not self.interface_name and not self.expected_ips:
            raise v.fail(join(path, "interfaceName"),
                         "one of interfaceName or expectedIPs is required")
        if self.interface_name == "*" and not self.node:
            raise v.fail(join(path, "node"), "node is required with interfaceName '*'")
