#!/usr/bin/env bash
# Runs Rosey on this machine: installs nats-server when missing, builds every process and plugin,
# then `rosey up` starts NATS, the database service, the plugin runtime and the bot. Arguments go
# to `rosey up` (for example --config FILE).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-nats.sh
cargo build --workspace --quiet
exec target/debug/rosey up "$@"
