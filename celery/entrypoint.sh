#!/bin/sh
# Starts a Celery role from the Django image: "worker" (queues from CELERY_QUEUES) or "beat".
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
  *)
    echo "usage: entrypoint.sh worker|beat [celery options]" >&2
    exit 64
    ;;
esac
