#!/usr/bin/env bash
# Installs what is missing on Debian 12, as root. Usage: scripts/deps.sh run|test
# "run": what building and running the server needs. "test": that plus the
# real peers the tests drive (ffmpeg, GStreamer tools, nginx, Chromium, wrk,
# PostgreSQL: the tests start their own throwaway servers with its binaries).
set -euo pipefail
cd "$(dirname "$0")/.."

want=(
  build-essential pkg-config curl ca-certificates git
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  gstreamer1.0-plugins-ugly gstreamer1.0-libav
  # The scaler element links FFmpeg's libswscale; ffmpeg-sys-next generates its
  # bindings with libclang and reads the FFmpeg version from libavcodec's headers.
  libswscale-dev libavutil-dev libavcodec-dev libclang-dev
)
# Node.js from another source (e.g. nodesource) bundles npm and conflicts with
# Debian's npm package, so ask for Debian's only when the commands are missing.
command -v node >/dev/null || want+=(nodejs)
command -v npm >/dev/null || want+=(npm)
if [[ "${1:-run}" == test ]]; then
  want+=(ffmpeg gstreamer1.0-tools nginx libnginx-mod-rtmp chromium fonts-noto-cjk wrk python3 time postgresql haproxy)
fi

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
  [[ -x "$HOME/.cargo/bin/cargo" ]] || curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c rustfmt,clippy
  # shellcheck disable=SC1091
  source "$HOME/.cargo/env"
fi
rustup component list --installed 2>/dev/null | grep -q clippy || rustup component add rustfmt clippy 2>/dev/null || true

# The player's front-end packages (hls.js) come from npm, never from the repo.
if [[ -f player/package.json ]]; then
  (cd player && npm ci --no-audit --no-fund --loglevel=error)
fi
