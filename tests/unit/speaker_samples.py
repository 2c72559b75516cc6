"""BIRD protocol rows shared by the speaker's formatting and control-socket tests."""

from pybgp.speaker.birdfmt import BgpStatus, ProtocolInfo, RouteStats

MESH = ProtocolInfo(
    name="Mesh_198_18_0_12", proto="BGP", state="up", since="05:12:02",
    description="Connection to BGP peer", output_filter="packet_bgp",
    stats=RouteStats(imported=1, exported=2, preferred=1, import_updates=(1, 0, 0, 0, 1),
                     export_updates=(3, 1, 0, 2)),
    bgp=BgpStatus(state="Established", neighbor_address="198.18.0.12", neighbor_as=64512,
                  neighbor_id="198.18.0.12", neighbor_caps=("refresh", "restart-able", "AS4"),
                  session=("internal", "multihop", "AS4"), source_address="198.18.0.11",
                  hold_timer=(215, 240), keepalive_timer=(43, 80)))
GLOBAL_DOWN = ProtocolInfo(
    name="Global_198_18_0_1", proto="BGP", state="start", since="2017-07-25",
    bgp=BgpStatus(state="Active", neighbor_address="198.18.0.1", neighbor_as=64513,
                  last_error="Socket: Connection refused", connect_delay=(3, 5)))
OTHERS = [ProtocolInfo(name=n, proto=t, state="up", since="2017-07-25")
          for n, t in (("static1", "Static"), ("kernel1", "Kernel"), ("device1", "Device"),
                       ("direct1", "Direct"))]
