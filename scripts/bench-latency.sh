#!/usr/bin/env bash
# Glass-to-glass latency, side by side in one run: the same publisher (one
# ffmpeg/libx264 encode of a wall-clock-stamped picture, pushed to both with
# the tee muxer) and the same page (headless Chromium reading the stamp off
# every displayed frame), one player after the other:
#   ours           our LL-HLS (both transcodes included) in the watch page's
#                  player (hls.js with player/src/live.js);
#   hls.js         the same stream in stock hls.js from npm (`new Hls()`);
#   shaka          the same stream in stock Shaka Player from npm (its
#                  low-latency mode, nothing else);
#   shaka-sequence Shaka with the one setting the README gives its users;
#   nginx-rtmp     nginx-rtmp's HLS (1-s fragments) in the watch page's player.
# Usage: scripts/bench-latency.sh [SECONDS]; writes target/bench/latency.{json,png}
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh test
SECS=${1:-60}; export SECS
OUT=target/bench
WORK=$(mktemp -d)
mkdir -p "$OUT" "$WORK/hls"
# nginx workers run unprivileged: they must read (and nginx-rtmp write) the HLS files.
chmod 755 "$WORK"; chmod 777 "$WORK/hls"
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release -q -p origin
python3 -c "import matplotlib" 2>/dev/null || pip install -q matplotlib
cleanup() {
  local rc=$?
  kill $(jobs -p) 2>/dev/null || true
  # The origin saves its windows into $WORK as it stops.
  wait 2>/dev/null || true
  nginx -c "$WORK/nginx.conf" -s stop 2>/dev/null || true
  if ((rc != 0)); then tail -20 "$WORK/origin.log" "$WORK/nginx-error.log" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

target/release/origin --rtmp-listen 127.0.0.1:19350 --http-listen 127.0.0.1:18080 --webrtc-listen 127.0.0.1:0 \
  --data-dir "$WORK/data" --stream-key bench >"$OUT/latency-origin.log" 2>&1 &
cat >"$WORK/nginx.conf" <<NGINX
load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log;
events {}
rtmp { server { listen 127.0.0.1:19360; chunk_size 4096;
  application live { live on; hls on; hls_path $WORK/hls; hls_fragment 1s; hls_playlist_length 4s; } } }
http { access_log off; server { listen 127.0.0.1:18090;
  location /hls/ { alias $WORK/hls/; add_header Access-Control-Allow-Origin *; add_header Cache-Control no-cache;
    types { application/vnd.apple.mpegurl m3u8; video/mp2t ts; } } } }
NGINX
nginx -c "$WORK/nginx.conf"
for _ in $(seq 100); do curl -sf http://127.0.0.1:18080/healthz >/dev/null && break; sleep 0.1; done
curl -sf http://127.0.0.1:18080/healthz >/dev/null || { echo "origin did not start"; exit 1; }

# Long enough for the five players, one after the other.
TOTAL=$((5 * SECS + 40))
python3 scripts/bench/clock_source.py "$TOTAL" | ffmpeg -hide_banner -loglevel error -nostdin \
  -f rawvideo -pix_fmt yuv420p -s 1280x720 -r 30 -i - -f lavfi -i sine=frequency=440:sample_rate=48000 \
  -map 0:v -map 1:a -c:v libx264 -preset veryfast -tune zerolatency -g 30 -keyint_min 30 -sc_threshold 0 -flags +global_header \
  -b:v 4000k -maxrate 4000k -bufsize 2000k -c:a aac -b:a 128k -shortest \
  -f tee "[f=flv:onfail=ignore]rtmp://127.0.0.1:19350/live/bench|[f=flv:onfail=ignore]rtmp://127.0.0.1:19360/live/bench" &
sleep 8

OURS=http://127.0.0.1:18080/hls/bench/master.m3u8
cd player
run() { # NAME URL FLAGS...
  local name=$1 url=$2; shift 2
  node tests/latency.mjs "$url" "$SECS" "$@" >"$WORK/$name.json"
  cp "$WORK/$name.json" "../$OUT/latency-$name-raw.json"
}
run ours "$OURS" --ll
run hls.js "$OURS" --ll --stock
run shaka "$OURS" --ll --shaka
run shaka-sequence "$OURS" --ll --shaka --sequence-mode
run nginx-rtmp http://127.0.0.1:18090/hls/bench.m3u8
cd ..

python3 - "$WORK" "$OUT" <<'PY'
import json, os, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
work, out = sys.argv[1:3]
rows = [
    ("ours", "watch page (hls.js + live.js), LL-HLS"),
    ("hls.js", "stock hls.js 1.7, LL-HLS"),
    ("shaka", "stock Shaka 5.2, LL-HLS"),
    ("shaka-sequence", "Shaka 5.2 + sequenceMode, LL-HLS"),
    ("nginx-rtmp", "nginx-rtmp HLS 1-s, watch page"),
]
runs = {name: json.load(open(f"{work}/{name}.json")) for name, _ in rows}
machine = f"{os.cpu_count()} cores, " + open("/proc/cpuinfo").read().split("model name")[1].split("\n")[0].strip(" :\t")
keys = ("n", "p50_ms", "p95_ms", "max_ms", "waiting", "jumps", "fatal", "first_frame_ms")
result = {"machine": machine, "seconds_each": int(os.environ.get("SECS", 0)) or None}
result.update({name: {k: runs[name].get(k) for k in keys} for name, _ in rows})
result["ratio_p50_ours_nginx"] = runs["ours"]["p50_ms"] / runs["nginx-rtmp"]["p50_ms"]
json.dump(result, open(f"{out}/latency.json", "w"), indent=2)
plt.figure(figsize=(8, 4))
for name, label in rows:
    r = runs[name]
    if r["samples"]:
        plt.hist([s / 1000 for s in r["samples"]], bins=60, alpha=0.55, label=f"{label} (p50 {r['p50_ms']/1000:.2f} s)")
plt.xlabel("glass-to-glass latency (s), headless Chromium, loopback")
plt.ylabel("frames")
plt.legend(fontsize=7)
plt.tight_layout()
plt.savefig(f"{out}/latency.png", dpi=100)
fmt = lambda v: f"{v/1000:6.3f} s" if v is not None else "   n/a  "
print(f"\nglass-to-glass latency                    frames   p50       p95       max       stalls jumps first frame")
for name, label in rows:
    r = runs[name]
    print(f"  {label:38s} {r['n']:6d} {fmt(r['p50_ms'])} {fmt(r['p95_ms'])} {fmt(r['max_ms'])} {r['waiting']:5d} {r['jumps']:5d}  {r['first_frame_ms']} ms  {len(r['fatal'])} fatal")
print(f"  ratio ours/nginx-rtmp (p50)            {result['ratio_p50_ours_nginx']:.2f}\n  ({machine}; {out}/latency.json, {out}/latency.png)")
PY
