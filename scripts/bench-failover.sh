#!/usr/bin/env bash
# Losing an origin and deploying one at a time, measured on this machine
# with release builds: the `failover` scenarios of origin/tests/failover.rs
# (PostgreSQL, two origins, HAProxy for RTMP and the nginx edge from
# deploy/, ffmpeg publishing 720p30 through HAProxy in a restart loop,
# hls.js in Chromium through the edge, 200 chat sessions, an API prober at
# 10 requests a second), ROUNDS times each. Every scenario prints one
# `FAILOVER-RESULT {json}` line; they are collected here.
# Usage: scripts/bench-failover.sh [ROUNDS]; writes target/bench/failover.json
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh test
ROUNDS=${1:-3}
OUT=target/bench
mkdir -p "$OUT"
export PATH="$HOME/.cargo/bin:$PATH"
ulimit -Sn "$(ulimit -Hn)"
cargo test --release -q -p origin --test failover --no-run
LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT
for ((r = 1; r <= ROUNDS; r++)); do
  echo "round $r of $ROUNDS" >&2
  cargo test --release -q -p origin --test failover -- --test-threads 1 --nocapture 2>&1 \
    | grep --line-buffered '^FAILOVER-RESULT ' | tee -a "$LOG" >&2
done
python3 - "$LOG" "$OUT/failover.json" <<'PY'
import json, statistics, sys, datetime
rows = [json.loads(l.split(' ', 1)[1]) for l in open(sys.argv[1])]
by = {}
for r in rows:
    by.setdefault(r['scenario'], []).append(r)
def span(xs):
    xs = [x for x in xs if x is not None]
    return f"{min(xs):.2f}–{max(xs):.2f} (median {statistics.median(xs):.2f})" if xs else "-"
print("| scenario | measured over runs |")
print("|---|---|")
for name, rs in by.items():
    keys = [k for k in rs[0] if k not in ('scenario', 'steps')]
    parts = [f"{k} {span([r[k] for r in rs])}" for k in keys]
    for step in range(len(rs[0].get('steps', []))):
        for k in ('stopped_s', 'ready_s', 'worst_freeze_ms'):
            parts.append(f"step {step + 1} {k} {span([r['steps'][step][k] for r in rs])}")
    print(f"| {name} ({len(rs)} runs) | " + "; ".join(parts) + " |")
json.dump({"date": datetime.date.today().isoformat(), "runs": rows}, open(sys.argv[2], 'w'), indent=1)
PY
