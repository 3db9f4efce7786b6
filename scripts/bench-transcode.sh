#!/usr/bin/env bash
# Transcode cost, side by side: the same 60-s 1080p30 input through our
# transcoder and through ffmpeg running the same ladder (one decode, split,
# bilinear scale to 1280x720 and 854x480, libx264 veryfast zerolatency CBR
# 2800k/1200k with a 600 ms VBV, no B-frames, 1-s GOP, audio copied), both
# paced in real time. Then: how many simultaneous 1080p30 streams our
# transcoder sustains in real time (no dropped frames).
# Usage: scripts/bench-transcode.sh [SECONDS] ; writes target/bench/transcode.json
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh test
SECONDS_IN=${1:-60}
OUT=target/bench
mkdir -p "$OUT"
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release -q -p transcoder --example transcode_file
BIN=target/release/examples/transcode_file
INPUT="$OUT/input-1080p30-${SECONDS_IN}s.flv"
if [[ ! -f "$INPUT" ]]; then
  echo "generating $INPUT"
  ffmpeg -hide_banner -loglevel error -y -f lavfi -i "testsrc2=size=1920x1080:rate=30" \
    -f lavfi -i "sine=frequency=440:sample_rate=48000" -t "$SECONDS_IN" \
    -c:v libx264 -preset veryfast -b:v 6M -g 60 -pix_fmt yuv420p -c:a aac -b:a 128k -f flv "$INPUT"
fi

SHORT="$OUT/input-1080p30-20s.flv"
if [[ ! -f "$SHORT" ]]; then
  ffmpeg -hide_banner -loglevel error -y -i "$INPUT" -t 20 -c copy "$SHORT"
fi

python3 - "$BIN" "$INPUT" "$SECONDS_IN" "$OUT/transcode.json" "$SHORT" <<'PY'
import json, os, resource, subprocess, sys, time
binary, inp, secs, out, short_inp = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4], sys.argv[5]

def run(cmd):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        sys.exit(f"{cmd[0]} failed: {p.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall, p.stdout

ladder = ("[0:v]split=1[d];[d]scale=1280:720:flags=bilinear,split=2[v720][s];"
          "[s]scale=854:480:flags=bilinear[v480]")
x264 = lambda kbps: ["-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency",
    "-profile:v", "high", "-b:v", f"{kbps}k", "-maxrate", f"{kbps}k", "-bufsize", f"{kbps*6//10}k",
    "-bf", "0", "-g", "30", "-keyint_min", "30", "-sc_threshold", "0"]
ffmpeg = (["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-i", inp, "-filter_complex", ladder,
           "-map", "[v720]"] + x264(2800) + ["-map", "0:a", "-c:a", "copy", "-f", "null", "-",
           "-map", "[v480]"] + x264(1200) + ["-map", "0:a", "-c:a", "copy", "-f", "null", "-"])

ours_cpu, ours_wall, ours_out = run([binary, inp])
ours = json.loads(ours_out.strip().splitlines()[-1])
ff_cpu, ff_wall, _ = run(ffmpeg)
result = {
    "input_seconds": secs,
    "ours_cpu_per_input_second": ours_cpu / secs,
    "ffmpeg_cpu_per_input_second": ff_cpu / secs,
    "ratio": ours_cpu / ff_cpu,
    "ours_dropped_frames": ours["dropped"],
}
# Simultaneous real-time streams (20-s clip): raise N until a run drops frames.
short = 20.0
streams = 0
per_n = {}
for n in range(1, 9):
    cpu, wall, o = run([binary, short_inp, "--streams", str(n)])
    r = json.loads(o.strip().splitlines()[-1])
    per_n[n] = {"dropped": r["dropped"], "wall_seconds": r["wall_seconds"], "cpu_seconds": cpu}
    print(f"  {n} stream(s): dropped {r['dropped']} frames, wall {r['wall_seconds']:.1f}s for {short:.0f}s of input", flush=True)
    if r["dropped"] > 0 or r["wall_seconds"] > short + 3:
        break
    streams = n
result["realtime_streams"] = streams
result["per_stream_count"] = per_n
result["machine"] = f"{os.cpu_count()} cores, " + open("/proc/cpuinfo").read().split("model name")[1].split("\n")[0].strip(" :\t")
json.dump(result, open(out, "w"), indent=2)
print(f"""
transcode cost, {secs:.0f} s of 1080p30 -> 720p + 480p
                       CPU s per input s
  ours (GStreamer)     {result['ours_cpu_per_input_second']:.3f}
  ffmpeg, same ladder  {result['ffmpeg_cpu_per_input_second']:.3f}
  ratio ours/ffmpeg    {result['ratio']:.3f}
  real-time 1080p30 streams on this machine: {streams}
  ({result['machine']}; results in {out})""")
PY
