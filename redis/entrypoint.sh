#!/bin/sh
# Redis with the password from REDIS_PASSWORD, passed through a config file readable only
# by the redis user, so it never appears in the process list. Arguments override redis.conf
# (the cache instance: --maxmemory-policy allkeys-lru ...).
set -eu
: "${REDIS_PASSWORD:?REDIS_PASSWORD must be set}"
umask 077
conf=/tmp/redis-auth.conf
printf 'include /etc/redis/redis.conf\nrequirepass "%s"\n' "$(printf '%s' "$REDIS_PASSWORD" | sed 's/["\\]/\\&/g')" > "$conf"
exec redis-server "$conf" "$@"
