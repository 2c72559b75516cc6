"""``pybgp lab``: a whole pybgp cluster in network namespaces on one machine.

``plan`` (pure: names, addresses, labels, resources, reflectors, paths),
``report`` and ``picture`` (pure: tables, the ping matrix, SVG), ``peers`` (a
real BIRD 2 or GoBGP router; the route reflectors are ``pybgp reflector``s
the harness starts), ``agents`` (each node's agent as its health and metrics
report it, against the agent's own calculation over etcd), ``lab`` (up /
attach / status / exec / pods / down, on the harness in ``pybgp.testing``).
The CLI is ``pybgp.cli.lab``.
"""
