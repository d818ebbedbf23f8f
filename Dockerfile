# The Django image: Gunicorn + Uvicorn for web, the same image for Celery and migrations; and
# Nginx, which serves the Django image's collected static files (target "nginx").
# Multi-stage: the builder has compilers and pip; the runtime only the venv and the code.
#
# Optional build secret "ca_bundle": a CA bundle for builds behind a TLS-intercepting proxy.
# It is mounted for single RUN steps only and never lands in a layer.

ARG BASE_IMAGE=debian:trixie-slim

FROM ${BASE_IMAGE} AS python
# Debian's python3.13 and libpq (psycopg's C implementation links it and Debian's OpenSSL).
# The standard library's own test suite and help() topics are never used by a server.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 ca-certificates libpq5 \
 && rm -rf /var/lib/apt/lists/* /usr/lib/python3.*/test /usr/lib/python3.*/pydoc_data
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH

FROM python AS venv
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential python3-dev python3-venv libpq-dev \
 && rm -rf /var/lib/apt/lists/*
COPY requirements.lock /tmp/requirements.lock
# --require-hashes: every byte installed is the byte that was locked.
RUN --mount=type=secret,id=ca_bundle \
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi \
 && python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --no-deps --require-hashes -r /tmp/requirements.lock
# Slimming that changes no behaviour: debug symbols out of the wheels' shared objects, type
# stubs and C sources the wheels carry along, the packages' own test suites, and translation
# sources/catalogues out of Django (USE_I18N is off; "en" and the package files that locale
# formats import from stay). Django's GIS, Oracle and MySQL code goes too: none of it loads
# without GDAL/GEOS or a driver that the locks do not hold (a project adding one deletes the line).
# Bytecode: pip compiled each module once, at one level; nothing writes any later
# (PYTHONDONTWRITEBYTECODE).
RUN find /opt/venv -name '*.so' -exec strip --strip-unneeded {} + \
 && find /opt/venv/lib \( -name '*.pyi' -o -name '*.c' -o -name '*.h' -o -name '*.pyx' -o -name '*.pxd' \) -delete \
 && find /opt/venv/lib/python3*/site-packages -mindepth 2 -type d -name tests -prune -exec rm -rf {} + \
 && rm -rf /opt/venv/lib/python3*/site-packages/django/contrib/gis \
      /opt/venv/lib/python3*/site-packages/django/db/backends/oracle \
      /opt/venv/lib/python3*/site-packages/django/db/backends/mysql \
 && find /opt/venv -path '*/locale/*' -name '*.po' -delete \
 && find /opt/venv/lib/python3*/site-packages/django -path '*/locale/*/LC_MESSAGES' -not -path '*/locale/en/*' -prune -exec rm -rf {} +

FROM venv AS builder
RUN /opt/venv/bin/pip uninstall -y -q pip
COPY app/ /app/
WORKDIR /app
# Static files are collected once here (Nginx serves them); the packages' own copies then go
# (not a Python package that happens to be called static: celery.utils.static is imported).
# The files go to /srv/static for the Nginx image; Django only reads the manifest (hashed names
# for {% static %}), so that is all the web image keeps of them.
RUN python3 -m compileall -q /app \
 && DJANGO_SETTINGS_MODULE=config.settings python3 manage.py collectstatic --noinput -v 0 \
 && mv /app/staticfiles /srv/static \
 && install -d /app/staticfiles && cp /srv/static/staticfiles.json /app/staticfiles/ \
 && find /opt/venv/lib -type d -path '*/site-packages/*/static' ! -exec test -e '{}/__init__.py' ';' \
      -prune -exec rm -rf {} +

# Flower's packages on top of the same locked set (requirements-flower.lock = the runtime lock +
# Flower's): for the "flower" image only. Tornado's own test suite (with a test key pair) goes.
FROM venv AS flower-builder
COPY requirements-flower.lock /tmp/requirements-flower.lock
RUN --mount=type=secret,id=ca_bundle \
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi \
 && /opt/venv/bin/pip install --no-cache-dir --no-deps --require-hashes -r /tmp/requirements-flower.lock \
 && /opt/venv/bin/pip uninstall -y -q pip \
 && rm -rf /opt/venv/lib/python3*/site-packages/tornado/test

