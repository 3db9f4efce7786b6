#!/usr/bin/env bash
# README command 1: install what is missing, build, and start the server.
# Extra arguments go to the server (see `target/release/origin --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh run
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release -p origin
exec target/release/origin "$@"
