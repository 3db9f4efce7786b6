#!/usr/bin/env bash
# Glass-to-glass latency over WebRTC, in one run, with pixel clocks read off
# every displayed frame in headless Chromium (player/tests/latency.mjs):
#   1. WHEP from an RTMP publish (ffmpeg/libx264 of scripts/bench/clock_source.py;
#      both transcodes included: ours to the 720p rendition, and Chromium's decode);
#   2. WHIP -> WHEP: a canvas clock published from Chromium over WHIP
#      (player/tests/clock-publish.mjs: OpenH264 in the browser), played over WHEP;
#   3. WHIP -> LL-HLS: the same publish in hls.js (the watch page's set-up).
# Targets (issue 19): p50 <= 300 ms, <= 300 ms, <= 1 s.
# Usage: scripts/bench-webrtc.sh [SECONDS]; writes target/bench/webrtc.json
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh test
SECS=${1:-60}
OUT=target/bench
WORK=$(mktemp -d)
mkdir -p "$OUT"
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release -q -p origin
cleanup() {
  local rc=$?
  kill $(jobs -p) 2>/dev/null || true
  wait 2>/dev/null || true
  if ((rc != 0)); then tail -20 "$OUT/webrtc-origin.log" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

target/release/origin --rtmp-listen 127.0.0.1:19350 --http-listen 127.0.0.1:18080 --webrtc-listen 127.0.0.1:0 \
  --data-dir "$WORK/data" --stream-key rtmp --stream-key browser >"$OUT/webrtc-origin.log" 2>&1 &
for _ in $(seq 100); do curl -sf http://127.0.0.1:18080/healthz >/dev/null && break; sleep 0.1; done
curl -sf http://127.0.0.1:18080/healthz >/dev/null || { echo "origin did not start"; exit 1; }

python3 scripts/bench/clock_source.py $((SECS + 20)) | ffmpeg -hide_banner -loglevel error -nostdin \
  -f rawvideo -pix_fmt yuv420p -s 1280x720 -r 30 -i - -f lavfi -i sine=frequency=440:sample_rate=48000 \
  -map 0:v -map 1:a -c:v libx264 -preset veryfast -tune zerolatency -g 30 -keyint_min 30 -sc_threshold 0 \
  -b:v 4000k -maxrate 4000k -bufsize 2000k -c:a aac -b:a 128k -shortest -f flv rtmp://127.0.0.1:19350/live/rtmp &
FFMPEG=$!
sleep 8
cd player
node tests/latency.mjs http://127.0.0.1:18080/api/broadcasts/rtmp/whep "$SECS" --whep >"$WORK/rtmp-whep.json"
# One publisher at a time: the browser's encoder gets the CPU ffmpeg had.
kill "$FFMPEG" 2>/dev/null || true

node tests/clock-publish.mjs http://127.0.0.1:18080 browser browser $((2 * SECS + 60)) >"$WORK/clock.json" 2>"$WORK/clock.log" &
CLOCK=$!
sleep 10
node tests/latency.mjs http://127.0.0.1:18080/api/broadcasts/browser/whep "$SECS" --whep >"$WORK/whip-whep.json"
node tests/latency.mjs http://127.0.0.1:18080/hls/browser/master.m3u8 "$SECS" --ll >"$WORK/whip-llhls.json"
kill "$CLOCK" 2>/dev/null || true
cd ..

python3 - "$WORK" "$OUT" <<'PY'
import json, os, sys
work, out = sys.argv[1:3]
machine = f"{os.cpu_count()} cores, " + open("/proc/cpuinfo").read().split("model name")[1].split("\n")[0].strip(" :\t")
result = {"machine": machine}
rows = [("rtmp_to_whep", "RTMP -> WHEP (2 transcodes)", 300), ("whip_to_whep", "WHIP -> WHEP", 300), ("whip_to_llhls", "WHIP -> LL-HLS (hls.js)", 1000)]
files = {"rtmp_to_whep": "rtmp-whep", "whip_to_whep": "whip-whep", "whip_to_llhls": "whip-llhls"}
print(f"\nglass-to-glass latency         frames   p50      p95      max    stalls  first frame  target p50")
for key, label, target in rows:
    r = json.load(open(f"{work}/{files[key]}.json"))
    result[key] = {k: r[k] for k in ("n", "p50_ms", "p95_ms", "max_ms", "waiting", "fatal", "first_frame_ms")}
    result[key]["target_p50_ms"] = target
    p = lambda k: f"{r[k]/1000:6.3f} s" if r[k] is not None else "   n/a  "
    print(f"  {label:28s} {r['n']:6d} {p('p50_ms')} {p('p95_ms')} {p('max_ms')}  {r['waiting']:3d}    {r['first_frame_ms']} ms    {target} ms")
print(f"  ({machine}; {out}/webrtc.json)")
json.dump(result, open(f"{out}/webrtc.json", "w"), indent=2)
PY
