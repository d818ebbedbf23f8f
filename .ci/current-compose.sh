#!/usr/bin/env bash
# Current Docker Compose (with buildx bake, what Docker Desktop ships) in a private DOCKER_CONFIG,
# so a build can be proven on it without changing the machine's own Docker or apt state.
#
#   .ci/current-compose.sh DIR     -> DIR/cli-plugins/{docker-compose,docker-buildx}
#   DOCKER_CONFIG=DIR docker compose version
#
# The two packages come from Debian's unstable suite through a throw-away apt configuration
# (its own source list, package lists and cache under a temporary folder): the host's sources,
# pins and installed packages are never touched.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:?usage: .ci/current-compose.sh DIR}
if [ -x "$dir/cli-plugins/docker-compose" ] && [ -x "$dir/cli-plugins/docker-buildx" ]; then
  exit 0
fi
log() { printf '[current-compose] %s\n' "$*"; }
# shellcheck source=.ci/docker.sh
source .ci/docker.sh
mirror=$(debian_mirror)
[ -n "$mirror" ] || { echo "no Debian mirror in /etc/apt/sources.list*" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial" "$tmp/debs" "$tmp/root"
printf 'Types: deb\nURIs: %s\nSuites: unstable\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
  "$mirror" > "$tmp/unstable.sources"
apt_private=(
  -o "Dir::Etc::SourceList=/dev/null"
  -o "Dir::Etc::SourceParts=$tmp/parts"
  -o "Dir::Etc::Preferences=/dev/null"
  -o "Dir::Etc::PreferencesParts=/dev/null"
  -o "Dir::State::Lists=$tmp/lists"
  -o "Dir::Cache=$tmp/cache"
  -o "APT::Sandbox::User=root"
)
mkdir -p "$tmp/parts" && mv "$tmp/unstable.sources" "$tmp/parts/"
log "fetching docker-compose and docker-buildx from Debian unstable"
apt-get "${apt_private[@]}" update -qq
(cd "$tmp/debs" && apt-get "${apt_private[@]}" download -qq docker-compose docker-buildx)
for deb in "$tmp"/debs/*.deb; do dpkg -x "$deb" "$tmp/root"; done
mkdir -p "$dir/cli-plugins"
for plugin in docker-compose docker-buildx; do
  src=$(find "$tmp/root" -type f -name "$plugin" -path '*cli-plugins*' | head -n1)
  [ -n "$src" ] || { echo "$plugin not found in the unpacked package" >&2; exit 1; }
  install -m 0755 "$src" "$dir/cli-plugins/$plugin"
done
log "$(DOCKER_CONFIG=$dir docker compose version), $(DOCKER_CONFIG=$dir docker buildx version)"
