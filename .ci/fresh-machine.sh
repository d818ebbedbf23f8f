#!/usr/bin/env bash
# Runs .ci/docker.sh's install path on a machine with nothing installed: a Debian bookworm root
# made by debootstrap (the host kind's release, minbase: no Docker, no compose, no buildx, and
# only a deb822 apt source, as on the host), booted as a privileged container, where
# ensure_docker must install Docker, compose and buildx and start dockerd. Needs root, Docker
# and debootstrap on the host; takes a few minutes. Not part of `make test`: it installs from
# Debian's mirror into a throw-away container.
#
#   .ci/fresh-machine.sh           the install path only
#   .ci/fresh-machine.sh --build   then, in that container's empty image store and build cache,
#                                  every image with current Compose (bake), as .ci/run's step
#                                  does; only the base image is loaded (no registry here)
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf '[fresh] %s\n' "$*"; }
# shellcheck source=.ci/docker.sh
source .ci/docker.sh

image=djstack/fresh-machine:bookworm
mirror=$(debian_mirror)
[ -n "$mirror" ] || { echo "no Debian mirror in the host's apt sources" >&2; exit 1; }
if ! docker image inspect "$image" >/dev/null 2>&1; then
  root=$(mktemp -d)
  trap 'rm -rf "$root"' EXIT
  log "debootstrap bookworm (minbase) from $mirror"
  debootstrap --variant=minbase bookworm "$root" "$mirror" >/dev/null
  # As on the host: deb822 sources only, no /etc/apt/sources.list.
  rm -f "$root/etc/apt/sources.list"
  printf 'Types: deb\nURIs: %s\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    "$mirror" > "$root/etc/apt/sources.list.d/debian.sources"
  tar -C "$root" -c . | docker import - "$image" >/dev/null
  rm -rf "$root"
fi

build=${1:-}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The host's options for reaching its mirror, as a machine of its kind has them (a snapshot
# mirror's Release files may be past their Valid-Until); not its dpkg hooks, whose programs the
# new machine does not have.
grep -h '^Acquire::[^{}]*;$' /etc/apt/apt.conf.d/* > "$work/99host-acquire" 2>/dev/null || true
mounts=(-v /var/lib/docker -v "$PWD/.ci:/ci:ro"
  -v "$work/99host-acquire:/etc/apt/apt.conf.d/99host-acquire:ro")
if [ "$build" = --build ]; then
  docker save "${BASE_IMAGE:-debian:trixie-slim}" -o "$work/base.tar"
  mounts+=(-v "$PWD:/src:ro" -v "$work/base.tar:/base.tar:ro"
    -v "${BUILD_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}:/ca.crt:ro")
fi
log "ensure_docker in a fresh $image container"
docker run --rm --privileged -e BUILD="$build" "${mounts[@]}" "$image" bash -c '
  set -euo pipefail
  log() { printf "[inside] %s\n" "$*"; }
  ! command -v docker >/dev/null || { echo "docker is already there" >&2; exit 1; }
  [ ! -e /etc/apt/sources.list ] || { echo "sources.list exists" >&2; exit 1; }
  source /ci/docker.sh
  ensure_docker
  log "server $(docker version --format "{{.Server.Version}}"), compose $(docker compose version --short), buildx $(docker buildx version | cut -d" " -f2)"
  docker info --format "{{.ServerVersion}} {{.Driver}}" >/dev/null
  [ "$BUILD" = --build ] || exit 0
  log "images before: $(docker images -q | wc -l); build cache: $(docker buildx du 2>/dev/null | tail -n1)"
  docker load -qi /base.tar
  apt-get install -y -qq make >/dev/null
  cd /src
  .ci/current-compose.sh /tmp/current
  DOCKER_CONFIG=/tmp/current COMPOSE_BAKE=true BUILD_CA_BUNDLE=/ca.crt IMAGE_TAG=fresh make images
  log "built with compose $(DOCKER_CONFIG=/tmp/current docker compose version --short):"
  docker images --format "{{.Repository}}:{{.Tag}} {{.Size}}" | grep ":fresh"
'
log "the install path passed on a machine with nothing installed"
