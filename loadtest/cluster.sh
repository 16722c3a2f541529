#!/usr/bin/env bash
# A pushgw cluster for load tests, apart from `make run`'s: cluster "bench",
# ports 17000+, Redis DB 5, MySQL database pushgw_bench, app "bench".
#   loadtest/cluster.sh start   build into $BENCH_DIR/bin and start
#   loadtest/cluster.sh stop    stop what start started (by pid file)
#   loadtest/cluster.sh restart-room  a fresh room-1 (baseline for memory)
#   loadtest/cluster.sh env     print the variables pushload needs
# Processes, logs and pid files live under $BENCH_DIR (default /tmp/pgbench).
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH_DIR="${BENCH_DIR:-/tmp/pgbench}"
BIN="$BENCH_DIR/bin"
RUN="$BENCH_DIR/run"
CLUSTER="${BENCH_CLUSTER:-bench}"
ETCD="${PUSHGW_ETCD:-127.0.0.1:2379}"
REDIS_DB="${BENCH_REDIS_DB:-5}"
MYSQL_DB="${BENCH_MYSQL_DB:-pushgw_bench}"
HEARTBEAT="${BENCH_HEARTBEAT:-30s}"
APP=bench
mkdir -p "$RUN/logs" "$RUN/pids"

PROCS=(
  "register|register|-grpc 127.0.0.1:17400 -admin 127.0.0.1:17401 -redis-db $REDIS_DB"
  "saver|saver|-grpc 127.0.0.1:17500 -admin 127.0.0.1:17501 -redis-db $REDIS_DB -mysql root@tcp(127.0.0.1:3306)/$MYSQL_DB?parseTime=true"
  "coordinator|coordinator|-grpc 127.0.0.1:17600 -admin 127.0.0.1:17601"
  "center|center|-http 127.0.0.1:17000 -admin 127.0.0.1:17001 -grpc-api 127.0.0.1:17002"
  "room-1|room|-tcp 127.0.0.1:17300 -grpc 127.0.0.1:17301 -admin 127.0.0.1:17302 -heartbeat $HEARTBEAT"
)

alive() { [[ -f "$RUN/pids/$1.pid" ]] && kill -0 "$(cat "$RUN/pids/$1.pid")" 2>/dev/null; }

creds() {
  if [[ ! -f "$RUN/creds" ]]; then
    umask 077
    printf 'SECRET=%s\nAPI_KEY=%s\n' "$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')" \
      "$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')" >"$RUN/creds"
  fi
  # shellcheck disable=SC1091
  source "$RUN/creds"
}

print_env() {
  creds
  cat <<ENV
export PUSHGW_APP_SECRET=$SECRET
export PUSHGW_API_KEY=$API_KEY
export BENCH_ROOM_PID=$(cat "$RUN/pids/room-1.pid" 2>/dev/null || echo 0)
ENV
}

start() {
  creds
  go build -o "$BIN/" ./services/... ./cmd/pushctl ./loadtest/cmd/pushload
  redis-cli -n "$REDIS_DB" flushdb >/dev/null
  "$BIN/pushctl" app put --etcd "$ETCD" --cluster "$CLUSTER" --name "$APP" --secret "$SECRET" --api-key "$API_KEY"
  local p name bin args i
  for p in "${PROCS[@]}"; do
    IFS='|' read -r name bin args <<<"$p"
    alive "$name" && continue
    # shellcheck disable=SC2086
    PUSHGW_CLUSTER="$CLUSTER" PUSHGW_ETCD="$ETCD" PUSHGW_INSTANCE="bench-$name" \
      setsid nohup "$BIN/$bin" $args >>"$RUN/logs/$name.log" 2>&1 </dev/null &
    echo $! >"$RUN/pids/$name.pid"
    admin=$(sed -n 's/.*-admin \([^ ]*\).*/\1/p' <<<"$args")
    for ((i = 0; i < 150; i++)); do
      curl -fsS "http://$admin/healthz" >/dev/null 2>&1 && break
      alive "$name" || { echo "bench: $name exited:" >&2; tail -n 20 "$RUN/logs/$name.log" >&2; exit 1; }
      sleep 0.1
    done
  done
  print_env
}

stop() {
  local f pid i
  for f in "$RUN"/pids/*.pid; do
    [[ -e "$f" ]] || continue
    pid=$(cat "$f")
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid"
      for ((i = 0; i < 150; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    fi
    rm -f "$f"
  done
}

# restart-room gives memory measurements a fresh room-1 as baseline.
restart_room() {
  local pid i
  if alive room-1; then
    pid=$(cat "$RUN/pids/room-1.pid")
    kill -TERM "$pid"
    for ((i = 0; i < 300; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$RUN/pids/room-1.pid"
  start >/dev/null
  sleep 2
  print_env
}

case "${1:-}" in
  start) start ;;
  restart-room) restart_room ;;
  stop) stop ;;
  env) print_env ;;
  *) echo "usage: $0 start|stop|restart-room|env" >&2; exit 2 ;;
esac
