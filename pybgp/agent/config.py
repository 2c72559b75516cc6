"""The agent's effective configuration (pure).

Felix reads its settings from, in increasing priority: built-in defaults,
FelixConfiguration ``default``, FelixConfiguration ``node.<node>``, then its
own environment and config file. pybgp's agent does the same with command
line flags in the last place: a flag given on the command line wins over
the datastore, a flag left out lets the datastore decide.

Must never: do I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

from pybgp.model.felix import FelixConfigurationSpec

#: Felix's default failsafe ports (protocol, port).
FAILSAFE_IN = (("tcp", 22), ("udp", 68), ("tcp", 179), ("tcp", 2379), ("tcp", 2380),
               ("tcp", 5473), ("tcp", 6443), ("tcp", 6666), ("tcp", 6667))
FAILSAFE_OUT = (("udp", 53), ("udp", 67), ("tcp", 179), ("tcp", 2379), ("tcp", 2380),
                ("tcp", 5473), ("tcp", 6443), ("tcp", 6666), ("tcp", 6667))


@dataclass(frozen=True)
class Config:
    route_refresh: float = 90.0
    iptables_refresh: float = 180.0
    ipsets_refresh: float = 90.0
    reporting_interval: float = 30.0
    endpoint_to_host_action: str = "Drop"  # Drop / Accept / Return
    filter_allow_action: str = "Accept"
    health_enabled: bool = True
    health_host: str = "127.0.0.1"
    health_port: int = 9099
    metrics_enabled: bool = True
    metrics_host: str = ""
    metrics_port: int = 9091
    nat_outgoing_address: str = ""
    log_severity: str = "Info"
    interface_prefix: str = "cali"
    failsafe_in: tuple[tuple[str, int], ...] = FAILSAFE_IN
    failsafe_out: tuple[tuple[str, int], ...] = FAILSAFE_OUT
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


def _from_spec(spec: FelixConfigurationSpec) -> dict[str, Any]:
    """The settings one FelixConfiguration sets (unset fields are left out)."""
    out: dict[str, Any] = {}

    def put(name: str, value: Any) -> None:
        if value is not None and value != "":
            out[name] = value

    for attr, name in (("route_refresh_interval", "route_refresh"),
                       ("iptables_refresh_interval", "iptables_refresh"),
                       ("ipsets_refresh_interval", "ipsets_refresh"),
                       ("reporting_interval", "reporting_interval")):
        d = getattr(spec, attr)
        put(name, d.seconds if d is not None else None)
    put("endpoint_to_host_action", spec.default_endpoint_to_host_action)
    put("filter_allow_action", spec.iptables_filter_allow_action)
    put("health_enabled", spec.health_enabled)
    put("health_host", spec.health_host)
    put("health_port", spec.health_port)
    put("metrics_enabled", spec.prometheus_metrics_enabled)
    put("metrics_host", spec.prometheus_metrics_host)
    put("metrics_port", spec.prometheus_metrics_port)
    put("nat_outgoing_address", spec.nat_outgoing_address)
    put("log_severity", spec.log_severity_screen)
    put("interface_prefix", spec.interface_prefix.split(",")[0] if spec.interface_prefix
        else None)
    for attr, name in (("failsafe_inbound_host_ports", "failsafe_in"),
                       ("failsafe_outbound_host_ports", "failsafe_out")):
        ports = getattr(spec, attr)
        if ports is not None:
            out[name] = tuple(((p.protocol or "TCP").lower(), p.port) for p in ports)
    return out


def effective(default: FelixConfigurationSpec | None, node: FelixConfigurationSpec | None,
              overrides: dict[str, Any] | None = None) -> Config:
    """Defaults < ``default`` < ``node.<name>`` < ``overrides`` (flags given)."""
    values: dict[str, Any] = {}
    for spec in (default, node):
        if spec is not None:
            values.update(_from_spec(spec))
    known = {f.name for f in fields(Config)}
    values.update({k: v for k, v in (overrides or {}).items() if v is not None and k in known})
    # A refresh interval of 0 disables that refresh in Felix; keep a floor so a
    # typo cannot turn the agent into a busy loop.
    for name in ("route_refresh", "iptables_refresh", "ipsets_refresh"):
        if name in values and values[name] is not None and 0 < values[name] < 0.5:
            values[name] = 0.5
    return replace(Config(), **values)
