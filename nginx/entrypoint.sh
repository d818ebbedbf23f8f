#!/bin/sh
# Renders Nginx's config from env into /tmp/nginx (the root filesystem is read-only), then
# execs Nginx. /etc/nginx/nginx.conf is a link to the rendered file, so `nginx -s quit` and
# `nginx -t` read what is running. Only placeholders like ${TLS_ENABLED} of the template are
# replaced: Nginx's own $variables are lower case and pass untouched.
#
# TLS_ENABLED=true: Nginx terminates TLS on 8443 with NGINX_TLS_CERT / NGINX_TLS_KEY (mounted,
# never baked into the image), sends HSTS, and redirects plain HTTP on 8080 to
# https://<host>:NGINX_HTTPS_PORT (the port clients see). NGINX_TRUST_FORWARDED_PROTO=true: a
# trusted proxy in front (a Kubernetes ingress) terminated TLS, so its X-Forwarded-Proto is
# passed on to Django instead of Nginx's own scheme. SECURE_HSTS_SECONDS and SECURE_HSTS_PRELOAD
# are Django's settings of the same names: Nginx's HSTS header (which replaces Django's) says the
# same thing; empty means Django's default with TLS on, one year.
#
# NGINX_LOG_EXPORTER=host:port: a copy of each response's status goes there as UDP syslog (the
# log exporter of the monitoring profile counts them; nginx.conf, log_format status_line). Nginx
# refuses to start when a syslog host does not resolve, so the line is written only when the
# host resolves now; otherwise (the default `docker compose up`, without the profile) there is
# no copy, and a note on stderr says so. Like web's, the address is resolved once, at start.
set -eu
RUN_DIR=/tmp/nginx

bool() {
  case $(printf '%s' "$2" | tr 'A-Z' 'a-z') in
    1 | true | yes | on) echo true ;;
    '' | 0 | false | no | off) echo false ;;
    *) echo "nginx: $1 must be true or false, got '$2'" >&2; exit 1 ;;
  esac
}
tls_setting=${TLS_ENABLED:-}
TLS_ENABLED=$(bool TLS_ENABLED "$tls_setting")
NGINX_TRUST_FORWARDED_PROTO=$(bool NGINX_TRUST_FORWARDED_PROTO "${NGINX_TRUST_FORWARDED_PROTO:-}")
# In production Django reads an empty TLS_ENABLED as on and redirects every request it believes
# came over plain HTTP. With TLS ending neither here nor at a trusted balancer that is every
# request: a redirect to an HTTPS port nothing serves, or a loop through the balancer. Refuse to
# start rather than serve that (README "Deploy").
if [ "${APP_ENV:-local}" = production ] && [ -z "$tls_setting" ] && [ "$TLS_ENABLED" = false ] \
  && [ "$NGINX_TRUST_FORWARDED_PROTO" = false ]; then
  echo "nginx: APP_ENV=production but TLS ends neither here nor at a trusted proxy, so Django" \
    "would redirect every request to an HTTPS nothing serves. Choose one (README \"Deploy\"):" \
    "docker-compose.tls.yml (TLS at Nginx), NGINX_TRUST_FORWARDED_PROTO=true (behind a" \
    "TLS-terminating load balancer) or TLS_ENABLED=false (plain HTTP, no TLS anywhere)" >&2
  exit 1
fi
: "${NGINX_TLS_CERT:=/etc/nginx/tls/tls.crt}" "${NGINX_TLS_KEY:=/etc/nginx/tls/tls.key}"
: "${NGINX_HTTPS_PORT:=443}"
case $NGINX_HTTPS_PORT in
  '' | *[!0-9]*) echo "nginx: NGINX_HTTPS_PORT must be a port number" >&2; exit 1 ;;
esac
SECURE_HSTS_PRELOAD=$(bool SECURE_HSTS_PRELOAD "${SECURE_HSTS_PRELOAD:-}")
: "${SECURE_HSTS_SECONDS:=31536000}"
case $SECURE_HSTS_SECONDS in
  '' | *[!0-9]*) echo "nginx: SECURE_HSTS_SECONDS must be a number of seconds" >&2; exit 1 ;;
