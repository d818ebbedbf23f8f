#!/bin/sh
# Renders pgbouncer.ini and the auth file from env into a private runtime directory, then
# execs PgBouncer. No password is ever written into the image or the repository.
set -eu
: "${DB_NAME:=app}" "${DB_REPLICA_NAME:=app_replica}" "${DB_USER:=app}"
: "${PRIMARY_HOST:=db-primary}" "${REPLICA_HOST:=db-replica}"
: "${PGBOUNCER_POOL_SIZE:=20}" "${PGBOUNCER_MAX_CLIENT_CONN:=2000}"
: "${DB_PASSWORD:?DB_PASSWORD must be set}"
: "${PGBOUNCER_STATS_USER:=pgbouncer_stats}"
case $(printf '%s' "${PGBOUNCER_LOG_DISCONNECTIONS:-}" | tr 'A-Z' 'a-z') in
  1 | true | yes | on) PGBOUNCER_LOG_DISCONNECTIONS=1 ;;
  '' | 0 | false | no | off) PGBOUNCER_LOG_DISCONNECTIONS=0 ;;
  *)
    echo "pgbouncer: PGBOUNCER_LOG_DISCONNECTIONS must be true or false," \
      "got '$PGBOUNCER_LOG_DISCONNECTIONS'" >&2
    exit 1
    ;;
esac
RUN_DIR=/tmp/pgbouncer
# Like the app (config/env.py): in production a secret still holding its local-development
# value (dev-only-...) is refused, on every start, before anything uses it.
if [ "${APP_ENV:-local}" = production ]; then
  for name in DB_PASSWORD PGBOUNCER_STATS_PASSWORD; do
    eval "value=\${$name:-}"
    case $value in
      dev-only-*)
        echo "pgbouncer: $name is a dev-only- value; set a real secret with APP_ENV=production" >&2
        exit 1
        ;;
    esac
  done
fi
export DB_NAME DB_REPLICA_NAME DB_USER PRIMARY_HOST REPLICA_HOST PGBOUNCER_POOL_SIZE \
  PGBOUNCER_MAX_CLIENT_CONN PGBOUNCER_LOG_DISCONNECTIONS RUN_DIR

umask 077
mkdir -p "$RUN_DIR"
# The auth file holds the password PgBouncer uses for SCRAM with both client and server.
auth_line() {
  printf '"%s" "%s"\n' "$(printf '%s' "$1" | sed 's/"/""/g')" "$(printf '%s' "$2" | sed 's/"/""/g')"
}
auth_line "$DB_USER" "$DB_PASSWORD" > "$RUN_DIR/userlist.txt"
# The exporter's login to the admin console (SHOW commands only: stats_users), its own name and
# password, never the app's; no Postgres role has its name, so it reaches no database. Without
# a password there is no such user and no one may read the statistics.
PGBOUNCER_STATS_USERS=
if [ -n "${PGBOUNCER_STATS_PASSWORD:-}" ]; then
  auth_line "$PGBOUNCER_STATS_USER" "$PGBOUNCER_STATS_PASSWORD" >> "$RUN_DIR/userlist.txt"
  PGBOUNCER_STATS_USERS=$PGBOUNCER_STATS_USER
fi
export PGBOUNCER_STATS_USERS
# Substitute only ${NAME} placeholders, so no other character of the template is touched.
awk '{
  while (match($0, /\$\{[A-Z_]+\}/)) {
    name = substr($0, RSTART + 2, RLENGTH - 3)
    $0 = substr($0, 1, RSTART - 1) ENVIRON[name] substr($0, RSTART + RLENGTH)
  }
  print
}' /etc/pgbouncer/pgbouncer.ini.template > "$RUN_DIR/pgbouncer.ini"
exec pgbouncer "$RUN_DIR/pgbouncer.ini"
