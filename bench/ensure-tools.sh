#!/usr/bin/env bash
# make bench's tools from Debian's packages: hey (the load generator) and python3-matplotlib
# (the plots, run with /usr/bin/python3; the project's .venv does not carry it).
set -euo pipefail
missing=()
command -v hey >/dev/null || missing+=(hey)
/usr/bin/python3 -c 'import matplotlib' 2>/dev/null || missing+=(python3-matplotlib)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "make bench needs: ${missing[*]}. Install them with: sudo apt-get install -y ${missing[*]}" >&2
  [[ " ${missing[*]} " == *" hey "* ]] && exit 1   # plots are optional, the load generator is not
  exit 0
fi
echo "installing ${missing[*]} from Debian's packages"
apt-get install -y -q "${missing[@]}" >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q "${missing[@]}" >/dev/null; }
