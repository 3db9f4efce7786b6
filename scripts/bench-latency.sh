#!/usr/bin/env bash
# Glass-to-glass latency, side by side in one run: the same publisher (one
# ffmpeg/libx264 encode of a wall-clock-stamped picture, pushed to both with
# the tee muxer) and the same page (hls.js in headless Chromium reading the
# stamp off every displayed frame) against our server (LL-HLS, both
# transcodes included) and nginx-rtmp (HLS, 1-s fragments). Our stream is
# also played by Shaka Player in its low-latency mode, as shipped (it loads
# preload hints, which hls.js does not).
# Usage: scripts/bench-latency.sh [SECONDS]; writes target/bench/latency.{json,png}
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh test
SECS=${1:-60}
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

# Long enough for the three players, one after the other.
TOTAL=$((3 * SECS + 40))
python3 scripts/bench/clock_source.py "$TOTAL" | ffmpeg -hide_banner -loglevel error -nostdin \
  -f rawvideo -pix_fmt yuv420p -s 1280x720 -r 30 -i - -f lavfi -i sine=frequency=440:sample_rate=48000 \
  -map 0:v -map 1:a -c:v libx264 -preset veryfast -tune zerolatency -g 30 -keyint_min 30 -sc_threshold 0 -flags +global_header \
  -b:v 4000k -maxrate 4000k -bufsize 2000k -c:a aac -b:a 128k -shortest \
  -f tee "[f=flv:onfail=ignore]rtmp://127.0.0.1:19350/live/bench|[f=flv:onfail=ignore]rtmp://127.0.0.1:19360/live/bench" &
sleep 8

cd player
node tests/latency.mjs http://127.0.0.1:18080/hls/bench/master.m3u8 "$SECS" --ll >"$WORK/ours.json"; cp "$WORK/ours.json" "../$OUT/latency-ours-raw.json"
node tests/latency.mjs http://127.0.0.1:18090/hls/bench.m3u8 "$SECS" >"$WORK/nginx.json"; cp "$WORK/nginx.json" "../$OUT/latency-nginx-raw.json"
node tests/latency.mjs http://127.0.0.1:18080/hls/bench/master.m3u8 "$SECS" --ll --shaka >"$WORK/shaka.json"; cp "$WORK/shaka.json" "../$OUT/latency-shaka-raw.json"
cd ..

python3 - "$WORK/ours.json" "$WORK/nginx.json" "$WORK/shaka.json" "$OUT" <<'PY'
import json, os, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
ours, nginx, shaka = (json.load(open(a)) for a in sys.argv[1:4])
out = sys.argv[4]
machine = f"{os.cpu_count()} cores, " + open("/proc/cpuinfo").read().split("model name")[1].split("\n")[0].strip(" :\t")
result = {"machine": machine}
for name, r in (("ours_llhls", ours), ("nginx_rtmp_hls_1s", nginx), ("ours_llhls_shaka", shaka)):
    result[name] = {k: r[k] for k in ("n", "p50_ms", "p95_ms", "max_ms", "waiting", "jumps", "fatal", "first_frame_ms")}
result["ratio_p50"] = ours["p50_ms"] / nginx["p50_ms"]
json.dump(result, open(f"{out}/latency.json", "w"), indent=2)
plt.figure(figsize=(8, 4))
plt.hist([s / 1000 for s in ours["samples"]], bins=60, alpha=0.7, label=f"ours, LL-HLS (p50 {ours['p50_ms']/1000:.2f} s)")
plt.hist([s / 1000 for s in nginx["samples"]], bins=60, alpha=0.7, label=f"nginx-rtmp, HLS 1-s (p50 {nginx['p50_ms']/1000:.2f} s)")
if shaka["samples"]:
    plt.hist([s / 1000 for s in shaka["samples"]], bins=60, alpha=0.5, label=f"ours, LL-HLS, Shaka Player (p50 {shaka['p50_ms']/1000:.2f} s)")
plt.xlabel("glass-to-glass latency (s), headless Chromium, loopback (hls.js unless noted)")
plt.ylabel("frames")
plt.legend()
plt.tight_layout()
plt.savefig(f"{out}/latency.png", dpi=100)
fmt = lambda r, k: f"{r[k]/1000:6.3f}" if r[k] is not None else "   n/a"
print(f"""
glass-to-glass latency ({ours['n']} / {nginx['n']} frames)   p50      p95      max     stalls  jumps  first frame
  ours (LL-HLS, 2 transcodes)   {ours['p50_ms']/1000:6.3f} s {ours['p95_ms']/1000:6.3f} s {ours['max_ms']/1000:6.3f} s   {ours['waiting']:3d}   {ours['jumps']:3d}    {ours['first_frame_ms']} ms
  nginx-rtmp (HLS, 1-s frags)   {nginx['p50_ms']/1000:6.3f} s {nginx['p95_ms']/1000:6.3f} s {nginx['max_ms']/1000:6.3f} s   {nginx['waiting']:3d}   {nginx['jumps']:3d}    {nginx['first_frame_ms']} ms
  ours, Shaka Player (LL mode)  {fmt(shaka, 'p50_ms')} s {fmt(shaka, 'p95_ms')} s {fmt(shaka, 'max_ms')} s   {shaka['waiting']:3d}   {shaka['jumps']:3d}    {shaka['first_frame_ms']} ms  {len(shaka['fatal'])} fatal errors
  ratio ours/nginx (p50)        {result['ratio_p50']:.2f}
  ({machine}; {out}/latency.json, {out}/latency.png)""")
PY
