#!/usr/bin/env bash
# The pybgp demo (as root): `pybgp lab up` builds three nodes with two pods
# each and an external BIRD router in network namespaces, shows a node's
# routes and BGP sessions, the cluster's resources and the pod-to-pod ping
# matrix, then `pybgp lab down` removes everything. `--keep` leaves it up.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m pybgp.demo "$@"
