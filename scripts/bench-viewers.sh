#!/usr/bin/env bash
# Viewer load on one live 480p stream: the workspace's hls.js-like load
# generator (llhls-load) at 100, 500, 1000 and 2000 viewers, with the origin's
# CPU and memory; then requests per second for one part URL from our origin
# against nginx serving the same bytes as a static file (wrk, same run).
# Everything runs on this machine: the load generator shares its 2 cores.
# Usage: scripts/bench-viewers.sh [SECONDS_PER_STEP]; writes target/bench/viewers.{json,png}
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh test
STEP=${1:-30}
OUT=target/bench
WORK=$(mktemp -d)
mkdir -p "$OUT" "$WORK/static"
chmod 755 "$WORK" "$WORK/static"
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release -q -p origin -p loadgen --bins
python3 -c "import matplotlib" 2>/dev/null || pip install -q matplotlib
cleanup() { kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; nginx -c "$WORK/nginx.conf" -s stop 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

# Every simulated viewer comes from 127.0.0.1, so lift the per-address hold cap.
printf '[hls]\nmax_held_per_client = 100000\n' >"$WORK/origin.toml"
target/release/origin --rtmp-listen 127.0.0.1:19350 --http-listen 127.0.0.1:18080 --webrtc-listen 127.0.0.1:0 \
  --data-dir "$WORK/data" --config "$WORK/origin.toml" --stream-key load >"$OUT/viewers-origin.log" 2>&1 &
ORIGIN=$!
for _ in $(seq 100); do curl -sf http://127.0.0.1:18080/healthz >/dev/null && break; sleep 0.1; done
TOTAL=$((5 * STEP + 60))
ffmpeg -hide_banner -loglevel error -nostdin -re -f lavfi -i "testsrc2=size=854x480:rate=30" \
  -f lavfi -i "sine=frequency=440:sample_rate=48000" -t "$TOTAL" -c:v libx264 -preset veryfast \
  -tune zerolatency -g 30 -c:a aac -f flv rtmp://127.0.0.1:19350/live/load &
MASTER=http://127.0.0.1:18080/hls/load/master.m3u8
for _ in $(seq 200); do curl -sf "$MASTER" >/dev/null && break; sleep 0.1; done

cpu() { awk '{print $14 + $15}' "/proc/$ORIGIN/stat"; }
rss() { awk '/VmRSS/ {print $2}' "/proc/$ORIGIN/status"; }
IDLE_RSS=$(rss)
echo "[" >"$WORK/steps.json"
first=1
for N in 100 500 1000 2000; do
  c0=$(cpu)
  (sleep $((STEP / 2)); rss >"$WORK/rss") &
  R=$(/usr/bin/time -o "$WORK/loadgen-time" -f "%U %S" \
    target/release/llhls-load --url "$MASTER" --viewers "$N" --seconds "$STEP" --rendition 480p.m3u8 --ramp 3)
  c1=$(cpu)
  L=$(awk '{print $1 + $2}' "$WORK/loadgen-time")
  M=$(cat "$WORK/rss")
  ((first)) || echo "," >>"$WORK/steps.json"
  first=0
  echo "{\"load\": $R, \"origin_cpu_seconds\": $(( (c1 - c0) )) , \"loadgen_cpu_seconds\": $L, \"origin_rss_kb\": $M}" >>"$WORK/steps.json"
  echo "  $N viewers: $R"
done
echo "]" >>"$WORK/steps.json"

# One part URL, from us and from nginx as a static file.
PL=$(curl -s http://127.0.0.1:18080/hls/load/480p.m3u8)
PART=$(echo "$PL" | grep -o 'URI="480p/[^"]*p[0-9]*\.m4s"' | tail -1 | cut -d'"' -f2)
curl -s "http://127.0.0.1:18080/hls/load/$PART" -o "$WORK/static/part.m4s"
cat >"$WORK/nginx.conf" <<NGINX
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log;
events { worker_connections 1024; }
http { access_log off; server { listen 127.0.0.1:18091;
  location / { root $WORK/static; types { video/mp4 m4s; } add_header Cache-Control "public, max-age=31536000, immutable"; } } }
NGINX
nginx -c "$WORK/nginx.conf"
sleep 0.5
ours=$(wrk -t2 -c64 -d5s "http://127.0.0.1:18080/hls/load/$PART" | awk '/Requests\/sec/ {print $2}')
theirs=$(wrk -t2 -c64 -d5s "http://127.0.0.1:18091/part.m4s" | awk '/Requests\/sec/ {print $2}')

python3 - "$WORK/steps.json" "$OUT" "$IDLE_RSS" "$ours" "$theirs" "$(stat -c %s "$WORK/static/part.m4s")" "$(getconf CLK_TCK)" <<'PY'
import json, os, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
steps, out, idle_rss, ours, theirs, part_bytes, tck = json.load(open(sys.argv[1])), sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
machine = f"{os.cpu_count()} cores, " + open("/proc/cpuinfo").read().split("model name")[1].split("\n")[0].strip(" :\t")
rows = []
for s in steps:
    l = s["load"]
    rows.append({**l, "origin_cpu_percent": 100.0 * s["origin_cpu_seconds"] / tck / l["seconds"],
                 "loadgen_cpu_percent": 100.0 * s["loadgen_cpu_seconds"] / l["seconds"],
                 "origin_rss_mb": s["origin_rss_kb"] / 1024,
                 "kb_per_viewer": (s["origin_rss_kb"] - idle_rss) / l["viewers"]})
clean = [r["viewers"] for r in rows if r["stalls"] == 0 and r["errors"] == 0]
result = {"machine": machine, "steps": rows, "max_viewers_without_stalls_or_errors": max(clean, default=0),
          "part_bytes": part_bytes, "part_rps_ours": ours, "part_rps_nginx_static": theirs, "part_rps_ratio": ours / theirs}
json.dump(result, open(f"{out}/viewers.json", "w"), indent=2)
fig, ax1 = plt.subplots(figsize=(8, 4))
xs = [r["viewers"] for r in rows]
ax1.plot(xs, [r["stalls"] for r in rows], "o-", color="tab:red", label="stalls")
ax1.plot(xs, [r["errors"] for r in rows], "s--", color="tab:orange", label="errors")
ax1.set_xlabel("simulated LL-HLS viewers (one 480p stream, loopback, 2 cores shared with the load generator)")
ax1.set_ylabel("stalls / errors")
ax2 = ax1.twinx()
ax2.plot(xs, [r["origin_cpu_percent"] for r in rows], "^-", color="tab:blue", label="origin CPU % (incl. transcode)")
ax2.plot(xs, [r["loadgen_cpu_percent"] for r in rows], "v--", color="tab:green", label="load generator CPU %")
ax2.set_ylabel("CPU % of one core")
fig.legend(loc="upper left", bbox_to_anchor=(0.1, 0.92))
fig.tight_layout()
fig.savefig(f"{out}/viewers.png", dpi=100)
print("\nviewers  parts      errors  stalls  delay p50/p99 ms   origin CPU %  loadgen CPU %  RSS MB  KB/viewer")
for r in rows:
    print(f"{r['viewers']:7d}  {r['parts']:9d}  {r['errors']:6d}  {r['stalls']:6d}  {r['delay_p50_ms']:6.1f} / {r['delay_p99_ms']:7.1f}   {r['origin_cpu_percent']:8.1f}   {r['loadgen_cpu_percent']:11.1f}   {r['origin_rss_mb']:6.1f}  {r['kb_per_viewer']:7.1f}")
print(f"\nlargest count with zero stalls and errors: {result['max_viewers_without_stalls_or_errors']}")
print(f"one {part_bytes}-byte part URL, wrk -t2 -c64: ours {ours:.0f} req/s, nginx static {theirs:.0f} req/s, ratio {ours/theirs:.2f}")
print(f"({machine}; {out}/viewers.json, {out}/viewers.png)")
PY