esac
# Rate limits per client address (nginx.conf, limit_req), as Nginx writes a rate: N r/s or
# N r/m. Retry-After on a 429 is the time one more request of that class is let through.
: "${NGINX_RATE_LOGIN:=10r/m}" "${NGINX_RATE_WRITES:=10r/s}"
: "${NGINX_RATE_REPORTS:=6r/m}"  # demo-shop
retry_after() {
  case $2 in
    [1-9]*r/s | [1-9]*r/m) ;;
    *) echo "nginx: $1 must be a rate like 10r/s or 10r/m, got '$2'" >&2; exit 1 ;;
  esac
  case ${2%r/*} in *[!0-9]*) echo "nginx: $1 must be a rate like 10r/s or 10r/m, got '$2'" >&2; exit 1 ;; esac
  per=1; [ "${2#*r/}" = m ] && per=60
  echo $(( (per + ${2%r/*} - 1) / ${2%r/*} ))
}
NGINX_RETRY_LOGIN=$(retry_after NGINX_RATE_LOGIN "$NGINX_RATE_LOGIN")
NGINX_RETRY_REPORTS=$(retry_after NGINX_RATE_REPORTS "$NGINX_RATE_REPORTS")  # demo-shop
NGINX_RETRY_WRITES=$(retry_after NGINX_RATE_WRITES "$NGINX_RATE_WRITES")
export TLS_ENABLED NGINX_TRUST_FORWARDED_PROTO SECURE_HSTS_SECONDS SECURE_HSTS_PRELOAD \
  NGINX_RATE_LOGIN NGINX_RATE_WRITES NGINX_RETRY_LOGIN NGINX_RETRY_WRITES
export NGINX_RATE_REPORTS NGINX_RETRY_REPORTS  # demo-shop

# The upstream's host, and how often watch-upstream.sh checks its addresses and how long one
# must be gone before a reload drops it (defaults: .env.example).
: "${NGINX_UPSTREAM_HOST:=web}"
: "${NGINX_UPSTREAM_CHECK_SECONDS:=2}" "${NGINX_UPSTREAM_GONE_SECONDS:=30}"
if ! printf '%s' "$NGINX_UPSTREAM_HOST" | grep -Eq '^[A-Za-z0-9.-]+$'; then
  echo "nginx: NGINX_UPSTREAM_HOST must be a host name, got '$NGINX_UPSTREAM_HOST'" >&2
  exit 1
fi
for name in NGINX_UPSTREAM_CHECK_SECONDS NGINX_UPSTREAM_GONE_SECONDS; do
  eval "value=\$$name"
  case $value in
    '' | *[!0-9]* | 0)
      echo "nginx: $name must be a whole number of seconds, got '$value'" >&2
      exit 1
      ;;
  esac
done
export NGINX_UPSTREAM_HOST NGINX_UPSTREAM_CHECK_SECONDS NGINX_UPSTREAM_GONE_SECONDS

mkdir -p "$RUN_DIR"
if [ "$TLS_ENABLED" = true ]; then
  for file in "$NGINX_TLS_CERT" "$NGINX_TLS_KEY"; do
    if [ ! -r "$file" ]; then
      # The two usual causes, named: a key only root may read (certbot's 0600), and a
      # symlink out of the mounted folder (Let's Encrypt's live/ points into ../../archive).
      echo "nginx: TLS_ENABLED=true but $file is not readable by uid $(id -u)" \
        "(NGINX_TLS_CERT/NGINX_TLS_KEY; on the host: chgrp $(id -g) the key and chmod 0640," \
        "and copy the files into NGINX_TLS_DIR rather than link out of it)" >&2
      exit 1
    fi
  done
  port_suffix=":$NGINX_HTTPS_PORT"
  [ "$NGINX_HTTPS_PORT" = 443 ] && port_suffix=""
  cat > "$RUN_DIR/tls.conf" <<CONF
# Rendered by entrypoint.sh: TLS_ENABLED=true.
listen 8443 ssl;
ssl_certificate $NGINX_TLS_CERT;
ssl_certificate_key $NGINX_TLS_KEY;
ssl_protocols TLSv1.2 TLSv1.3;
# TLS 1.2: forward-secret AEAD suites only (ECDHE with AES-GCM or ChaCha20), the intermediate
# profile minus DHE, which needs a dhparam file. TLS 1.3's suites are all of that kind already.
ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305;
ssl_prefer_server_ciphers off;
ssl_session_cache shared:TLS:10m;
ssl_session_timeout 1d;
ssl_session_tickets off;
# Plain HTTP on 8080 answers only the container's health check; everything else moves to HTTPS.
if (\$https_redirect) {
    return 308 https://\$host$port_suffix\$request_uri;
}
CONF
else
  echo "# Rendered by entrypoint.sh: TLS_ENABLED is not true, plain HTTP on 8080 only." \
    > "$RUN_DIR/tls.conf"
fi

: "${NGINX_REAL_IP_FROM:=}"
# NGINX_REAL_IP_FROM: comma-separated addresses or CIDR ranges of trusted proxies (a Kubernetes
# ingress). A request from one of them is counted, logged and passed to Django under the client
# address it reports in X-Forwarded-For; from anywhere else that header is the client's own
# claim and changes nothing. Empty (compose, where clients reach Nginx directly): trust none.
{
  echo "# Rendered by entrypoint.sh from NGINX_REAL_IP_FROM='$NGINX_REAL_IP_FROM'."
  for source in $(printf '%s' "$NGINX_REAL_IP_FROM" | tr ',' ' '); do
    if ! printf '%s' "$source" | grep -Eq '^[0-9A-Fa-f:.]+(/[0-9]{1,3})?$'; then
      echo "nginx: NGINX_REAL_IP_FROM: '$source' is not an address or CIDR range" >&2
      exit 1
    fi
    echo "set_real_ip_from $source;"
  done
  if [ -n "$NGINX_REAL_IP_FROM" ]; then
    echo "real_ip_header X-Forwarded-For;"
    echo "real_ip_recursive on;"
  fi
} > "$RUN_DIR/real-ip.conf"

: "${NGINX_LOG_EXPORTER:=}"
if [ -z "$NGINX_LOG_EXPORTER" ]; then
  echo "# Rendered by entrypoint.sh: NGINX_LOG_EXPORTER is empty." > "$RUN_DIR/log-exporter.conf"
elif ! printf '%s' "$NGINX_LOG_EXPORTER" | grep -Eq '^[A-Za-z0-9.-]+:[0-9]+$'; then
  echo "nginx: NGINX_LOG_EXPORTER must be host:port, got '$NGINX_LOG_EXPORTER'" >&2
  exit 1
elif getent hosts "${NGINX_LOG_EXPORTER%:*}" > /dev/null; then
  # nohostname: the exporter reads only the message; tag: which program sent it.
  echo "access_log syslog:server=$NGINX_LOG_EXPORTER,tag=nginx,nohostname status_line;" \
    > "$RUN_DIR/log-exporter.conf"
else
  echo "nginx: $NGINX_LOG_EXPORTER does not resolve (monitoring profile off): no status copy" >&2
  echo "# Rendered by entrypoint.sh: $NGINX_LOG_EXPORTER did not resolve." \
    > "$RUN_DIR/log-exporter.conf"
fi

awk '{
  while (match($0, /\$\{[A-Z_]+\}/)) {
    name = substr($0, RSTART + 2, RLENGTH - 3)
    $0 = substr($0, 1, RSTART - 1) ENVIRON[name] substr($0, RSTART + RLENGTH)
  }
  print
}' /etc/nginx/nginx.conf.template > "$RUN_DIR/nginx.conf"
# Nginx resolves web only when it starts or reloads; the watcher reloads it when web's addresses
# change (a replica added, removed, or recreated at another address).
/etc/nginx/watch-upstream.sh &
exec nginx "$@"
