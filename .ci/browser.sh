# Sourced by .ci/run: headless Chromium from Debian's packages, which tests/stack/test_browser.py
# drives to check that pages render under the Content-Security-Policy Nginx sends. Needs root,
# `log` and `set -euo pipefail` from the caller.

ensure_chromium() {
  [ -x /usr/bin/chromium ] && return
  log "installing Chromium from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq chromium >/dev/null
}
