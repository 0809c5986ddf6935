#!/usr/bin/env bash
# Runs Rosey's whole test suite on a fresh machine: installs what the tests need (nats-server,
# faketime), builds every binary and plugin library the integration tests launch, then runs every
# test; then runs the tests that touch dates again with Rosey's clock 400 days ahead.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-nats.sh
scripts/install-faketime.sh
nats-server --version >&2
# Integration tests launch the binaries from the target folder, so build them first.
cargo build --workspace --all-targets
cargo test --workspace "$@"

# The same tests on another day: every Rosey process (the test binaries and what they start) reads
# a clock 400 days ahead, while nats-server (Go, which reads the kernel's clock itself) keeps the
# real one, as machines in a cluster do not share one clock. Nothing may depend on the day the
# fixtures were written, nor on Rosey's clock agreeing with the server's. The monotonic clock is
# left alone: timers and timeouts measure durations, not dates.
echo "--- the tests that touch dates, with the clock 400 days ahead (faketime) ---" >&2
ahead=(--config 'target."cfg(all())".runner = ["faketime", "-f", "+400d"]')
export FAKETIME_DONT_FAKE_MONOTONIC=1
cargo test "${ahead[@]}" -p rosey-db-service -p rosey-bot -p rosey-runtime -p markov -p quotes \
    --lib --bins "$@"
cargo test "${ahead[@]}" -p rosey-tests --test db_service --test bot_with_db \
    --test plugin_markov --test plugin_quotes --test cli_admin --test llm_gateway \
    --test multi_channel "$@"
