#!/usr/bin/env bash
# Installs nats-server (Debian's package, with JetStream) when it is not on the PATH.
set -euo pipefail
if command -v nats-server >/dev/null 2>&1; then
    exit 0
fi
echo "installing nats-server with apt-get" >&2
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nats-server >/dev/null
command -v nats-server >/dev/null
