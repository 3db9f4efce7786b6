#!/usr/bin/env bash
# A chat crowd in one room: the workspace's chat-load (loadgen) at 1,000,
# 5,000, 10,000 and 20,000 sessions joining over RAMP seconds, each reading
# everything; per step the origin's CPU seconds and RSS per session (against
# the same server idle), the time for the count (API and pushed) to reach N,
# the fan-out of one message to all (p50/p99), and the count after all leave.
# Each step gets a fresh server. Everything runs on this machine: the load
# generator shares its 2 cores.
# With PEER=/path/to/origin (e.g. a build of an earlier commit), the same
# crowd also runs against that binary at 1,000, 2,000 and 4,000 sessions.
# A session is a socket in each process; a step larger than the hard
# open-file limit allows (less 200 spare) runs with what fits, and says so.
# Usage: [PEER=…] scripts/bench-chat.sh [RAMP_SECONDS]; writes target/bench/chat.json
set -euo pipefail
cd "$(dirname "$0")/.."
# The servers run with this admin token, which creates broadcasts under any policy.
export ORIGIN_ADMIN_TOKEN=bench-admin-token-0123456789
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
BASE=http://127.0.0.1:18081
: >"$OUT/chat-origin.log"

# One step: a fresh server ($2) with one broadcast, and a crowd of $3.
step() {
  local label=$1 bin=$2 n=$3 run=$3 origin id idle r l
  if ((n > FITS)); then
    run=$FITS
    echo "  $n sessions do not fit under the hard open-file limit ($(ulimit -Hn)); running $run"
  fi
  rm -rf "$WORK/data"
  "$bin" --rtmp-listen 127.0.0.1:19351 --http-listen 127.0.0.1:18081 --webrtc-listen 127.0.0.1:0 \
    --data-dir "$WORK/data" >>"$OUT/chat-origin.log" 2>&1 &
  origin=$!
  for _ in $(seq 100); do curl -sf "$BASE/healthz" >/dev/null && break; sleep 0.1; done
  id=$(curl -sf -X POST -H 'content-type: application/json' -H "authorization: Bearer $ORIGIN_ADMIN_TOKEN" -d '{"title":"Crowd"}' \
    "$BASE/api/broadcasts" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  idle=$(awk '/VmRSS/ {print $2}' "/proc/$origin/status")
  r=$(/usr/bin/time -o "$WORK/loadgen-time" -f "%U %S" target/release/chat-load --base "$BASE" \
    --broadcast "$id" --sessions "$run" --ramp "$RAMP" --timeout 60 --server-pid "$origin")
  l=$(awk '{print $1 + $2}' "$WORK/loadgen-time")
  kill "$origin"
  wait "$origin" 2>/dev/null || true
  ((first)) || echo "," >>"$OUT/chat.json"
  first=0
  echo "{\"server\": \"$label\", \"asked\": $n, \"idle_rss_kib\": $idle, \"report\": $r, \"loadgen_cpu_seconds\": $l}" >>"$OUT/chat.json"
  echo "  $label $n: $r"
}

echo "[" >"$OUT/chat.json"
first=1
for N in 1000 5000 10000 20000; do step ours target/release/origin "$N"; done
if [[ -n "${PEER:-}" ]]; then
  for N in 1000 2000 4000; do step before "$PEER" "$N"; done
fi
echo "]" >>"$OUT/chat.json"
python3 - "$OUT/chat.json" <<'PY'
import json, sys
rows = json.load(open(sys.argv[1]))
print("| server | sessions | joined | refused | server CPU s | RSS per session | count (API) after last join | count pushed to all | fan-out p50 / p99 | count after leave | loadgen CPU s |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
ms = lambda v: "never" if v is None else f"{v:,.0f} ms"
for r in rows:
    p = r["report"]
    rss = (p["server_rss_mib"] * 1024 - r["idle_rss_kib"]) / max(p["joined"], 1) if p["server_rss_mib"] else 0
    print(f"| {r['server']} | {p['sessions']:,} | {p['joined']:,} | {p['refused']:,} | {p['server_cpu_s']:.1f} | {rss:.1f} KiB | "
          f"{ms(p['count_api_ms'])} | {ms(p['count_pushed_ms'])} ({p['count_pushed_exact']:,} exact) | "
          f"{p['fanout_p50_ms']:,.0f} / {p['fanout_p99_ms']:,.0f} ms ({p['fanout_received']:,}) | "
          f"{p['count_after_leave']} in {ms(p['count_zero_ms'])} | {r['loadgen_cpu_seconds']:.1f} |")
PY
