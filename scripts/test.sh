#!/usr/bin/env bash
# Run every test of pybgp (as root): lint, type check, unit, component and
# system tests against real etcd, namespaces, BIRD and GoBGP. Installs what is
# missing first, so it works on a fresh Debian 12 clone.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
echo "== ruff"
.venv/bin/ruff check pybgp tests benchmarks
echo "== mypy"
.venv/bin/mypy pybgp
echo "== pytest"
exec .venv/bin/pytest -p no:cacheprovider "$@"
