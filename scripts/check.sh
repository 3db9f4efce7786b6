#!/usr/bin/env bash
# README command 2 and CI: install test dependencies, then every check.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh test
export PATH="$HOME/.cargo/bin:$PATH"
# No backtraces: CI keeps only the head and tail of a long output, and a
# backtrace after a failing test's message pushed the message out of it (stop
# 30's failover failure could not be read). Assertions name their file and
# line; run one test with RUST_BACKTRACE=1 to see more.
export RUST_BACKTRACE=0
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
# One home per concern: no module imports one that imports it, and no origin
# file over 450 lines of code.
for crate in ingest transcoder loadgen testkit webrtc; do python3 scripts/layout.py "$crate/src"; done
python3 scripts/layout.py origin/src --max-lines 450
# Tests that publish real streams are CPU-heavy; two at a time on a 2-core box.
cargo test --workspace -- --test-threads=2
