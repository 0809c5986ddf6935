#!/usr/bin/env bash
# Many channels in one deployment through real processes (issue 14's simulation; not part of
# .ci/run): builds the release binaries and plugins, then runs tests/benches/channels.rs against
# them. ROSEY_SIM_CHANNELS (default 100) and ROSEY_SIM_SECONDS (default 300) size the run;
# ROSEY_SIM_CHANNELS_PER_BOT (default 1) puts that many channels in each rosey-bot process.
# Each bot is a process; raise the open-file limit for large runs (ulimit -n).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p rosey-db-service -p rosey-bot -p rosey-runtime -p markov -p quotes
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
ROSEY_BIN_DIR="$PWD/target/release" cargo bench -p rosey-tests --bench channels "$@"