# demo-shop: begin (the bench drives the demo shop's API; bin/remove-demo deletes it)
# make bench only: the seed's gevent worker and httpx client on top of the same locked set
# (requirements-bench.lock = the runtime lock + the "bench" group), and the bench's Django code
# (bench/django/: its settings, URLs and endpoints), for the "bench" image only.
FROM venv AS bench-builder
COPY requirements-bench.lock /tmp/requirements-bench.lock
RUN --mount=type=secret,id=ca_bundle \
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi \
 && /opt/venv/bin/pip install --no-cache-dir --no-deps --require-hashes -r /tmp/requirements-bench.lock \
 && /opt/venv/bin/pip uninstall -y -q pip \
 && find /opt/venv/lib/python3*/site-packages/gevent -type d -name tests -prune -exec rm -rf {} +
COPY bench/django/ /opt/bench/
RUN python3 -m compileall -q /opt/bench
# demo-shop: end

# `make dev` only (docker-compose.dev.yml): requirements-dev.lock (the runtime lock plus the Debug
# Toolbar, watchfiles and the test tools) on the unslimmed venv, whose packages keep their static
# files: in development Django serves them itself (the toolbar's are not in the Nginx image).
FROM venv AS dev-builder
COPY requirements-dev.lock /tmp/requirements-dev.lock
RUN --mount=type=secret,id=ca_bundle \
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi \
 && /opt/venv/bin/pip install --no-cache-dir --no-deps --require-hashes -r /tmp/requirements-dev.lock

# The fault tests only (tests/stack/faults.compose.yml): their slow, hanging and leaking views
# and the settings module that routes them (tests/stack/faultapp/), for the "faults" image only.
FROM python AS faults-builder
COPY tests/stack/faultapp/ /opt/faults/
RUN python3 -m compileall -q /opt/faults

# The runtime's operating system: the base image and Python, with the app user, pruned of what
# only installs software (apt, dpkg, debconf, perl, useradd, tar, diff, the openssl CLI), of the
# disk, mount and login tools (util-linux: su, mount, fdisk's kin) and of what no process of the
# image loads (glibc's iconv modules, CPython's test extension modules). dpkg's status file
# stays, minus what was removed, so image scanners still see every Debian package.
FROM python AS runtime-root
ARG APP_UID=10001
# The app user, and MEDIA_ROOT owned by it: an empty named volume mounted there takes this owner,
# so the reports worker can write into it (Nginx mounts it read-only).
RUN groupadd --system --gid ${APP_UID} app \
 && useradd --system --uid ${APP_UID} --gid app --no-create-home --home-dir /app --shell /usr/sbin/nologin app \
 && install -d -o ${APP_UID} -g ${APP_UID} -m 0755 /srv/media
