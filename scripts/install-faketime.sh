#!/usr/bin/env bash
# Installs faketime (Debian's package) when it is not on the PATH: the test script runs the tests
# that touch dates a second time with the clock far ahead.
set -euo pipefail
if command -v faketime >/dev/null 2>&1; then
    exit 0
fi
echo "installing faketime with apt-get" >&2
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq faketime >/dev/null
command -v faketime >/dev/null
