# Shared by loadtest/run.sh and loadtest/bench.sh (source it from the repo
# root). Everything listens on loopback ports chosen here; every process
# started is stopped on exit.

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Starts a private redis-server; sets RPORT.
start_redis() {
  command -v redis-server >/dev/null || { echo "redis-server missing: apt-get install redis-server redis-tools" >&2; exit 1; }
  RPORT=$(free_port)
  redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" >/dev/null &
  pids+=($!)
  until redis-cli -p "$RPORT" ping >/dev/null 2>&1; do sleep 0.05; done
}

# Starts target/release/tollgate with extra flags; sets PORT (gRPC),
# HTTP_PORT, TOLLGATE_PID and LOG, and waits until it listens.
start_tollgate() {
  PORT=$(free_port)
  HTTP_PORT=$(free_port)
  LOG="$work/tollgate-$PORT.log"
  target/release/tollgate --grpc-addr "127.0.0.1:$PORT" --http-addr "127.0.0.1:$HTTP_PORT" --drain-secs 0 \
    --on-backend-error error --backend-timeout-ms 100 "$@" >/dev/null 2>"$LOG" &
  TOLLGATE_PID=$!
  pids+=($TOLLGATE_PID)
  until grep -q "gRPC listening" "$LOG" 2>/dev/null; do sleep 0.05; done
}
