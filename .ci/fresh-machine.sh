#!/usr/bin/env bash
# Runs .ci/docker.sh's install path on a machine with nothing installed: a Debian bookworm root
# made by debootstrap (the host kind's release, minbase: no Docker, no compose, no buildx, and
# only a deb822 apt source, as on the host), booted as a privileged container, where
# ensure_docker must install Docker, compose and buildx and start dockerd. Needs root, Docker
# and debootstrap on the host; takes a few minutes. Not part of `make test`: it installs from
# Debian's mirror into a throw-away container.
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
fi

log "ensure_docker in a fresh $image container"
docker run --rm --privileged -v /var/lib/docker -v "$PWD/.ci:/ci:ro" "$image" bash -c '
  set -euo pipefail
  log() { printf "[inside] %s\n" "$*"; }
  ! command -v docker >/dev/null || { echo "docker is already there" >&2; exit 1; }
  [ ! -e /etc/apt/sources.list ] || { echo "sources.list exists" >&2; exit 1; }
  source /ci/docker.sh
  ensure_docker
  log "server $(docker version --format "{{.Server.Version}}"), compose $(docker compose version --short), buildx $(docker buildx version | cut -d" " -f2)"
  docker info --format "{{.ServerVersion}} {{.Driver}}" >/dev/null
'
log "the install path passed on a machine with nothing installed"
