#!/usr/bin/env bash
# Makes debian:trixie-slim locally from Debian's packages, for machines that
# cannot pull it (air-gapped, or no registry). Slimmed the way the official
# image is: no apt lists or caches, docs, man pages or locales; one layer.
# Usage: base/build.sh [TAG]   (default debian:trixie-slim)
set -euo pipefail

tag=${1:-debian:trixie-slim}
suite=trixie

# The mirror is the host's own (first URI of its apt sources), never hard-coded.
mirror=${DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
  mirror=$(grep -rhoE '^(URIs:|deb) +[^ ]+' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null \
    | awk '{print $2}' | grep -v -- '-security' | grep -E '/debian/?$' | head -n1 || true)
fi
[ -n "$mirror" ] || { echo "base/build.sh: set DEBIAN_MIRROR" >&2; exit 1; }
security=${DEBIAN_SECURITY_MIRROR:-${mirror%/debian*}/debian-security}

command -v debootstrap >/dev/null || { apt-get update -qq && apt-get install -y -qq debootstrap; }

root=$(mktemp -d /var/tmp/trixie-slim.XXXXXX)
trap 'rm -rf "$root"' EXIT

debootstrap --variant=minbase --components=main --include=ca-certificates \
  "$suite" "$root" "$mirror"

# Same sources layout as the official image (deb822).
rm -f "$root/etc/apt/sources.list"
cat > "$root/etc/apt/sources.list.d/debian.sources" <<SOURCES
Types: deb
URIs: $mirror
Suites: $suite $suite-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security
Suites: $suite-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES

# What the official slim image drops, and keeps dropping on later installs.
cat > "$root/etc/dpkg/dpkg.cfg.d/docker" <<'DPKG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
DPKG
cat > "$root/etc/apt/apt.conf.d/docker-clean" <<'APT'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
Acquire::GzipIndexes "true";
APT::InstallRecommends "false";
APT
echo 'Acquire::Languages "none";' > "$root/etc/apt/apt.conf.d/docker-no-languages"

find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
rm -rf "$root"/usr/share/{man,info,groff,lintian,linda}/* "$root"/usr/share/locale/*
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/var/cache/debconf/*-old \
  "$root"/var/log/* "$root"/tmp/* "$root"/root/.cache
: > "$root/etc/machine-id"
rm -f "$root/etc/hostname" "$root/etc/resolv.conf"

tar --numeric-owner --xattrs -C "$root" -c . \
  | docker import --change 'CMD ["bash"]' --change 'ENV LANG=C.UTF-8' - "$tag"
docker image ls "$tag"
