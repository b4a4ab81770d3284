#!/usr/bin/env bash
# The Redis comparison in one run on this machine (loopback only, bounded):
#   1. redis-benchmark: EVALSHA of tollgate's own decide.lua, without and
#      with pipelining (-P 16) — the Redis ceiling;
#   2. tollgate --backend redis under benches/loadgen.rs, distinct users:
#      peak decisions/s, then p50/p99 at 80 % of that peak;
#   3. tollgate --backend memory vs a no-op ShouldRateLimit server on the
#      same tonic stack (benches/noop.rs) — the gRPC ceiling;
#   4. memory growth: RSS of tollgate-memory before and after 1M distinct
#      users, per live key (tollgate_memory_entries).
# Prints a table of figures and ratios. Needs redis-server, redis-tools.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-8}
USERS=${USERS:-100000}
CONC=${CONC:-128}

command -v redis-server >/dev/null || { echo "redis-server missing: apt-get install redis-server redis-tools" >&2; exit 1; }
cargo build --release --quiet --bin tollgate --bench loadgen --bench noop
LOADGEN=$(ls -t target/release/deps/loadgen-* | grep -v '\.d$' | head -1)
NOOP=$(ls -t target/release/deps/noop-* | grep -v '\.d$' | head -1)

source loadtest/lib.sh
start_redis

SHA=$(redis-cli -p "$RPORT" SCRIPT LOAD "$(cat src/store/redis/decide.lua)")
evalsha() {
  redis-benchmark -p "$RPORT" -n 200000 -c 50 -r 1000000 "$@" -q \
    EVALSHA "$SHA" 2 'tollgate:{b:u:__rand_int__}:b' 'tollgate:{b:u:__rand_int__}:m' \
    charge '' 1000 b 1 150 100 0 w 1 0 50000 0 | tr '\r' '\n' | grep -o '[0-9.]* requests per second' | tail -1 | cut -d' ' -f1
}
ceiling=$(evalsha)
ceiling_p16=$(evalsha -P 16)
redis-cli -p "$RPORT" FLUSHALL >/dev/null

serve() { start_tollgate --backend "$1" --redis-url "redis://127.0.0.1:$RPORT"; } # sets PORT
field() { tr ' ' '\n' | grep "^$1=" | cut -d= -f2; }

serve redis; GPORT=$PORT
"$LOADGEN" --addr "127.0.0.1:$GPORT" --users "$USERS" --concurrency "$CONC" --duration 2 >/dev/null # warm-up
peak_line=$("$LOADGEN" --addr "127.0.0.1:$GPORT" --users "$USERS" --concurrency "$CONC" --duration "$DURATION")
peak=$(echo "$peak_line" | field rps)
at80=$(python3 -c "print(int($peak * 0.8))")
p80_line=$("$LOADGEN" --addr "127.0.0.1:$GPORT" --users "$USERS" --concurrency "$CONC" --duration "$DURATION" --rps "$at80")

serve memory; MPORT=$PORT
mem_line=$("$LOADGEN" --addr "127.0.0.1:$MPORT" --users "$USERS" --concurrency "$CONC" --duration "$DURATION")
mem_peak=$(echo "$mem_line" | field rps)
mem_at80=$(python3 -c "print(int($mem_peak * 0.8))")
mem80_line=$("$LOADGEN" --addr "127.0.0.1:$MPORT" --users "$USERS" --concurrency "$CONC" --duration "$DURATION" --rps "$mem_at80")

NPORT=$(free_port)
"$NOOP" --addr "127.0.0.1:$NPORT" >/dev/null &
pids+=($!)
until python3 -c "import socket; socket.create_connection(('127.0.0.1', $NPORT))" 2>/dev/null; do sleep 0.05; done
noop_line=$("$LOADGEN" --addr "127.0.0.1:$NPORT" --users "$USERS" --concurrency "$CONC" --duration "$DURATION")
noop=$(echo "$noop_line" | field rps)

# Memory: a fresh tollgate-memory, 1M distinct users (about one call each).
serve memory; KPORT=$PORT
rss() { awk '/VmRSS/ { print $2 * 1024 }' "/proc/$TOLLGATE_PID/status"; }
rss_before=$(rss)
"$LOADGEN" --addr "127.0.0.1:$KPORT" --users 1000000 --concurrency "$CONC" --duration 120 --max-requests 1000000 >/dev/null
rss_after=$(rss)
entries=$(python3 -c "import urllib.request; print([l.split()[1] for l in urllib.request.urlopen('http://127.0.0.1:$HTTP_PORT/metrics').read().decode().splitlines() if l.startswith('tollgate_memory_entries ')][0])")

echo
echo "| measurement | figure |"
echo "|---|---|"
echo "| redis-benchmark EVALSHA decide.lua, unpipelined | ${ceiling} /s |"
echo "| redis-benchmark EVALSHA decide.lua, -P 16 | ${ceiling_p16} /s |"
echo "| tollgate-redis peak ($USERS users, $CONC in flight) | $peak_line |"
echo "| tollgate-redis at 80 % of peak ($at80 /s) | $p80_line |"
echo "| tollgate-memory peak | $mem_line |"
echo "| tollgate-memory at 80 % of peak ($mem_at80 /s) | $mem80_line |"
echo "| no-op server on the same tonic stack | $noop_line |"
python3 - "$peak" "$ceiling" "$ceiling_p16" "$mem_peak" "$noop" "$rss_before" "$rss_after" "$entries" <<'PY'
import sys
peak, c1, c16, mem, noop, before, after, entries = map(float, sys.argv[1:])
print(f"| tollgate-redis / unpipelined EVALSHA | {peak / c1:.2f} |")
print(f"| tollgate-redis / pipelined EVALSHA | {peak / c16:.2f} |")
print(f"| tollgate-memory / no-op ceiling | {mem / noop:.2f} |")
print(f"| memory: RSS {before / 2**20:.0f} MiB → {after / 2**20:.0f} MiB for {entries:.0f} live keys | {(after - before) / entries:.0f} bytes per live key |")
PY
