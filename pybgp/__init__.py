"""pybgp: Calico-style pure-L3 container networking in Python."""

__version__ = "0.1.0"
