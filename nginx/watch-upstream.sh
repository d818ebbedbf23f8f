#!/usr/bin/env bash
# Keeps Nginx's upstream `web` in step with the addresses of NGINX_UPSTREAM_HOST (the `web`
# service). Nginx 1.26 (Debian's) resolves a host in an upstream block once, when it starts or
# reloads: a replica recreated at another address, added or removed would otherwise get no
# requests, or leave Nginx connecting to an address nobody serves until someone reloads it.
# Started by entrypoint.sh beside Nginx, which checks and exports the settings.
#
# Every NGINX_UPSTREAM_CHECK_SECONDS (2) it asks the resolver (Docker's DNS lists the running
# containers of a service) and reloads Nginx, gracefully (requests in flight finish on the old
# workers):
# - at once when an address appears that Nginx does not know (a new or recreated replica);
# - when an address Nginx knows has been gone for NGINX_UPSTREAM_GONE_SECONDS (30): a replica
#   that is only stopping and starting again (a rolling restart, which gets its address back)
#   causes no reload, since a reload also closes idle client keep-alive connections, which a
#   client sending at that instant sees as a reset. Meanwhile max_fails/fail_timeout
#   (nginx.conf) keep it out.
# No answer at all (every replica stopped) changes nothing. In Kubernetes `web` is the Service's
# one stable address, so it never reloads there.
set -u
HOST=${NGINX_UPSTREAM_HOST:-web}
CHECK_SECONDS=${NGINX_UPSTREAM_CHECK_SECONDS:-2}
GONE_SECONDS=${NGINX_UPSTREAM_GONE_SECONDS:-30}

addresses() {
  getent ahostsv4 "$HOST" 2>/dev/null | awk '{ print $1 }' | sort -u
}

known=$(addresses)
declare -A gone_since=()
while sleep "$CHECK_SECONDS"; do
  now=$(addresses)
  [ -n "$now" ] || continue
  reason=
  added=$(comm -13 <(printf '%s\n' "$known") <(printf '%s\n' "$now") | tr '\n' ' ')
  [ -n "${added// /}" ] && reason="new: $added"
  missing=$(comm -23 <(printf '%s\n' "$known") <(printf '%s\n' "$now") | tr '\n' ' ')
  for address in "${!gone_since[@]}"; do
    [[ " $missing " == *" $address "* ]] || unset "gone_since[$address]"
  done
  at=$(date +%s)
  for address in $missing; do
    : "${gone_since[$address]:=$at}"
    if (( at - gone_since[$address] >= GONE_SECONDS )); then
      reason="${reason:+$reason; }gone for ${GONE_SECONDS}s: $address"
    fi
  done
  if [ -n "$reason" ]; then
    echo "nginx: upstream $HOST changed ($reason): reloading" >&2
    if nginx -s reload; then
      known=$now
      gone_since=()
    fi
  fi
done
