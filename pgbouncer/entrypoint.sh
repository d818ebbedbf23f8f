#!/bin/sh
# Renders pgbouncer.ini and the auth file from env into a private runtime directory, then
# execs PgBouncer. No password is ever written into the image or the repository.
set -eu
: "${DB_NAME:=app}" "${DB_REPLICA_NAME:=app_replica}" "${DB_USER:=app}"
: "${PRIMARY_HOST:=db-primary}" "${REPLICA_HOST:=db-replica}"
: "${PGBOUNCER_POOL_SIZE:=20}" "${PGBOUNCER_MAX_CLIENT_CONN:=2000}"
: "${DB_PASSWORD:?DB_PASSWORD must be set}"
RUN_DIR=/tmp/pgbouncer
export DB_NAME DB_REPLICA_NAME DB_USER PRIMARY_HOST REPLICA_HOST PGBOUNCER_POOL_SIZE \
  PGBOUNCER_MAX_CLIENT_CONN RUN_DIR

umask 077
mkdir -p "$RUN_DIR"
# The auth file holds the password PgBouncer uses for SCRAM with both client and server.
escaped=$(printf '%s' "$DB_PASSWORD" | sed 's/"/""/g')
printf '"%s" "%s"\n' "$DB_USER" "$escaped" > "$RUN_DIR/userlist.txt"
# Substitute only ${NAME} placeholders, so no other character of the template is touched.
awk '{
  while (match($0, /\$\{[A-Z_]+\}/)) {
    name = substr($0, RSTART + 2, RLENGTH - 3)
    $0 = substr($0, 1, RSTART - 1) ENVIRON[name] substr($0, RSTART + RLENGTH)
  }
  print
}' /etc/pgbouncer/pgbouncer.ini.template > "$RUN_DIR/pgbouncer.ini"
exec pgbouncer "$RUN_DIR/pgbouncer.ini"
