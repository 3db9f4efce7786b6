#!/usr/bin/env bash
# README command 2 and CI: install test dependencies, then every check.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh test
export PATH="$HOME/.cargo/bin:$PATH"
export RUST_BACKTRACE=1
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
# Tests that publish real streams are CPU-heavy; two at a time on a 2-core box.
cargo test --workspace -- --test-threads=2
