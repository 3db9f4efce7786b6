#!/usr/bin/env bash
# A chat crowd in one room: the workspace's chat-load (loadgen) at 1,000,
# 5,000, 10,000 and 20,000 sessions joining over RAMP seconds, each reading
# everything; per step the origin's CPU seconds and RSS per session, the time
# for the count (API and pushed) to reach N, the fan-out of one message to
# all (p50/p99), and the count after all leave. Everything runs on this
# machine: the load generator shares its 2 cores.
# A session is a socket in each process; a step larger than the hard
# open-file limit allows (less 200 spare) runs with what fits, and says so.
# Usage: scripts/bench-chat.sh [RAMP_SECONDS]; writes target/bench/chat.json
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh test
RAMP=${1:-30}
OUT=target/bench
WORK=$(mktemp -d)
mkdir -p "$OUT"
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release -q -p origin -p loadgen --bins
cleanup() { kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
ulimit -Sn "$(ulimit -Hn)"
FITS=$(( $(ulimit -Hn) - 200 ))

target/release/origin --rtmp-listen 127.0.0.1:19351 --http-listen 127.0.0.1:18081 \
  --data-dir "$WORK/data" >"$OUT/chat-origin.log" 2>&1 &
ORIGIN=$!
BASE=http://127.0.0.1:18081
for _ in $(seq 100); do curl -sf "$BASE/healthz" >/dev/null && break; sleep 0.1; done
ID=$(curl -sf -X POST -H 'content-type: application/json' -d '{"title":"Crowd"}' \
  "$BASE/api/broadcasts" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')

echo "[" >"$OUT/chat.json"
first=1
for N in 1000 5000 10000 20000; do
  RUN=$N
  if ((N > FITS)); then
    RUN=$FITS
    echo "  $N sessions do not fit under the hard open-file limit ($(ulimit -Hn)); running $RUN"
  fi
  R=$(/usr/bin/time -o "$WORK/loadgen-time" -f "%U %S" target/release/chat-load --base "$BASE" \
    --broadcast "$ID" --sessions "$RUN" --ramp "$RAMP" --timeout 60 --server-pid "$ORIGIN")
  L=$(awk '{print $1 + $2}' "$WORK/loadgen-time")
  ((first)) || echo "," >>"$OUT/chat.json"
  first=0
  echo "{\"asked\": $N, \"report\": $R, \"loadgen_cpu_seconds\": $L}" >>"$OUT/chat.json"
  echo "  $N: $R"
  sleep 3
done
echo "]" >>"$OUT/chat.json"
python3 - "$OUT/chat.json" <<'PY'
import json, sys
rows = json.load(open(sys.argv[1]))
print("| sessions | joined | refused | server CPU s | RSS/session KiB | count (API) after last join | count pushed to all | fan-out p50 / p99 | count after leave (time) | loadgen CPU s |")
print("|---|---|---|---|---|---|---|---|---|---|")
ms = lambda v: "never" if v is None else f"{v / 1000:.1f} s"
for r in rows:
    p = r["report"]
    print(f"| {p['sessions']:,} | {p['joined']:,} | {p['refused']} | {p['server_cpu_s']:.1f} | {p['server_rss_per_session_kib']:.1f} | "
          f"{ms(p['count_api_ms'])} | {ms(p['count_pushed_ms'])} ({p['count_pushed_exact']:,} exact) | "
          f"{p['fanout_p50_ms']:.0f} / {p['fanout_p99_ms']:.0f} ms ({p['fanout_received']:,}) | "
          f"{p['count_after_leave']} ({ms(p['count_zero_ms'])}) | {r['loadgen_cpu_seconds']:.1f} |")
PY
