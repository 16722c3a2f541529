#!/usr/bin/env bash
# Makes sure Redis (127.0.0.1:6379), MariaDB (127.0.0.1:3306, root with an
# empty password) and etcd (127.0.0.1:2379) answer: installs the Debian
# package of any that is missing, starts it without systemd, waits for it,
# then applies the MySQL schema. Idempotent: safe to run any number of times.
set -euo pipefail
cd "$(dirname "$0")/.."

STATE_DIR="${PUSHGW_STATE_DIR:-/tmp/pushgw}"
mkdir -p "$STATE_DIR"
log() { echo "deps: $*" >&2; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # port name seconds
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    port_open "$1" && return 0
    sleep 0.1
  done
  log "$2 did not come up on 127.0.0.1:$1 within $3s"; return 1
}

APT_UPDATED=""
apt_install() {
  command -v apt-get >/dev/null || { log "apt-get not found; install $* by hand"; return 1; }
  if [[ -z "$APT_UPDATED" ]]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    APT_UPDATED=1
  fi
  log "installing $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_redis() {
  port_open 6379 && return 0
  command -v redis-server >/dev/null || apt_install redis-server
  # A package's install script may have started it already.
  port_open 6379 && return 0
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/pushgw.log
  wait_port 6379 redis 20
}

ensure_mariadb() {
  if ! port_open 3306; then
    command -v mariadbd >/dev/null || [[ -x /usr/sbin/mariadbd ]] || apt_install mariadb-server mariadb-client
    if ! port_open 3306; then
      mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld 2>/dev/null || true
      start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
      wait_port 3306 mariadb 60
    fi
  fi
  # A fresh Debian install lets root in over the socket only; pushgw and
  # its tests log in over TCP as root with an empty password.
  if ! mariadb -h 127.0.0.1 -uroot -e 'select 1' >/dev/null 2>&1; then
    mariadb -uroot -e "ALTER USER root@localhost IDENTIFIED VIA mysql_native_password USING PASSWORD('') OR unix_socket; FLUSH PRIVILEGES;"
  fi
  mariadb -h 127.0.0.1 -uroot -e 'CREATE DATABASE IF NOT EXISTS pushgw CHARACTER SET utf8mb4'
}

ensure_etcd() {
  # The binary is needed even when some etcd already answers: tests that
  # stop and restart etcd run a private one (internal/etcdtest).
  command -v etcd >/dev/null || apt_install etcd-server
  port_open 2379 && return 0
  mkdir -p "$STATE_DIR/etcd"
  # Debian's package may start nothing (no systemd here); run our own.
  ETCD_UNSUPPORTED_ARCH= setsid nohup etcd --name pushgw-dev --data-dir "$STATE_DIR/etcd/data" \
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster pushgw-dev=http://127.0.0.1:2380 \
    --auto-compaction-retention 1h --quota-backend-bytes 2147483648 \
    >"$STATE_DIR/etcd/etcd.log" 2>&1 </dev/null &
  echo $! >"$STATE_DIR/etcd/etcd.pid"
  wait_port 2379 etcd 30
}

ensure_redis
ensure_mariadb
ensure_etcd

# Schema: saver carries its versioned migrations and applies them.
# -contract: a development database has no savers of an older release.
go run ./services/saver -migrate-only -contract -mysql "${PUSHGW_MYSQL_DSN:-root@tcp(127.0.0.1:3306)/pushgw?parseTime=true}"
log "redis, mariadb and etcd are up; schema applied"
