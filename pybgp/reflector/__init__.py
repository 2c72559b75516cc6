"""``pybgp reflector``: a BGP route reflector (RFC 4456) for many Calico nodes.

Its own sans-IO sessions (``session``, ``peer``), ExaBGP's message classes
as the codec (``wire``, ``codec``), update groups that encode each UPDATE
once for all their members (``groups``), the speaker's pure RIB and the
shared RFC 4456 rules (``pybgp.speaker.rib``, ``pybgp.speaker.rr``) in a
pure core (``core``), and a thin asyncio shell (``daemon``). See
docs/reflector.md.

Must never: import the speaker's daemon or anything impure of it (only its
pure rib/rr/policy/format modules and the control-socket server).
"""
