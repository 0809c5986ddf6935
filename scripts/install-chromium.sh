#!/usr/bin/env bash
# Installs headless Chromium (Debian's `chromium` and `chromium-driver`) when it is missing: the
# browser test of rosey-web drives it over the DevTools protocol.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
echo "installing chromium and chromium-driver with apt-get" >&2
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
command -v chromium >/dev/null
