#!/usr/bin/env bash
# Install everything pybgp, its tests and its demo need on Debian 12 (as root):
# the Debian packages (etcd, BIRD 2, GoBGP, iproute2, iptables, ipset, ping,
# the reference CNI plugins…) and a venv in .venv with pybgp installed.
# Idempotent: a second run installs nothing new. `--demo` runs the demo after
# (`--demo --keep` leaves its lab running).
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  etcd-server etcd-client bird2 gobgpd iproute2 iptables ipset iputils-ping
  containernetworking-plugins tcpdump socat prometheus-bird-exporter
  python3 python3-venv python3-dev procps openssl systemd
)

if [[ $(id -u) -ne 0 ]]; then
  echo "setup.sh must run as root (it installs Debian packages)" >&2
  exit 1
fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "== installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# Debian starts these daemons on install; pybgp runs its own, in namespaces.
for svc in etcd bird gobgpd prometheus-bird-exporter; do
  if command -v systemctl >/dev/null && systemctl is-active --quiet "$svc" 2>/dev/null; then
    systemctl disable --now "$svc" >/dev/null 2>&1 || true
  fi
done

# Debian's own interpreter (built with PGO and LTO) starts in ~12 ms where a
# self-built one took 16-23 ms here; the CNI plugin pays that on every pod start.
PY=${PYTHON:-/usr/bin/python3}
if [[ -x .venv/bin/python && $(readlink -f .venv/bin/python) != $(readlink -f "$PY") ]]; then
  echo "== .venv was made with another interpreter; recreating it with $PY"
  rm -rf .venv
fi
if [[ ! -x .venv/bin/python ]]; then
  echo "== creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.pybgp-installed
if [[ ! -f $stamp || pyproject.toml -nt $stamp ]]; then
  echo "== installing pybgp into .venv"
  .venv/bin/pip install -q --disable-pip-version-check -e '.[dev]'
  touch "$stamp"
fi

if [[ ${1:-} == --demo ]]; then
  shift
  exec ./scripts/demo.sh "$@"
fi