RUN dpkg --purge --force-remove-essential --force-depends \
      apt libapt-pkg7.0 sqv debian-archive-keyring debconf perl-base passwd tar diffutils \
      util-linux mount bsdutils libsepol2 libsemanage2 libsemanage-common libnettle8t64 libhogweed6t64 \
 && dpkg -L dpkg | while read -r f; do if [ -f "$f" ] || [ -L "$f" ]; then rm -f "$f"; fi; done \
 && awk 'BEGIN { RS = ""; ORS = "\n\n" } !/^Package: dpkg\n/' /var/lib/dpkg/status > /tmp/status \
 && find /var/lib/dpkg -mindepth 1 -delete && mv /tmp/status /var/lib/dpkg/status \
 && rm -rf /usr/bin/openssl /usr/bin/c_rehash /usr/lib/x86_64-linux-gnu/gconv /usr/share/gcc \
      /usr/lib/python3.*/lib-dynload/_test* /usr/lib/python3.*/lib-dynload/_ctypes_test* \
      /usr/lib/python3.*/lib-dynload/*xx* \
      /etc/apt /var/lib/apt /var/cache/apt /var/cache/debconf /var/cache/ldconfig/aux-cache /var/log/*

# That pruned system as one layer (what the base image's own layers hold cannot shrink from a
# layer above them), then the venv and the code in layers of their own, so a deploy of new code
# ships only its own layer. Not another build's image: the files come from this file's stages,
# which start from the base image.
FROM scratch AS runtime
COPY --from=runtime-root / /
COPY --from=builder /opt/venv /opt/venv
# Code and static files stay root-owned: the app user can read them, never change them.
COPY --from=builder /app /app
COPY celery/ /opt/celery/
ENV LANG=C.UTF-8 \
    PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
ARG APP_UID=10001
WORKDIR /app
USER ${APP_UID}:${APP_UID}
EXPOSE 8000
# Every image checks each second during its start period: healthy (and `docker compose up --wait`
# done) as soon as it serves, not at the first full interval.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --start-interval=1s --retries=3 \
  CMD ["python3", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status != 200)"]
STOPSIGNAL SIGTERM
CMD ["gunicorn", "--config", "gunicorn.conf.py"]

# Nginx from Debian (config and entrypoint in nginx/): the only service published to the host.
# Serves /static/ itself, with the files collected in the builder stage above, and proxies
# everything else to Gunicorn. A target of this Dockerfile, not an image built FROM the web
# image's tag: current Compose builds services in parallel (buildx bake) and would look that
# tag up in a registry before web exists; here both targets share one build graph.
FROM ${BASE_IMAGE} AS nginx
ARG NGINX_UID=10002
RUN groupadd --system --gid ${NGINX_UID} nginx \
 && useradd --system --uid ${NGINX_UID} --gid nginx --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin nginx \
 && apt-get update \
 && apt-get install -y --no-install-recommends nginx \
 && rm -rf /var/lib/apt/lists/* /etc/nginx/sites-enabled /etc/nginx/sites-available /etc/nginx/conf.d \
 && ln -sf /dev/stdout /var/log/nginx/access.log \
 && ln -sf /dev/stderr /var/log/nginx/error.log
# The config is a template (TLS switch, trusted X-Forwarded-Proto) rendered at start into /tmp;
# /etc/nginx/nginx.conf points at the rendered file so `nginx -s quit` and `nginx -t` use it.
# No certificate or key is ever in the image: TLS files are mounted (docker-compose.tls.yml).
COPY nginx/nginx.conf /etc/nginx/nginx.conf.template
COPY nginx/security-headers.conf nginx/json-answer.conf /etc/nginx/
COPY nginx/entrypoint.sh nginx/watch-upstream.sh /etc/nginx/
RUN ln -sf /tmp/nginx/nginx.conf /etc/nginx/nginx.conf
COPY --from=builder /srv/static /srv/static
USER ${NGINX_UID}:${NGINX_UID}
EXPOSE 8080
HEALTHCHECK --interval=5s --timeout=3s --start-period=5s --start-interval=1s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET /nginx-health HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && head -n1 <&3 | grep -q ' 200 '"]
# SIGQUIT is Nginx's graceful shutdown: finish open requests, then exit.
STOPSIGNAL SIGQUIT
ENTRYPOINT ["/etc/nginx/entrypoint.sh"]
CMD ["-g", "daemon off;"]

# The Celery monitor for the monitoring profile: the web image plus Flower (the default target
# above stays Flower-free; compose builds each target by name).
FROM runtime AS flower
COPY --from=flower-builder /opt/venv /opt/venv
EXPOSE 5555
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --start-interval=1s --retries=3 \
  CMD ["python3", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:5555/healthcheck', timeout=2).status != 200)"]
CMD ["/opt/celery/entrypoint.sh", "flower"]

# The development image (docker-compose.dev.yml, `make dev`): the runtime image plus the dev venv.
# The code comes from the bind-mounted ./app and the processes run as the host's user, so edits
# and files written by makemigrations/startapp stay the developer's. The media directory is open
# to that user too (a new named volume copies these permissions). Never deployed.
FROM runtime AS dev
ARG APP_UID=10001
COPY --from=dev-builder /opt/venv /opt/venv
USER root
RUN chmod 1777 /srv/media
USER ${APP_UID}:${APP_UID}

# demo-shop: begin
# The web image for `make bench` (bench/compose.bench.yml's web service): the runtime image plus
# gevent and httpx (scenarios 1-2 measure the seed's gevent worker and httpx client) and the
# bench's Django code with its settings module, which routes /bench/; the default target carries
# none of them.
FROM runtime AS bench
COPY --from=bench-builder /opt/venv /opt/venv
COPY --from=bench-builder /opt/bench /opt/bench
ENV PYTHONPATH=/opt/bench \
    DJANGO_SETTINGS_MODULE=bench_settings
# demo-shop: end

# The web image of the fault tests (tests/stack/faults.compose.yml, which only they layer over
# docker-compose.yml): the runtime image plus the fault views and their settings module, which
# routes /faults/. Built and run by the tests; never deployed.
FROM runtime AS faults
COPY --from=faults-builder /opt/faults /opt/faults
ENV PYTHONPATH=/opt/faults \
    DJANGO_SETTINGS_MODULE=fault_settings

# Last, because a build without --target builds the last stage: a plain `docker build .` (a CI
# step that names no target) makes the runtime image, never one of the lab images above.
FROM runtime AS production
