#!/bin/sh
# Runs one monitoring component, named by the first argument (docker-compose.yml, profile
# "monitoring"): prometheus | alertmanager | postgres-exporter | pgbouncer-exporter |
# redis-exporter | nginx-exporter | nginx-log-exporter | node-exporter; "check" renders both
# configs and validates them. Config is rendered from env into /tmp/monitoring (the root
# filesystem is read-only), secrets into files there that only this user can read; then exec, so
# the component is PID 1's direct child and gets SIGTERM itself.
#
# Test clock (tests/stack/test_monitoring.py): ALERT_TIME_SCALE=N divides every duration in the
# rules (`for:` and range windows like [5m]) by N in the rendered copy; the rules file itself is
# never edited. PROMETHEUS_SCRAPE_INTERVAL / PROMETHEUS_EVALUATION_INTERVAL and the
# ALERTMANAGER_GROUP_* / ALERTMANAGER_REPEAT_INTERVAL variables shorten the rest.
set -eu
role=${1:-prometheus}
[ $# -gt 0 ] && shift
SRC=/opt/monitoring
RUN_DIR=/tmp/monitoring
umask 077
mkdir -p "$RUN_DIR"
echo "$role" > "$RUN_DIR/role"

# ${NAME} placeholders (upper case) replaced from env; Prometheus' own $labels pass untouched.
render() {
  awk '{
    while (match($0, /\$\{[A-Z_]+\}/)) {
      name = substr($0, RSTART + 2, RLENGTH - 3)
      $0 = substr($0, 1, RSTART - 1) ENVIRON[name] substr($0, RSTART + RLENGTH)
    }
    print
  }' "$1" > "$2"
}

# A Prometheus duration (5m, 1h, 30s, 1h30m) divided by ALERT_TIME_SCALE, in whole seconds (>= 1).
scale_rules() {
  awk -v scale="$ALERT_TIME_SCALE" '
    function secs(d,   total, n, u, len) {
      total = 0
      while (match(d, /^[0-9]+(ms|[smhdwy])/)) {
        len = RLENGTH
        n = substr(d, 1, len); u = n; sub(/^[0-9]+/, "", u); sub(/[a-z]+$/, "", n)
        total += n * (u == "ms" ? 0.001 : u == "s" ? 1 : u == "m" ? 60 : u == "h" ? 3600 : u == "d" ? 86400 : u == "w" ? 604800 : 31536000)
        d = substr(d, len + 1)
      }
      total = int(total / scale); return (total < 1 ? 1 : total) "s"
    }
    function scale_all(line, pattern, lead, trail,   out, m, d, start, len) {
      out = ""
      while (match(line, pattern)) {
        start = RSTART; len = RLENGTH
        m = substr(line, start, len)
        d = substr(m, length(lead) + 1, length(m) - length(lead) - length(trail))
        out = out substr(line, 1, start - 1) lead secs(d) trail
        line = substr(line, start + len)
      }
      return out line
    }
    {
      if (scale != 1) {
        $0 = scale_all($0, "\\[[0-9][0-9a-z]*\\]", "[", "]")
        $0 = scale_all($0, "\\[[0-9][0-9a-z]*:", "[", ":")
        $0 = scale_all($0, "offset [0-9][0-9a-z]*", "offset ", "")
        if ($0 ~ /^[ \t]*for:[ \t]*[0-9]/) { sub(/for:[ \t]*/, "for: "); split($0, p, "for: "); $0 = p[1] "for: " secs(p[2]) }
      }
      print
    }' "$1" > "$2"
}

require() {
  for name in "$@"; do
    eval "value=\${$name:-}"
    if [ -z "$value" ]; then echo "monitoring ($role): $name must be set" >&2; exit 1; fi
  done
}

# Writes the secret NAME to the file DEST (this user's alone), then drops NAME from the env the
# component inherits: it reads the file, so the secret is in no process's argv or environment.
# A file /run/secrets/NAME wins over the variable (Kubernetes mounts the Secret's key there;
# compose's `secrets:` would too). In production a dev-only- value is refused, as everywhere.
secret_file() {
  if [ -f "/run/secrets/$1" ]; then
    value=$(cat "/run/secrets/$1")
  else
    require "$1"
    eval "value=\$$1"
  fi
  unset "$1"
  if [ "${APP_ENV:-local}" = production ]; then
    case $value in
      dev-only-*)
        echo "monitoring ($role): $1 is a dev-only- value; set a real secret with APP_ENV=production" >&2
        exit 1
        ;;
    esac
  fi
  printf '%s' "$value" > "$2"
  value=
}

