#!/bin/sh
# Starts a Celery role from the Django image: "worker" (queues from CELERY_QUEUES), "beat", or
# "flower" (the monitor, profile "monitoring").
# Exec, so Celery is PID 1's direct child of tini/docker-init and gets SIGTERM itself.
set -eu
role=${1:-worker}
shift || true
case "$role" in
  worker)
    exec celery --app config worker \
      --queues "${CELERY_QUEUES:-default}" \
      --hostname "${CELERY_WORKER_NAME:-worker}@%h" \
      --loglevel "${CELERY_LOG_LEVEL:-INFO}" \
      --without-mingle --without-gossip \
      "$@"
    ;;
  beat)
    # The schedule file is scratch state; /tmp is writable even with a read-only root.
    exec celery --app config beat \
      --schedule /tmp/celerybeat-schedule \
      --loglevel "${CELERY_LOG_LEVEL:-INFO}" \
      "$@"
    ;;
  flower)
    # Celery's monitor (profile "monitoring"): UI and API behind FLOWER_USER / FLOWER_PASSWORD,
    # which production must set to a real secret.
    case "${FLOWER_PASSWORD:-}" in
      '' | dev-only-*)
        if [ "${APP_ENV:-local}" = production ]; then
          echo "flower: set FLOWER_PASSWORD to a real secret in production" >&2
          exit 1
        fi
        ;;
    esac
    FLOWER_BASIC_AUTH="${FLOWER_USER:-admin}:${FLOWER_PASSWORD:-dev-only-flower}" \
      exec celery --app config flower --port=5555 "$@"
    ;;
  *)
    echo "usage: entrypoint.sh worker|beat|flower [celery options]" >&2
    exit 64
    ;;
esac
