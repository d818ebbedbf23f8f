# Sourced by .ci/run (and by .ci/fresh-machine.sh, which runs it on a machine with nothing installed): makes
# a machine able to build and run the stack. Needs root, `log` and `set -euo pipefail` from the
# caller.

# The host's Debian mirror, from whichever apt source files exist: deb822 `*.sources` (the
# only kind on this image; there is no /etc/apt/sources.list) or one-line `*.list`. Files that
# are absent are skipped, never an error: under `set -o pipefail` grep's status 2 for a missing
# file would end the script.
debian_mirror() {
  local etc=${APT_ETC:-/etc/apt} files=()
  for f in "$etc/sources.list" "$etc"/sources.list.d/*.sources "$etc"/sources.list.d/*.list; do
    [ -f "$f" ] && files+=("$f")
  done
  [ "${#files[@]}" -gt 0 ] || return 0
  awk '$1 == "URIs:" || $1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) print $i }' \
    "${files[@]}" | grep -v -- '-security' | grep -E '/debian/?$' | head -n1 || true
}

ensure_docker() {
  if docker info >/dev/null 2>&1; then return; fi
  export DEBIAN_FRONTEND=noninteractive
  if ! command -v dockerd >/dev/null 2>&1 || ! docker compose version >/dev/null 2>&1 \
     || ! docker buildx version >/dev/null 2>&1; then
    log "installing Docker from Debian's packages"
    apt-get update -qq
    apt-get install -y -qq docker.io debootstrap >/dev/null
    # Compose v2 and buildx come from trixie, pinned low so nothing else is upgraded.
    local mirror
    mirror=$(debian_mirror)
    [ -n "$mirror" ] || { echo "no Debian mirror in /etc/apt/sources.list*" >&2; exit 1; }
    printf 'Types: deb\nURIs: %s\nSuites: trixie\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      "$mirror" > /etc/apt/sources.list.d/trixie.sources
    printf 'Package: *\nPin: release n=trixie\nPin-Priority: 100\n' > /etc/apt/preferences.d/trixie-low
    apt-get update -qq
    apt-get install -y -qq -t trixie docker-compose docker-buildx >/dev/null
  fi
  command -v debootstrap >/dev/null 2>&1 || apt-get install -y -qq debootstrap >/dev/null
  log "starting dockerd"
  nohup dockerd >/var/log/dockerd.log 2>&1 &
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && return; sleep 1; done
  echo "dockerd did not start; see /var/log/dockerd.log" >&2
  tail -n 30 /var/log/dockerd.log >&2
  exit 1
}
