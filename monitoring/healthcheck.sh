#!/bin/bash
# The container's health: an HTTP 200 from the component entrypoint.sh started (its name is in
# /tmp/monitoring/role). bash's /dev/tcp: the image has no curl.
set -eu
case $(cat /tmp/monitoring/role 2>/dev/null) in
  prometheus) port=9090 path=/-/ready ;;
  alertmanager) port=9093 path=/-/ready ;;
  postgres-exporter) port=9187 path=/metrics ;;
  pgbouncer-exporter) port=9127 path=/metrics ;;
  redis-exporter) port=9121 path=/metrics ;;
  nginx-exporter) port=9113 path=/metrics ;;
  nginx-log-exporter) port=3903 path=/metrics ;;
  # Its landing page: /metrics is large, and the check reads only the status line.
  node-exporter) port=9100 path=/ ;;
  *) exit 1 ;;
esac
exec 3<>"/dev/tcp/127.0.0.1/$port"
printf 'GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n' "$path" >&3
head -n1 <&3 | grep -q ' 200 '
