#!/usr/bin/env bash
# Makes sure the PostgreSQL and Redis the tests need are reachable on 127.0.0.1:
# start them when they are installed but stopped, install them with apt-get when missing,
# and fail loudly (never skip) when they still cannot be reached.
set -euo pipefail

PG_HOST=127.0.0.1 PG_PORT=5432 REDIS_PORT=6379

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

pg_up() { python3 - <<PY
import socket, sys
s = socket.socket(); s.settimeout(1)
sys.exit(0 if s.connect_ex(("$PG_HOST", $PG_PORT)) == 0 else 1)
PY
}
redis_up() { python3 - <<PY
import socket, sys
s = socket.socket(); s.settimeout(1)
try:
    s.connect(("127.0.0.1", $REDIS_PORT)); s.sendall(b"PING\r\n"); sys.exit(0 if s.recv(16).startswith(b"+PONG") else 1)
except OSError:
    sys.exit(1)
PY
}
wait_for() { # name, check function
  for _ in $(seq 1 30); do "$2" && return 0; sleep 1; done
  return 1
}

if ! pg_up; then
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    echo "ensure-services: PostgreSQL is not installed; installing it with apt-get" >&2
    as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql
    ver=$(ls /etc/postgresql | head -n1)
    as_root sed -i "s/^#\?listen_addresses.*/listen_addresses = '127.0.0.1'/" "/etc/postgresql/$ver/main/postgresql.conf"
    for hba in "/etc/postgresql/$ver/main/pg_hba.conf"; do
      as_root sed -i -E 's/(peer|scram-sha-256|md5)$/trust/' "$hba"
    done
  fi
  echo "ensure-services: starting PostgreSQL" >&2
  as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  if ! wait_for postgres pg_up; then
    echo "ensure-services: FATAL: PostgreSQL is still unreachable on $PG_HOST:$PG_PORT" >&2
    exit 1
  fi
fi

if ! redis_up; then
  if ! command -v redis-server >/dev/null 2>&1; then
    echo "ensure-services: Redis is not installed; installing it with apt-get" >&2
    as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server
  fi
  echo "ensure-services: starting Redis" >&2
  redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no
  if ! wait_for redis redis_up; then
    echo "ensure-services: FATAL: Redis is still unreachable on 127.0.0.1:$REDIS_PORT" >&2
    exit 1
  fi
fi

echo "ensure-services: PostgreSQL and Redis are reachable" >&2
