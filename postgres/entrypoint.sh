#!/bin/bash
# Starts PostgreSQL as the primary or as a streaming replica (PG_ROLE), initialising an empty
# data directory on first start and reusing it (data intact) on every later start.
set -euo pipefail

role=${PG_ROLE:-primary}
: "${DB_NAME:=app}" "${DB_USER:=app}" "${REPLICATION_USER:=replicator}"
: "${MONITORING_DB_USER:=monitoring}"
# The app's statement_timeout, set on its role: PgBouncer's transaction pooling rejects it as a
# startup parameter. Above Gunicorn's request timeout would be pointless; 15s keeps a runaway
# query from holding a pooled server connection.
: "${DB_STATEMENT_TIMEOUT:=15s}"
# The server's net for a session left idle in a transaction (a stalled shell or script): ended,
# its locks freed. Nothing in a request idles that long (the worker's timeout ends it first).
: "${POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT:=60s}"

require() {
  local name=$1
  if [ -z "${!name:-}" ]; then
    echo "entrypoint: $name must be set" >&2
    exit 1
  fi
}

# Like the app (config/env.py): in production a secret still holding its local-development
# value (dev-only-...) is refused, on every start, before anything uses it.
refuse_dev_only() {
  local name
  [ "${APP_ENV:-local}" = production ] || return 0
  for name in "$@"; do
    case "${!name:-}" in
      dev-only-*)
        echo "entrypoint: $name is a dev-only- value; set a real secret with APP_ENV=production" >&2
        exit 1
        ;;
    esac
  done
}

start_postgres() {
  exec postgres -D "$PGDATA" -c config_file=/etc/postgresql/postgresql.conf \
    -c idle_in_transaction_session_timeout="$POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT" "$@"
}

init_primary() {
  require DB_PASSWORD
  require REPLICATION_PASSWORD
  echo "entrypoint: initialising the primary in $PGDATA"
  # The superuser has no password: only the local OS user reaches it (pg_hba: peer).
  initdb --username=postgres --encoding=UTF8 --locale=C.UTF-8 --data-checksums \
    --auth-local=peer --auth-host=scram-sha-256 -D "$PGDATA" >/dev/null
  pg_ctl -D "$PGDATA" -w -o "-c config_file=/etc/postgresql/postgresql.conf -c listen_addresses=''" start >/dev/null
  psql -v ON_ERROR_STOP=1 --username=postgres --dbname=postgres \
    --set=db="$DB_NAME" --set=user="$DB_USER" --set=pass="$DB_PASSWORD" \
    --set=repl_user="$REPLICATION_USER" --set=repl_pass="$REPLICATION_PASSWORD" \
    --set=stmt_timeout="$DB_STATEMENT_TIMEOUT" <<'SQL'
-- The app's role owns its database and nothing more: no superuser, no CREATEROLE, no CREATEDB.
CREATE ROLE :"user" LOGIN PASSWORD :'pass' NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION;
ALTER ROLE :"user" SET statement_timeout = :'stmt_timeout';
CREATE DATABASE :"db" OWNER :"user";
REVOKE ALL ON DATABASE postgres, template1 FROM PUBLIC;
-- The replication role can stream WAL and log in for that; it owns and reads nothing.
CREATE ROLE :"repl_user" LOGIN REPLICATION PASSWORD :'repl_pass';
SELECT pg_create_physical_replication_slot('replica1');
SQL
  psql -v ON_ERROR_STOP=1 --username=postgres --dbname="$DB_NAME" -c "REVOKE ALL ON SCHEMA public FROM PUBLIC; GRANT ALL ON SCHEMA public TO \"$DB_USER\";" >/dev/null
  create_monitoring_role
  pg_ctl -D "$PGDATA" -w -m fast stop >/dev/null
}

# The exporters' role (monitoring profile, k8s components/monitoring): pg_monitor's statistics
# and settings, and no privilege on the app's tables (the schema is the app role's alone).
# Without its password (a bare `docker run`, the app tests' containers) there is no such role.
create_monitoring_role() {
  if [ -z "${MONITORING_DB_PASSWORD:-}" ]; then
    echo "entrypoint: MONITORING_DB_PASSWORD is empty: no $MONITORING_DB_USER role for the exporters"
    return 0
  fi
  # A connection limit: a stuck exporter can never take the app's share of max_connections.
  psql -v ON_ERROR_STOP=1 --username=postgres --dbname=postgres \
    --set=user="$MONITORING_DB_USER" --set=pass="$MONITORING_DB_PASSWORD" <<'SQL' >/dev/null
CREATE ROLE :"user" LOGIN PASSWORD :'pass' NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION
  CONNECTION LIMIT 5 IN ROLE pg_monitor;
ALTER ROLE :"user" SET statement_timeout = '5s';
SQL
}

init_replica() {
  require REPLICATION_PASSWORD
  local primary=${PRIMARY_HOST:-db-primary}
  echo "entrypoint: cloning $primary into $PGDATA"
  until pg_isready --host="$primary" --port=5432 --quiet; do sleep 1; done
  # Each replica streams through its own slot (REPLICA_SLOT): the primary creates replica1; any
  # other is created here, on the first start, unless a previous copy left it behind.
  local slot=${REPLICA_SLOT:-replica1} create=
  # A StatefulSet's pods share one template: pod db-replica-N takes slot replica<N+1>.
  if [ "$slot" = auto ]; then slot=replica$((${HOSTNAME##*-} + 1)); fi
  case $slot in *[!a-z0-9_]*) echo "entrypoint: bad REPLICA_SLOT" >&2; exit 1 ;; esac
  if [ -z "$(PGPASSWORD=$REPLICATION_PASSWORD psql --no-password -Atq \
      "host=$primary port=5432 user=$REPLICATION_USER replication=true" \
      -c "READ_REPLICATION_SLOT $slot" | cut -d'|' -f1)" ]; then
    create=--create-slot
  fi
  # -R writes primary_conninfo and standby.signal: a restart re-attaches with no help.
  PGPASSWORD=$REPLICATION_PASSWORD pg_basebackup --host="$primary" --port=5432 \
    --username="$REPLICATION_USER" --pgdata="$PGDATA" --wal-method=stream \
    --slot="$slot" $create --write-recovery-conf --checkpoint=fast --no-password
}

case "$role" in
  primary) refuse_dev_only DB_PASSWORD REPLICATION_PASSWORD MONITORING_DB_PASSWORD ;;
  replica) refuse_dev_only REPLICATION_PASSWORD ;;
esac

# One server per data directory. Two containers on one volume (`--scale` of a database service:
# compose gives every replica of a service the same named volume) would both run on the same
# files. A lock on the directory, held by the server through the descriptor it inherits across
# exec, makes the second one stop here and say why. flock(2) locks are the kernel's, so they hold
# across containers on one host.
exec 9<"$PGDATA"
if ! flock --nonblock 9; then
  echo "entrypoint: another server already runs on $PGDATA (this volume); a database service" \
    "runs one container per volume: give each replica a service and volume of its own" >&2
  exit 1
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  case "$role" in
    primary) init_primary ;;
    replica) init_replica ;;
    *) echo "entrypoint: PG_ROLE must be primary or replica" >&2; exit 1 ;;
  esac
else
  echo "entrypoint: reusing the existing $role data in $PGDATA"
fi
start_postgres "$@"
