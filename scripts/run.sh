#!/usr/bin/env bash
# Local cluster for development: `make run` (start) and `make stop`.
# Starts one register, saver, coordinator, center and dispatcher and two
# rooms in the background; logs and pid files live under .run/. Running
# `start` while the cluster is up only reprints how to use it.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
RUN_DIR="${PUSHGW_RUN_DIR:-$ROOT/.run}"
BIN="${BIN:-$ROOT/bin}"
CLUSTER="${PUSHGW_CLUSTER:-local}"
ETCD="${PUSHGW_ETCD:-127.0.0.1:2379}"
APP="demo"
# Seven Go services share this box: run them co-located (docs/OPERATIONS.md,
# "Running on one small box"). PUSHGW_COLOCATED=0 keeps Go's defaults.
COLOCATED_ENV=()
if [[ "${PUSHGW_COLOCATED:-1}" == 1 ]]; then
  COLOCATED_ENV=(GOMAXPROCS=1 GODEBUG=schedtrace=2147483647)
fi
mkdir -p "$RUN_DIR/logs" "$RUN_DIR/pids"

# name|binary|args...
PROCS=(
  "register|register|-grpc 127.0.0.1:7400 -admin 127.0.0.1:7401"
  "saver|saver|-grpc 127.0.0.1:7500 -admin 127.0.0.1:7501"
  "coordinator|coordinator|-grpc 127.0.0.1:7600 -admin 127.0.0.1:7601"
  "center|center|-http 127.0.0.1:7000 -admin 127.0.0.1:7001"
  "dispatcher|dispatcher|-http 127.0.0.1:7080 -admin 127.0.0.1:7081"
  "room-1|room|-tcp 127.0.0.1:7300 -grpc 127.0.0.1:7301 -admin 127.0.0.1:7302"
  "room-2|room|-tcp 127.0.0.1:7310 -grpc 127.0.0.1:7311 -admin 127.0.0.1:7312"
)

alive() { [[ -f "$RUN_DIR/pids/$1.pid" ]] && kill -0 "$(cat "$RUN_DIR/pids/$1.pid")" 2>/dev/null; }

admin_of() { sed -n 's/.*-admin \([^ ]*\).*/\1/p' <<<"$1"; }

wait_healthy() { # name admin
  local i
  for ((i = 0; i < 150; i++)); do
    curl -fsS "http://$2/healthz" >/dev/null 2>&1 && return 0
    alive "$1" || { echo "run: $1 exited; last log lines:" >&2; tail -n 20 "$RUN_DIR/logs/$1.log" >&2; return 1; }
    sleep 0.1
  done
  echo "run: $1 not healthy on $2 after 15s; see $RUN_DIR/logs/$1.log" >&2
  return 1
}

demo_credentials() {
  # Generated once per checkout and kept, so tokens and keys survive restarts.
  if [[ ! -f "$RUN_DIR/demo.creds" ]]; then
    umask 077
    printf 'SECRET=%s\nAPI_KEY=%s\n' "$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')" \
      "$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')" >"$RUN_DIR/demo.creds"
  fi
  # shellcheck disable=SC1091
  source "$RUN_DIR/demo.creds"
}

write_env() {
  cat >"$RUN_DIR/env.sh" <<ENV
# Written by \`make run\`; source it: . $RUN_DIR/env.sh
export PUSHGW_CENTER_URL=http://127.0.0.1:7000
export PUSHGW_DISPATCHER_URL=http://127.0.0.1:7080
export PUSHGW_APP=$APP
export PUSHGW_API_KEY=$API_KEY
export PUSHGW_APP_SECRET=$SECRET
export PUSHGW_ETCD=$ETCD
export PUSHGW_CLUSTER=$CLUSTER
export PATH="$BIN:\$PATH"
ENV
  # pushctl also reads this copy when the variables are not set, so it works
  # in a fresh shell with nothing but --app and --user.
  local cfg="${XDG_CONFIG_HOME:-$HOME/.config}/pushgw"
  mkdir -p "$cfg" && cp "$RUN_DIR/env.sh" "$cfg/env.sh" && chmod 600 "$cfg/env.sh"
}

print_usage() {
  cat <<MSG

pushgw is running (cluster "$CLUSTER"):
  center      http://127.0.0.1:7000   (business API, /v1)
  dispatcher  http://127.0.0.1:7080   (GET /v1/endpoints)
  rooms       127.0.0.1:7300, 127.0.0.1:7310 (client TCP)
  admin       /metrics /healthz /debug/pprof on 127.0.0.1:7001 7081 7302 7312 7401 7501 7601
  logs        $RUN_DIR/logs/    pids: $RUN_DIR/pids/

demo app: $APP   API key: $API_KEY
environment: . $RUN_DIR/env.sh   (pushctl also finds a copy in ${XDG_CONFIG_HOME:-$HOME/.config}/pushgw/env.sh)

Try it (two shells):
  bin/pushctl listen --app demo --user alice --count 1 --timeout 30s
  bin/pushctl push --app demo --user alice --qos 1 hello
  bin/pushctl status <id>

or with curl:
  curl -s -H "Authorization: Bearer $API_KEY" -H 'Content-Type: application/json' \\
    -d '{"app":"demo","user":"alice","payload":"hello","qos":1,"ttl":3600}' http://127.0.0.1:7000/v1/push

Stop with: make stop
MSG
}

start() {
  demo_credentials
  write_env
  local all_up=1 p
  for p in "${PROCS[@]}"; do alive "${p%%|*}" || all_up=0; done
  if [[ $all_up == 1 ]]; then
    echo "run: cluster already running"
    print_usage
    return 0
  fi
  "$BIN/pushctl" app put --etcd "$ETCD" --cluster "$CLUSTER" --name "$APP" --secret "$SECRET" --api-key "$API_KEY"
  for p in "${PROCS[@]}"; do
    IFS='|' read -r name bin args <<<"$p"
    alive "$name" && continue
    # shellcheck disable=SC2086
    env "${COLOCATED_ENV[@]}" PUSHGW_CLUSTER="$CLUSTER" PUSHGW_ETCD="$ETCD" PUSHGW_INSTANCE="$name" \
      setsid nohup "$BIN/$bin" $args >>"$RUN_DIR/logs/$name.log" 2>&1 </dev/null &
    echo $! >"$RUN_DIR/pids/$name.pid"
  done
  for p in "${PROCS[@]}"; do
    IFS='|' read -r name bin args <<<"$p"
    wait_healthy "$name" "$(admin_of "$args")"
  done
  print_usage
}

stop() {
  local f pid name i
  for f in "$RUN_DIR"/pids/*.pid; do
    [[ -e "$f" ]] || continue
    pid=$(cat "$f"); name=$(basename "$f" .pid)
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      for ((i = 0; i < 150; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -0 "$pid" 2>/dev/null && { echo "run: $name did not stop in 15s; killing"; kill -KILL "$pid" 2>/dev/null || true; }
      echo "run: stopped $name ($pid)"
    fi
    rm -f "$f"
  done
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