render_prometheus() {
  : "${PROMETHEUS_SCRAPE_INTERVAL:=15s}" "${PROMETHEUS_EVALUATION_INTERVAL:=15s}"
  : "${ALERT_TIME_SCALE:=1}"
  export PROMETHEUS_SCRAPE_INTERVAL PROMETHEUS_EVALUATION_INTERVAL RUN_DIR
  case $ALERT_TIME_SCALE in
    '' | *[!0-9]* | 0) echo "monitoring: ALERT_TIME_SCALE must be a positive integer" >&2; exit 1 ;;
  esac
  mkdir -p "$RUN_DIR/rules"
  render "$SRC/prometheus.yml" "$RUN_DIR/prometheus.yml"
  for rules in "$SRC"/rules/*.yml; do
    scale_rules "$rules" "$RUN_DIR/rules/$(basename "$rules")"
  done
}

render_alertmanager() {
  : "${EMAIL_HOST:=mailcatcher}" "${EMAIL_PORT:=1025}" "${EMAIL_HOST_USER:=}"
  : "${EMAIL_HOST_PASSWORD:=}" "${EMAIL_USE_TLS:=false}"
  : "${ALERT_EMAIL_FROM:=${DEFAULT_FROM_EMAIL:-djstack alerts <alerts@localhost>}}"
  : "${ALERT_EMAIL_TO:=ops@localhost}" "${ALERT_EMAIL_CRITICAL_TO:=oncall@localhost}"
  : "${ALERTMANAGER_GROUP_WAIT:=30s}" "${ALERTMANAGER_GROUP_INTERVAL:=5m}"
  : "${ALERTMANAGER_REPEAT_INTERVAL:=4h}"
  case $(printf '%s' "$EMAIL_USE_TLS" | tr 'A-Z' 'a-z') in
    1 | true | yes | on) EMAIL_REQUIRE_TLS=true ;;
    *) EMAIL_REQUIRE_TLS=false ;;
  esac
  printf '%s' "$EMAIL_HOST_PASSWORD" > "$RUN_DIR/smtp-password"
  export EMAIL_HOST EMAIL_PORT EMAIL_HOST_USER EMAIL_REQUIRE_TLS ALERT_EMAIL_FROM ALERT_EMAIL_TO \
    ALERT_EMAIL_CRITICAL_TO ALERTMANAGER_GROUP_WAIT ALERTMANAGER_GROUP_INTERVAL \
    ALERTMANAGER_REPEAT_INTERVAL RUN_DIR
  render "$SRC/alertmanager.yml" "$RUN_DIR/alertmanager.yml"
  if [ -z "$EMAIL_HOST_USER" ]; then
    # No login: drop the auth lines (an empty smtp_auth_username still makes it try PLAIN).
    grep -v 'smtp_auth_' "$RUN_DIR/alertmanager.yml" > "$RUN_DIR/alertmanager.yml.new"
    mv "$RUN_DIR/alertmanager.yml.new" "$RUN_DIR/alertmanager.yml"
  fi
}

case "$role" in
  prometheus)
    : "${PROMETHEUS_RETENTION:=15d}"
    render_prometheus
    exec prometheus \
      --config.file="$RUN_DIR/prometheus.yml" \
      --storage.tsdb.path=/prometheus \
      --storage.tsdb.retention.time="$PROMETHEUS_RETENTION" \
      --web.listen-address=:9090 \
      --web.console.templates=/usr/share/prometheus/consoles \
      --web.console.libraries=/usr/share/prometheus/console_libraries \
      "$@"
    ;;
  alertmanager)
    render_alertmanager
    # One instance: no gossip cluster (it would listen on 9094 for peers that never come).
    exec prometheus-alertmanager \
      --config.file="$RUN_DIR/alertmanager.yml" \
      --storage.path=/alertmanager \
      --web.listen-address=:9093 \
      --cluster.listen-address= \
      "$@"
    ;;
  # Both configs rendered as the services would render them with this env, then checked:
  # tests/monitoring/test_monitoring_config.py.
  check)
    render_prometheus
    render_alertmanager
    promtool check config "$RUN_DIR/prometheus.yml"
    promtool check rules "$RUN_DIR"/rules/*.yml
    exec amtool check-config "$RUN_DIR/alertmanager.yml"
    ;;
  postgres-exporter)
    # Its own role (postgres/entrypoint.sh): pg_monitor, no access to the app's tables. The
    # password reaches the exporter as a file only (DATA_SOURCE_PASS_FILE), never in argv or env.
    require PG_EXPORTER_HOST DB_NAME MONITORING_DB_USER
    secret_file MONITORING_DB_PASSWORD "$RUN_DIR/postgres-password"
    DATA_SOURCE_URI="$PG_EXPORTER_HOST:5432/$DB_NAME?sslmode=disable"
    DATA_SOURCE_USER=$MONITORING_DB_USER DATA_SOURCE_PASS_FILE="$RUN_DIR/postgres-password"
    export DATA_SOURCE_URI DATA_SOURCE_USER DATA_SOURCE_PASS_FILE
    exec prometheus-postgres-exporter --web.listen-address=:9187 "$@"
    ;;
  pgbouncer-exporter)
    # SHOW commands on PgBouncer's admin console as its stats user (pgbouncer/entrypoint.sh), not
    # the app's role. The connection string, from env, names no password: libpq's password file
    # (PGPASSFILE, mode 0600) holds it.
    require PGBOUNCER_HOST PGBOUNCER_STATS_USER
    port=${PGBOUNCER_PORT:-6432}
    secret_file PGBOUNCER_STATS_PASSWORD "$RUN_DIR/pgbouncer-password"
    pgpass_escape() { printf '%s' "$1" | sed 's/[\\:]/\\&/g'; }
    printf '%s:%s:pgbouncer:%s:%s\n' "$(pgpass_escape "$PGBOUNCER_HOST")" "$port" \
      "$(pgpass_escape "$PGBOUNCER_STATS_USER")" \
      "$(pgpass_escape "$(cat "$RUN_DIR/pgbouncer-password")")" > "$RUN_DIR/pgpass"
    rm -f "$RUN_DIR/pgbouncer-password"
    PGPASSFILE="$RUN_DIR/pgpass"
    PGBOUNCER_EXPORTER_CONNECTION_STRING="postgres://$PGBOUNCER_STATS_USER@$PGBOUNCER_HOST:$port/pgbouncer?sslmode=disable"
    export PGPASSFILE PGBOUNCER_EXPORTER_CONNECTION_STRING
    exec prometheus-pgbouncer-exporter --web.listen-address=:9127 --pgBouncer.pid-file= "$@"
    ;;
  redis-exporter)
    # REDIS_PASSWORD is read by the exporter from env. The Celery queues are lists in the
    # broker's database 0: their lengths are the backlog per queue (redis_key_size). Set but
    # empty (the cache instance's exporter): no keys.
    require REDIS_ADDR REDIS_PASSWORD
    exec prometheus-redis-exporter -web.listen-address=:9121 -redis.addr="$REDIS_ADDR" \
      -check-single-keys="${REDIS_EXPORTER_QUEUE_KEYS-db0=default,db0=reports,db0=email}" \
      "$@"
    ;;
  nginx-exporter)
    exec prometheus-nginx-exporter --web.listen-address=:9113 \
      --nginx.scrape-uri="${NGINX_STATUS_URI:-http://nginx:8081/stub_status}" "$@"
    ;;
  nginx-log-exporter)
    # mtail: Nginx's responses by status code (mtail/nginx.mtail), from the syslog copy of its
    # access log that Nginx sends to UDP 5140 (nginx.conf, NGINX_LOG_EXPORTER); /metrics on 3903.
    # Its own log to stderr (not files: read-only root); no /debug (pprof) or /progz pages.
    exec mtail --progs "$SRC/mtail" --logs udp://0.0.0.0:5140 \
      --port 3903 --logtostderr --emit_prog_label=false \
      --http_debugging_endpoint=false --http_info_endpoint=false "$@"
    ;;
  node-exporter)
    # The host's disk, memory and OOM kills, from its /proc, /sys and / mounted read-only at
    # /host (docker-compose.yml). Mount points as node_exporter's default, except that named
    # volumes (/var/lib/docker/volumes) stay: one that is a mount of its own (tmpfs, NFS, a
    # device) has its own space to run out of. (Docker's directory is root's alone: a non-root
    # exporter reports such a volume with device_error "permission denied", not its space.)
    # Containers' own layers and shm mounts stay out. No systemd collector: no D-Bus here.
    exec prometheus-node-exporter --web.listen-address=:9100 --no-collector.systemd \
      --path.procfs=/host/proc --path.sysfs=/host/sys --path.rootfs=/host/root \
      --collector.filesystem.mount-points-exclude='^/(dev|proc|sys|run/credentials/.+|var/lib/docker/(containers|overlay2|plugins|buildkit)/.+|var/lib/containers/storage/.+|var/lib/kubelet/pods/.+)($|/)' \
      "$@"
    ;;
  *)
    echo "usage: entrypoint.sh prometheus|alertmanager|check|postgres-exporter|pgbouncer-exporter|redis-exporter|nginx-exporter|nginx-log-exporter|node-exporter" >&2
    exit 64
    ;;
esac
