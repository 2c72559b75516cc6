#!/usr/bin/env bash
# The pybgp demo: a throw-away etcd on 127.0.0.1 (private port, temporary
# data dir), the example Calico v3 resources applied with `pybgp apply`, and
# read back with `pybgp get`. Everything it starts is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m pybgp.demo "$@"
