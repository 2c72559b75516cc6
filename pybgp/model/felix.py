"""Specs of the cluster-configuration kinds: FelixConfiguration, ClusterInformation.

FelixConfiguration has ~190 fields in Calico.  Decision: the fields the pybgp
agent reads are typed and validated here; every *other* field Calico defines
(the names in ``FELIX_OTHER_FIELDS``) is accepted and kept verbatim in
``extra`` (so a Calico object round-trips), and a name Calico does not define
is rejected like any unknown field.  No defaults are applied: as in Calico,
an unset field means "Felix's built-in default".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pybgp.model import values as v
from pybgp.model.network import LOG_SEVERITIES
from pybgp.model.schema import F, Struct, dump_struct, join, struct


def _dump_duration(d: v.Duration) -> str:
    return str(d)


@dataclass
class ProtoPort(Struct):
    """A failsafe port: ``{protocol: tcp, port: 22, net: ...}``."""

    protocol: str = ""
    port: int = 0
    net: str = ""

    FIELDS = (
        F("protocol", "protocol", v.enum("TCP", "UDP", "SCTP", fold=True)),
        F("port", "port", v.integer(0, 65535), always=True, required=True),
        F("net", "net", v.net),
    )


@dataclass
class RouteTableRange(Struct):
    min: int = 0
    max: int = 0

    FIELDS = (F("min", "min", v.integer(1, 250), always=True, required=True),
              F("max", "max", v.integer(1, 250), always=True, required=True))

    def finish(self, path: str) -> None:
        if self.min > self.max:
            raise v.fail(join(path, "min"), f"min {self.min} is greater than max {self.max}")


_severity = v.enum(*LOG_SEVERITIES, fold=True)
_ports = v.list_of(struct(ProtoPort))
_dump_structs = v.dump_list(dump_struct)


def _d(json: str, attr: str) -> F:
    return F(json, attr, v.duration, _dump_duration, ptr=True)


# Names of every other FelixConfigurationSpec field in Calico (kept as-is).
_FELIX_OTHER = """
nodeSelector useInternalDataplaneDriver dataplaneDriver dataplaneWatchdogTimeout
interfaceRefreshInterval iptablesPostWriteCheckInterval iptablesLockProbeInterval
featureDetectOverride featureGates maxIpsetSize iptablesBackend xdpRefreshInterval
netlinkTimeout metadataAddr metadataPort openstackRegion iptablesFilterDenyAction logPrefix
logActionRateLimit logActionRateLimitBurst logFilePath logDebugFilenameRegex ipipMTU vxlanMTU
vxlanMTUV6 vxlanPort vxlanVNI allowVXLANPacketsFromWorkloads allowIPIPPacketsFromWorkloads
endpointReportingEnabled endpointReportingDelay endpointStatusPathPrefix
disableConntrackInvalidCheck healthTimeoutOverrides prometheusGoMetricsEnabled
prometheusProcessMetricsEnabled prometheusWireGuardMetricsEnabled prometheusMetricsCAFile
prometheusMetricsCertFile prometheusMetricsKeyFile prometheusMetricsClientAuth
kubeNodePortRanges policySyncPathPrefix usageReportingEnabled usageReportingInitialDelay
usageReportingInterval natPortRange natOutgoingExclusions deviceRouteSourceAddress
deviceRouteSourceAddressIPv6 programClusterRoutes ipForwarding externalNodesList
debugMemoryProfilePath debugDisableLogDropping debugSimulateCalcGraphHangAfter
debugSimulateDataplaneHangAfter debugSimulateDataplaneApplyDelay debugHost debugPort
iptablesNATOutgoingInterfaceFilter sidecarAccelerationEnabled xdpEnabled genericXDPEnabled
nftablesMode nftablesFlowTableOffload nftablesFlowTableDataIfacePattern
nftablesRefreshInterval nftablesFilterAllowAction nftablesMangleAllowAction
nftablesFilterDenyAction nftablesMarkMask bpfEnabled bpfOverlayHostSourceIP
bpfDisableUnprivileged bpfJITHardening bpfLogLevel bpfConntrackLogLevel bpfConntrackMode
bpfConntrackTimeouts bpfIPFragTimeout bpfLogFilters bpfCTLBLogFilter bpfDataIfacePattern
bpfL3IfacePattern bpfConnectTimeLoadBalancingEnabled bpfConnectTimeLoadBalancing
bpfHostNetworkedNATWithoutCTLB bpfExternalServiceMode bpfDSROptoutCIDRs
bpfExtToServiceConnmark bpfKubeProxyIptablesCleanupEnabled bpfKubeProxyMinSyncPeriod
bpfKubeProxyHealthzPort bpfPSNATPorts bpfMapSizeNATFrontend bpfMapSizeNATBackend
bpfMapSizeNATAffinity bpfMapSizeRoute bpfMapSizeConntrack bpfMapSizePerCpuConntrack
bpfMapSizeConntrackScaling bpfMapSizeConntrackCleanupQueue bpfMapSizeIPSets
bpfMapSizeIfState bpfHostConntrackBypass bpfIPFragmentReassemblyEnabled bpfEnforceRPF
bpfPolicyDebugEnabled bpfForceTrackPacketsFromIfaces bpfDisableGROForIfaces
bpfExcludeCIDRsFromNAT bpfExportBufferSizeMB istioAmbientMode istioDSCPMark cgroupV2Path
flowLogsPolicyEvaluationMode bpfRedirectToPeer bpfAttachType flowLogsFlushInterval
flowLogsCollectorDebugTrace flowLogsGoldmaneServer flowLogsLocalReporter bpfProfiling
routeSource routeTableRanges routeSyncDisabled ipv4NormalRoutePriority
ipv4ElevatedRoutePriority ipv6NormalRoutePriority ipv6ElevatedRoutePriority
liveMigrationRouteConvergenceTime wireguardEnabled wireguardEnabledV6
wireguardThreadingEnabled wireguardListeningPort wireguardListeningPortV6
wireguardRoutingRulePriority wireguardInterfaceName wireguardInterfaceNameV6 wireguardMTU
wireguardMTUV6 wireguardHostEncryptionEnabled wireguardKeepAlive awsSrcDstCheck
serviceLoopPrevention workloadSourceSpoofing mtuIfacePattern floatingIPs
localSubnetL2Reachability localSubnetL2ReachabilityRefreshInterval
windowsManageFirewallRules goGCThreshold goMemoryLimitMB goMaxProcs requireMTUFile
bpfMaglevMaxEndpointsPerService bpfMaglevMaxServices
"""
FELIX_OTHER_FIELDS = frozenset(_FELIX_OTHER.split())


@dataclass
class FelixConfigurationSpec(Struct):
    log_severity_screen: str = ""
    log_severity_file: str = ""
    log_severity_sys: str = ""
    ipv6_support: bool | None = None
    route_refresh_interval: v.Duration | None = None
    iptables_refresh_interval: v.Duration | None = None
    ipsets_refresh_interval: v.Duration | None = None
    reporting_interval: v.Duration | None = None
    reporting_ttl: v.Duration | None = None
    interface_prefix: str = ""
    interface_exclude: str = ""
    chain_insert_mode: str = ""
    default_endpoint_to_host_action: str = ""
    iptables_filter_allow_action: str = ""
    iptables_mangle_allow_action: str = ""
    iptables_mark_mask: int | None = None
    ipip_enabled: bool | None = None
    vxlan_enabled: bool | None = None
    health_enabled: bool | None = None
    health_host: str | None = None
    health_port: int | None = None
    prometheus_metrics_enabled: bool | None = None
    prometheus_metrics_host: str = ""
    prometheus_metrics_port: int | None = None
    failsafe_inbound_host_ports: list[ProtoPort] | None = None
    failsafe_outbound_host_ports: list[ProtoPort] | None = None
    nat_outgoing_address: str = ""
    device_route_protocol: int | None = None
    remove_external_routes: bool | None = None
    route_table_range: RouteTableRange | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    PASSTHROUGH = FELIX_OTHER_FIELDS
    FIELDS = (
        F("logSeverityScreen", "log_severity_screen", _severity),
        F("logSeverityFile", "log_severity_file", _severity),
        F("logSeveritySys", "log_severity_sys", _severity),
        F("ipv6Support", "ipv6_support", v.boolean, ptr=True),
        _d("routeRefreshInterval", "route_refresh_interval"),
        _d("iptablesRefreshInterval", "iptables_refresh_interval"),
        _d("ipsetsRefreshInterval", "ipsets_refresh_interval"),
        _d("reportingInterval", "reporting_interval"),
        _d("reportingTTL", "reporting_ttl"),
        F("interfacePrefix", "interface_prefix", v.string),
        F("interfaceExclude", "interface_exclude", v.string),
        F("chainInsertMode", "chain_insert_mode", v.enum("Insert", "Append")),
        F("defaultEndpointToHostAction", "default_endpoint_to_host_action",
          v.enum("Drop", "Accept", "Return")),
        F("iptablesFilterAllowAction", "iptables_filter_allow_action",
          v.enum("Accept", "Return")),
        F("iptablesMangleAllowAction", "iptables_mangle_allow_action",
          v.enum("Accept", "Return")),
        F("iptablesMarkMask", "iptables_mark_mask", v.integer(0, 0xFFFFFFFF), ptr=True),
        F("ipipEnabled", "ipip_enabled", v.boolean, ptr=True),
        F("vxlanEnabled", "vxlan_enabled", v.boolean, ptr=True),
        F("healthEnabled", "health_enabled", v.boolean, ptr=True),
        F("healthHost", "health_host", v.string, ptr=True),
        F("healthPort", "health_port", v.integer(0, 65535), ptr=True),
        F("prometheusMetricsEnabled", "prometheus_metrics_enabled", v.boolean, ptr=True),
        F("prometheusMetricsHost", "prometheus_metrics_host", v.string),
        F("prometheusMetricsPort", "prometheus_metrics_port", v.integer(0, 65535), ptr=True),
        F("failsafeInboundHostPorts", "failsafe_inbound_host_ports", _ports, _dump_structs,
          ptr=True),
        F("failsafeOutboundHostPorts", "failsafe_outbound_host_ports", _ports, _dump_structs,
          ptr=True),
        F("natOutgoingAddress", "nat_outgoing_address", v.ip(4)),
        F("deviceRouteProtocol", "device_route_protocol", v.integer(0, 255), ptr=True),
        F("removeExternalRoutes", "remove_external_routes", v.boolean, ptr=True),
        F("routeTableRange", "route_table_range", struct(RouteTableRange), dump_struct,
          ptr=True),
    )


@dataclass
class ClusterInformationSpec(Struct):
    cluster_guid: str = ""
    cluster_type: str = ""
    calico_version: str = ""
    datastore_ready: bool | None = None
    variant: str = ""

    FIELDS = (
        F("clusterGUID", "cluster_guid", v.string),
        F("clusterType", "cluster_type", v.string),
        F("calicoVersion", "calico_version", v.string),
        F("datastoreReady", "datastore_ready", v.boolean, ptr=True),
        F("variant", "variant", v.string),
    )
