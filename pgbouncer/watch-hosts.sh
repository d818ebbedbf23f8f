#!/usr/bin/env bash
# Keeps PgBouncer's [databases] on the current address of each Postgres host. PgBouncer 1.24's
# own lookups (c-ares) kept a server's old address long after it came back at another one (a
# recreated container or pod): dns_max_ttl only drops PgBouncer's own cache; its new lookup is
# answered from c-ares' cache, which keeps an answer for the DNS record's TTL (Docker's DNS:
# 600 s), and a failed lookup is not retried (pgbouncer issues #383, #1353, #1583). This asks
# the system resolver (getent: Docker's DNS, the cluster's; glibc caches nothing) and writes
# host=<address>; a changed host makes PgBouncer close the old server connections as they are
# released and open new ones at the new address.
#
# `watch-hosts.sh render` (entrypoint.sh, before PgBouncer starts) writes pgbouncer.ini from the
# rendered template (names) once; without an argument it checks every
# PGBOUNCER_HOST_CHECK_SECONDS (2) and on a change rewrites pgbouncer.ini and reloads PgBouncer
# (SIGHUP to PGBOUNCER_PID). A name that does not resolve keeps its last address (a stopped
# container's name is gone from Docker's DNS until it starts again); one never resolved stays a
# name, which PgBouncer looks up itself.
# One log line per address change.
set -u
NAMES=$RUN_DIR/pgbouncer.names.ini
INI=$RUN_DIR/pgbouncer.ini
CHECK_SECONDS=${PGBOUNCER_HOST_CHECK_SECONDS:-2}
STATE=$RUN_DIR/hosts

# The host names of the [databases] lines (an IP address needs no lookup).
hosts=$(awk '
  /^\[/ { section = $0 }
  section == "[databases]" && !/^[;#]/ && match($0, /host=[^ ]+/) {
    print substr($0, RSTART + 5, RLENGTH - 5)
  }
' "$NAMES" | grep -Ev '^[0-9.]+$|:' | sort -u)

declare -A address=()
if [ -r "$STATE" ]; then
  while read -r host at; do address[$host]=$at; done < "$STATE"
fi

# Sets `changed` when a host's address moved. Several addresses for one name: the current one
# while it is among them, so a resolver rotating its answers causes no reload.
resolve() {
  changed=
  local host now current
  for host in $hosts; do
    now=$(timeout 3 getent ahostsv4 "$host" 2>/dev/null | awk '{ print $1 }' | sort -u)
    [ -n "$now" ] || continue
    current=${address[$host]:-}
    if [ -n "$current" ] && printf '%s\n' "$now" | grep -qxF "$current"; then
      continue
    fi
    address[$host]=${now%%$'\n'*}
    echo "pgbouncer: $host is at ${address[$host]}${current:+ (was $current)}" >&2
    changed=1
  done
}

render() {
  local host
  for host in "${!address[@]}"; do printf '%s %s\n' "$host" "${address[$host]}"; done > "$STATE.new"
  awk -v state="$STATE.new" '
    BEGIN { while ((getline line < state) > 0) { split(line, f, " "); at[f[1]] = f[2] } }
    /^\[/ { section = $0 }
    section == "[databases]" && !/^[;#]/ && match($0, /host=[^ ]+/) {
      host = substr($0, RSTART + 5, RLENGTH - 5)
      if (host in at) $0 = substr($0, 1, RSTART - 1) "host=" at[host] substr($0, RSTART + RLENGTH)
    }
    { print }
  ' "$NAMES" > "$INI.new" && mv "$INI.new" "$INI" && mv "$STATE.new" "$STATE"
}

if [ "${1:-}" = render ]; then
  resolve
  render
  exit
fi

while sleep "$CHECK_SECONDS"; do
  resolve
  [ -n "$changed" ] || continue
  render && kill -HUP "$PGBOUNCER_PID"
done
