#!/usr/bin/env bash
# A local 3-master Redis Cluster for trying pushgw on one by hand:
#   scripts/redis-cluster.sh start   # prints the -redis value (a,b,c)
#   scripts/redis-cluster.sh stop
#   scripts/redis-cluster.sh addrs   # prints the -redis value of a running one
# Each master is a redis-server in cluster mode on a free port (its bus port,
# +10000, free too), joined with `redis-cli --cluster create`. Nothing is
# saved but nodes.conf, so a restarted master keeps its slots and comes back
# empty, like the shared Redis of scripts/deps.sh. Idempotent: start on a
# running, healthy cluster only prints its addresses.
# Then e.g.: PUSHGW_REDIS=$(scripts/redis-cluster.sh addrs) PUSHGW_REDIS_DB=0 bin/saver
# Tests do not use this script: internal/redistest.StartCluster runs a
# private cluster per test (make test-redis-cluster).
set -euo pipefail

STATE_DIR="${PUSHGW_STATE_DIR:-/tmp/pushgw}/redis-cluster"
FIRST_PORT="${PUSHGW_REDIS_CLUSTER_FIRST_PORT:-7380}" # search for free ports from here
MASTERS=3
NODE_TIMEOUT_MS=5000
START_WAIT_S=20
log() { echo "redis-cluster: $*" >&2; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

running_pids() {
  local f
  for f in "$STATE_DIR"/node-*/redis.pid; do
    local pid
    # redis-server removes its pid file as it exits: it may vanish here.
    pid=$(cat "$f" 2>/dev/null) || continue
    kill -0 "$pid" 2>/dev/null && echo "$pid"
  done
  return 0
}

addrs() { [[ -f "$STATE_DIR/addrs" ]] && cat "$STATE_DIR/addrs"; }

healthy() {
  local a
  a=$(addrs) || return 1
  local first=${a%%,*}
  redis-cli -h "${first%:*}" -p "${first#*:}" cluster info 2>/dev/null | grep -q '^cluster_state:ok'
}

free_ports() { # prints MASTERS ports p with p and p+10000 free
  local p=$FIRST_PORT n=0 out=()
  while ((n < MASTERS && p < 55000)); do
    if ! port_open "$p" && ! port_open $((p + 10000)); then
      out+=("$p")
      n=$((n + 1))
    fi
    p=$((p + 1))
  done
  ((n == MASTERS)) || { log "found only $n free ports from $FIRST_PORT"; return 1; }
  echo "${out[@]}"
}

start() {
  command -v redis-server >/dev/null && command -v redis-cli >/dev/null ||
    { log "redis-server and redis-cli are needed (make deps installs them)"; exit 1; }
  if [[ -n "$(running_pids)" ]]; then
    if healthy; then
      addrs
      return 0
    fi
    log "a previous cluster in $STATE_DIR is half up; stopping it first"
    stop
  fi
  rm -rf "$STATE_DIR"
  mkdir -p "$STATE_DIR"
  local ports list=() p i
  read -r -a ports <<<"$(free_ports)"
  for i in "${!ports[@]}"; do
    p=${ports[$i]}
    local dir="$STATE_DIR/node-$i"
    mkdir -p "$dir"
    redis-server --bind 127.0.0.1 --port "$p" --dir "$dir" --save "" --appendonly no \
      --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout "$NODE_TIMEOUT_MS" \
      --cluster-require-full-coverage no \
      --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log"
    list+=("127.0.0.1:$p")
  done
  for p in "${ports[@]}"; do
    for ((i = 0; i < START_WAIT_S * 10; i++)); do
      redis-cli -p "$p" ping >/dev/null 2>&1 && break
      sleep 0.1
    done
    redis-cli -p "$p" ping >/dev/null 2>&1 || { log "node on $p did not answer within ${START_WAIT_S}s"; stop; exit 1; }
  done
  redis-cli --cluster create "${list[@]}" --cluster-replicas 0 --cluster-yes >"$STATE_DIR/create.log" 2>&1 ||
    { log "redis-cli --cluster create failed:"; cat "$STATE_DIR/create.log" >&2; stop; exit 1; }
  (IFS=,; echo "${list[*]}") >"$STATE_DIR/addrs"
  for ((i = 0; i < START_WAIT_S * 10; i++)); do
    healthy && break
    sleep 0.1
  done
  healthy || { log "cluster not ok within ${START_WAIT_S}s"; exit 1; }
  log "3 masters up, state in $STATE_DIR"
  addrs
}

stop() {
  local pid
  for pid in $(running_pids); do
    kill "$pid" 2>/dev/null || true
  done
  for pid in $(running_pids); do
    for ((i = 0; i < 50; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
  done
  log "stopped"
}

case "${1:-}" in
start) start ;;
stop) stop ;;
addrs) addrs || { log "no cluster started (run: $0 start)"; exit 1; } ;;
*) echo "usage: $0 start|stop|addrs" >&2; exit 2 ;;
esac
