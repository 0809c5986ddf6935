#!/usr/bin/env bash
# Runs Rosey's whole test suite on a fresh machine: installs what the tests need (nats-server),
# builds every binary and plugin library the integration tests launch, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-nats.sh
nats-server --version >&2
# Integration tests launch the binaries from the target folder, so build them first.
cargo build --workspace --all-targets
cargo test --workspace "$@"
