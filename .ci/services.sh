# Sourced by .ci/run: install (when missing) and start redis-server and PostgreSQL from Debian's
# packages on free loopback ports, export their URLs for the tests, stop them on exit.
# PostgreSQL refuses to run as root, so as root its commands run as the packages' postgres user.

services_dir=$(mktemp -d)
chmod 755 "$services_dir"

as_postgres() {
  if [ "$(id -u)" -eq 0 ]; then
    su postgres -s /bin/sh -c "$(printf '%q ' "$@")"
  else
    "$@"
  fi
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

install_services() {
  local missing=()
  command -v redis-server >/dev/null || missing+=(redis-server)
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

start_services() {
  install_services
  local pg_bin redis_port pg_port pg_user
  pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  redis_port=$(free_port)
  redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
    --dir "$services_dir" --pidfile "$services_dir/redis.pid" --logfile "$services_dir/redis.log"
  pg_port=$(free_port)
  mkdir "$services_dir/pg"
  [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$services_dir/pg"
  as_postgres "$pg_bin/initdb" -D "$services_dir/pg/data" -A trust -E UTF8 --no-sync >/dev/null
  as_postgres "$pg_bin/pg_ctl" -D "$services_dir/pg/data" -l "$services_dir/pg/log" -w \
    -o "-p $pg_port -c listen_addresses=127.0.0.1 -k $services_dir/pg -c fsync=off" start >/dev/null
  pg_user=$([ "$(id -u)" -eq 0 ] && echo postgres || id -un)
  export TEST_REDIS_URL="redis://127.0.0.1:$redis_port/0"
  export TEST_DATABASE_URL="postgresql+asyncpg://$pg_user@127.0.0.1:$pg_port/postgres"
  PG_BIN=$pg_bin
  echo "redis on 127.0.0.1:$redis_port, postgresql on 127.0.0.1:$pg_port"
}

stop_services() {
  if [ -n "${PG_BIN:-}" ] && [ -d "$services_dir/pg/data" ]; then
    as_postgres "$PG_BIN/pg_ctl" -D "$services_dir/pg/data" -m fast -w stop >/dev/null 2>&1 || true
  fi
  if [ -f "$services_dir/redis.pid" ]; then
    kill "$(cat "$services_dir/redis.pid")" 2>/dev/null || true
  fi
  rm -rf "$services_dir"
}
