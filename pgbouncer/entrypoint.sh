#!/bin/sh
# Renders pgbouncer.ini and the auth file from env into a private runtime directory, then
# execs PgBouncer. No password is ever written into the image or the repository.
set -eu
: "${DB_NAME:=app}" "${DB_REPLICA_NAMES:=app_replica}" "${DB_USER:=app}"
: "${PRIMARY_HOST:=db-primary}" "${REPLICA_HOSTS:=db-replica}"
: "${PGBOUNCER_POOL_SIZE:=20}" "${PGBOUNCER_MAX_CLIENT_CONN:=2000}"
: "${DB_CHECK_SUFFIX=_check}"
case $DB_CHECK_SUFFIX in
  *[!0-9A-Za-z_]*)
    echo "pgbouncer: DB_CHECK_SUFFIX may hold only letters, digits and _, got '$DB_CHECK_SUFFIX'" >&2
    exit 1
    ;;
esac
: "${DB_PASSWORD:?DB_PASSWORD must be set}"
: "${PGBOUNCER_STATS_USER:=pgbouncer_stats}"
# How often watch-hosts.sh looks up the database hosts' addresses (defaults: .env.example).
: "${PGBOUNCER_HOST_CHECK_SECONDS:=2}"
case $PGBOUNCER_HOST_CHECK_SECONDS in
  '' | *[!0-9]* | 0)
    echo "pgbouncer: PGBOUNCER_HOST_CHECK_SECONDS must be a whole number of seconds," \
      "got '$PGBOUNCER_HOST_CHECK_SECONDS'" >&2
    exit 1
    ;;
esac
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
# One database per replica: the i-th of DB_REPLICA_NAMES (Django reads the same list, so both
# know the same replicas) on the i-th of REPLICA_HOSTS. A name with no host is refused here, at
# start, not found by a customer's read.
REPLICA_DATABASES=$(printf '%s\n' "$DB_REPLICA_NAMES" "$REPLICA_HOSTS" | awk -v db="$DB_NAME" '
  NR == 1 { n = split($0, names, ",") }
  NR == 2 { m = split($0, hosts, ",") }
  END {
    if (n > m) { print "DB_REPLICA_NAMES names " n " replicas, REPLICA_HOSTS has " m > "/dev/stderr"; exit 1 }
    for (i = 1; i <= n; i++) {
      gsub(/ /, "", names[i]); gsub(/ /, "", hosts[i])
      printf "%s = host=%s port=5432 dbname=%s\\n", names[i], hosts[i], db
    }
  }') || { echo "pgbouncer: DB_REPLICA_NAMES and REPLICA_HOSTS do not match" >&2; exit 1; }
# The web's health checks (app/core/db.py) connect to <database>$DB_CHECK_SUFFIX: the same
# server, in a pool of its own, so a check never queues behind requests holding the app's pool
# (lock waits, a slow report) and a busy pool is never taken for a dead server. Two servers and
# no reserve: a check is one short query in autocommit. Empty suffix: no such databases.
CHECK_DATABASES=
APP_DATABASES=",$DB_NAME,$(printf '%s' "$DB_REPLICA_NAMES" | tr -d ' '),"
for name in $(printf '%s' "$APP_DATABASES" | tr ',' ' '); do
  [ -n "$DB_CHECK_SUFFIX" ] || break
  check=$name$DB_CHECK_SUFFIX
  # One of the app's names would replace that database (the replica's reads sent elsewhere).
  case $APP_DATABASES in
    *",$check,"*)
      echo "pgbouncer: DB_CHECK_SUFFIX '$DB_CHECK_SUFFIX' makes $check, one of the app's databases" >&2
      exit 1
      ;;
  esac
  if [ ${#check} -gt 63 ]; then
    echo "pgbouncer: DB_CHECK_SUFFIX makes $check, longer than PgBouncer's 63 characters" >&2
    exit 1
  fi
done
if [ -n "$DB_CHECK_SUFFIX" ]; then
  CHECK_DATABASES=$(printf '%s\n' "$REPLICA_DATABASES" | sed 's/\\n/\n/g' | awk -v db="$DB_NAME" \
    -v primary="$PRIMARY_HOST" -v suffix="$DB_CHECK_SUFFIX" '
    BEGIN { lines[0] = db " = host=" primary " port=5432 dbname=" db; n = 1 }
    NF { lines[n++] = $0 }
    END {
      for (i = 0; i < n; i++) {
        split(lines[i], parts, " = ")
        printf "%s%s = %s pool_size=2 reserve_pool_size=0\\n", parts[1], suffix, parts[2]
      }
    }')
fi
export DB_NAME DB_USER PRIMARY_HOST REPLICA_DATABASES CHECK_DATABASES PGBOUNCER_POOL_SIZE \
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
    value = ENVIRON[name]
    gsub(/\\n/, "\n", value)
    $0 = substr($0, 1, RSTART - 1) value substr($0, RSTART + RLENGTH)
  }
  print
}' /etc/pgbouncer/pgbouncer.ini.template > "$RUN_DIR/pgbouncer.names.ini"
# PgBouncer connects to each host's address as the watcher last found it, not to the name: its
# own lookups may keep a server's old address (watch-hosts.sh). The watcher outlives this shell:
# PgBouncer takes its process ($$) and reloads on the watcher's SIGHUP.
WATCH_HOSTS=/etc/pgbouncer/watch-hosts.sh
PGBOUNCER_PID=$$
export PGBOUNCER_HOST_CHECK_SECONDS PGBOUNCER_PID
"$WATCH_HOSTS" render
"$WATCH_HOSTS" &
exec pgbouncer "$RUN_DIR/pgbouncer.ini"
