#!/usr/bin/env bash
# loadtest/run.sh SCENARIO [--backend memory|redis] [--duration SECONDS]
#
# Starts what the scenario needs (tollgate on the built-in config, Redis for
# --backend redis) on free loopback ports, runs the scenario — with ghz when
# it is installed (loadtest/ghz/SCENARIO.json), else with the local
# generator (benches/loadgen.rs) — and prints one summary line: requests/s,
# p50, p99, p99.9, errors, OK vs OVER_LIMIT, and whether they match what the
# scenario expects. Bounded in time and count; loopback only; stops itself.
#
# Scenarios: hot uniform zipf mixed storm anonymous
set -euo pipefail
cd "$(dirname "$0")/.."

SCENARIO=${1:?usage: loadtest/run.sh SCENARIO [--backend memory|redis] [--duration SECONDS]}
shift
BACKEND=memory
DURATION=10
while [ $# -gt 0 ]; do
  case "$1" in
    --backend) BACKEND=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
case "$SCENARIO" in hot|uniform|zipf|mixed|storm|anonymous) ;; *) echo "unknown scenario $SCENARIO" >&2; exit 2 ;; esac

cargo build --release --quiet --bin tollgate --bench loadgen
LOADGEN=$(ls -t target/release/deps/loadgen-* | grep -v '\.d$' | head -1)

source loadtest/lib.sh
args=()
if [ "$BACKEND" = redis ]; then
  start_redis
  args=(--backend redis --redis-url "redis://127.0.0.1:$RPORT")
fi
start_tollgate "${args[@]}"
GPORT=$PORT HPORT=$HTTP_PORT
users=10000
if command -v ghz >/dev/null; then
  (cd loadtest/ghz && [ -f zipf-data.json ] || python3 make-data.py)
  (cd loadtest/ghz && ghz --config "$SCENARIO.json" --host "127.0.0.1:$GPORT" --duration "${DURATION}s" --format summary)
  # ghz counts gRPC codes only; OK vs OVER_LIMIT come from tollgate's counters.
  curl -s "127.0.0.1:$HPORT/metrics" | awk '/^tollgate_decisions_total/ { split($1, a, "code=\""); split(a[2], b, "\""); n[b[1]] += $2 }
    END { printf "decisions ok=%d over_limit=%d\n", n["ok"], n["over_limit"] }'
else
  echo "ghz not installed: running $SCENARIO with benches/loadgen.rs" >&2
  "$LOADGEN" --scenario "$SCENARIO" --addr "127.0.0.1:$GPORT" --users "$users" --concurrency 64 \
    --duration "$DURATION" --max-requests 5000000 | sed "s/^/scenario=$SCENARIO backend=$BACKEND /"
fi
