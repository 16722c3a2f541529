#!/usr/bin/env bash
# A local 3-member etcd for trying pushgw on one by hand:
#   scripts/etcd-cluster.sh start       # prints the -etcd value (a,b,c)
#   scripts/etcd-cluster.sh stop
#   scripts/etcd-cluster.sh endpoints   # prints the -etcd value of a running one
#   scripts/etcd-cluster.sh stop-member N / start-member N   # take member N (0-2) away and back
# Members listen on free loopback ports (a client and a peer port each) and
# keep their data under $PUSHGW_STATE_DIR/etcd-cluster (default /tmp/pushgw),
# so a stopped member rejoins with its data. Idempotent: start on a running,
# healthy cluster only prints its endpoints.
# Then e.g.: PUSHGW_ETCD=$(scripts/etcd-cluster.sh endpoints) bin/center
# Tests do not use this script: internal/etcdtest.StartCluster runs a
# private cluster per test (test/etcd_cluster_test.go).
set -euo pipefail

STATE_DIR="${PUSHGW_STATE_DIR:-/tmp/pushgw}/etcd-cluster"
FIRST_PORT="${PUSHGW_ETCD_CLUSTER_FIRST_PORT:-23790}" # search for free ports from here
MEMBERS=3
START_WAIT_S=30
log() { echo "etcd-cluster: $*" >&2; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

member_pid() { # N: pid of a running member, or nothing
  local f="$STATE_DIR/member$1/etcd.pid" pid
  pid=$(cat "$f" 2>/dev/null) || return 0
  kill -0 "$pid" 2>/dev/null && echo "$pid"
  return 0
}

endpoints() { [[ -f "$STATE_DIR/endpoints" ]] && cat "$STATE_DIR/endpoints"; }

healthy() { # every running member reports a leader
  local e ok=0
  e=$(endpoints) || return 1
  for ep in ${e//,/ }; do
    curl -fsS --max-time 1 "http://$ep/health" 2>/dev/null | grep -q '"health":"true"' && ok=$((ok + 1))
  done
  ((ok == MEMBERS))
}

start_member() { # N
  local n=$1 dir="$STATE_DIR/member$1"
  [[ -n "$(member_pid "$n")" ]] && return 0
  # shellcheck disable=SC1091
  source "$dir/args"
  ETCD_UNSUPPORTED_ARCH= setsid nohup etcd --name "member$n" --data-dir "$dir/data" \
    --listen-client-urls "$CLIENT_URL" --advertise-client-urls "$CLIENT_URL" \
    --listen-peer-urls "$PEER_URL" --initial-advertise-peer-urls "$PEER_URL" \
    --initial-cluster "$INITIAL" --initial-cluster-state new --initial-cluster-token "$TOKEN" \
    --logger zap --log-level warn >>"$dir/etcd.log" 2>&1 </dev/null &
  echo $! >"$dir/etcd.pid"
}

stop_member() { # N
  local pid i
  pid=$(member_pid "$1")
  [[ -z "$pid" ]] && return 0
  kill "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  log "member$1 (pid $pid) did not stop within 10s"
  return 1
}

wait_healthy() {
  local i
  for ((i = 0; i < START_WAIT_S * 10; i++)); do
    healthy && return 0
    sleep 0.1
  done
  log "not every member reports a leader within ${START_WAIT_S}s; logs in $STATE_DIR/member*/etcd.log"
  return 1
}

start() {
  command -v etcd >/dev/null || { log "etcd is needed (make deps installs etcd-server)"; exit 1; }
  local n running=0
  for ((n = 0; n < MEMBERS; n++)); do [[ -n "$(member_pid "$n")" ]] && running=$((running + 1)); done
  if ((running > 0)) && [[ -f "$STATE_DIR/endpoints" ]]; then
    # Same cluster: bring back any stopped member, keep the data.
    for ((n = 0; n < MEMBERS; n++)); do start_member "$n"; done
    wait_healthy
    endpoints
    return 0
  fi
  rm -rf "$STATE_DIR"
  mkdir -p "$STATE_DIR"
  local p=$FIRST_PORT ports=()
  while ((${#ports[@]} < 2 * MEMBERS && p < 60000)); do
    port_open "$p" || ports+=("$p")
    p=$((p + 1))
  done
  ((${#ports[@]} == 2 * MEMBERS)) || { log "not enough free ports from $FIRST_PORT"; exit 1; }
  local initial=() eps=() token="pushgw-local-$$-$(date +%s)"
  for ((n = 0; n < MEMBERS; n++)); do
    initial+=("member$n=http://127.0.0.1:${ports[$((2 * n + 1))]}")
    eps+=("127.0.0.1:${ports[$((2 * n))]}")
  done
  for ((n = 0; n < MEMBERS; n++)); do
    mkdir -p "$STATE_DIR/member$n"
    {
      echo "CLIENT_URL=http://${eps[$n]}"
      echo "PEER_URL=http://127.0.0.1:${ports[$((2 * n + 1))]}"
      echo "INITIAL=$(IFS=,; echo "${initial[*]}")"
      echo "TOKEN=$token"
    } >"$STATE_DIR/member$n/args"
  done
  (IFS=,; echo "${eps[*]}") >"$STATE_DIR/endpoints"
  for ((n = 0; n < MEMBERS; n++)); do start_member "$n"; done
  wait_healthy || { stop; exit 1; }
  log "$MEMBERS members up, state in $STATE_DIR"
  endpoints
}

stop() {
  local n
  for ((n = 0; n < MEMBERS; n++)); do stop_member "$n" || true; done
  log "stopped"
}

case "${1:-}" in
start) start ;;
stop) stop ;;
endpoints) endpoints || { log "no cluster started (run: $0 start)"; exit 1; } ;;
stop-member) stop_member "${2:?member number 0-2}" ;;
start-member) start_member "${2:?member number 0-2}" ;;
*) echo "usage: $0 start|stop|endpoints|stop-member N|start-member N" >&2; exit 2 ;;
esac
