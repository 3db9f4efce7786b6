#!/usr/bin/env bash
# Several origins as one service, measured on this machine (release builds):
# a throwaway PostgreSQL (initdb in a temp dir, as the postgres user, on a
# free port), origins A and B sharing it, ffmpeg publishing 720p30 to A.
#  1. What forwarding adds: the same held playlist request asked of A and
#     of B (which forwards it to A) at the same moment, SAMPLES times; and
#     the newest part from each (forward-probe).
#  2. Chat across origins: CHAT sessions spread over A and B in one room;
#     the count on both, and one message's fan-out to all (chat-load). The
#     same crowd on A alone, in the same run, for comparison.
#  3. What the database does: statements executed (from its statement
#     log, so autovacuum and the like are not counted) in 10 s with no
#     viewer, while CHAT viewers join, in 10 s with them connected and idle,
#     and per chat message (MESSAGES sent through A and B).
# Usage: scripts/bench-cluster.sh [SAMPLES] [CHAT] [MESSAGES]; writes target/bench/cluster.json
set -euo pipefail
cd "$(dirname "$0")/.."
# The servers run with this admin token, which creates broadcasts under any policy.
export ORIGIN_ADMIN_TOKEN=bench-admin-token-0123456789
bash scripts/deps.sh test
SAMPLES=${1:-300}
CHAT=${2:-1000}
MESSAGES=${3:-200}
OUT=target/bench
WORK=$(mktemp -d)
mkdir -p "$OUT"
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release -q -p origin -p loadgen --bins
PGBIN=/usr/lib/postgresql/15/bin
as_pg() { if ((EUID == 0)); then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() {
  kill $(jobs -p) 2>/dev/null || true
  wait 2>/dev/null || true
  as_pg "$PGBIN/pg_ctl" stop -m fast -w -D "$WORK/pg" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
ulimit -Sn "$(ulimit -Hn)"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

((EUID == 0)) && chown postgres "$WORK"
as_pg "$PGBIN/initdb" -A trust -U postgres --no-sync -E UTF8 -D "$WORK/pg" >/dev/null
PGPORT=$(free_port)
as_pg "$PGBIN/pg_ctl" -D "$WORK/pg" -l "$WORK/pg.log" -w \
  -o "-p $PGPORT -k $WORK -c listen_addresses=127.0.0.1 -c log_statement=all" start >/dev/null
DB=postgres://postgres@127.0.0.1:$PGPORT/postgres
# Statements the origins had executed so far (each prepared statement's
# execution is one log line; LISTEN and the like are plain statements).
statements() { grep -cE 'LOG:  (execute|statement)' "$WORK/pg.log" || true; }

# $1 name, $2 http port, $3 rtmp port, $4 database URL or "".
start_origin() {
  local db=()
  [[ -n "$4" ]] && db=(--database-url "$4")
  target/release/origin --rtmp-listen "127.0.0.1:$3" --http-listen "127.0.0.1:$2" --webrtc-listen 127.0.0.1:0 \
    --data-dir "$WORK/$1" "${db[@]}" >>"$OUT/cluster-origin-$1.log" 2>&1 &
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$2/healthz" >/dev/null && break; sleep 0.1; done
}
: >"$OUT/cluster-origin-a.log"; : >"$OUT/cluster-origin-b.log"; : >"$OUT/cluster-origin-alone.log"
A=$(free_port); B=$(free_port); RA=$(free_port); RB=$(free_port)
start_origin a "$A" "$RA" "$DB"
start_origin b "$B" "$RB" "$DB"
create() { curl -sf -X POST -H 'content-type: application/json' -H "authorization: Bearer $ORIGIN_ADMIN_TOKEN" -d '{"title":"Bench"}' \
  "$1/api/broadcasts"; }
field() { python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
created=$(create "http://127.0.0.1:$A")
ID=$(field id <<<"$created")
KEY=$(field stream_key <<<"$created")
ffmpeg -hide_banner -loglevel error -nostdin -re -f lavfi -i "testsrc2=size=1280x720:rate=30" \
  -f lavfi -i "sine=frequency=440:sample_rate=48000" -c:v libx264 -preset veryfast -b:v 3M \
  -g 30 -pix_fmt yuv420p -c:a aac -b:a 128k -f flv "rtmp://127.0.0.1:$RA/live/$KEY" &
for _ in $(seq 200); do
  curl -sf "http://127.0.0.1:$A/hls/$ID/480p.m3u8" | grep -q EXT-X-PART: && break
  sleep 0.1
done
sleep 3

echo "1. forwarding: $SAMPLES samples"
forwarded=$(target/release/forward-probe --direct "http://127.0.0.1:$A/hls/$ID/480p.m3u8" \
  --forwarded "http://127.0.0.1:$B/hls/$ID/480p.m3u8" --samples "$SAMPLES")
echo "   $forwarded"

echo "2. chat: $CHAT sessions over A and B"
c0=$(statements)
chat_two=$(target/release/chat-load --base "http://127.0.0.1:$A" --other "http://127.0.0.1:$B" \
  --broadcast "$ID" --sessions "$CHAT" --ramp 10 --timeout 60)
c1=$(statements)
echo "   $chat_two"

echo "3. database: idle 10 s"
c2=$(statements); sleep 10; c3=$(statements)
# A crowd that stays: half on each origin, held open by a small client.
tj0=$(date +%s.%N)
cj0=$(statements)
python3 - "$A" "$B" "$ID" "$CHAT" "$WORK/crowd.ready" <<'PY' &
import asyncio, sys
a, b, bid, n, ready = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
async def one(i):
    port = a if i % 2 == 0 else b
    r, w = await asyncio.open_connection("127.0.0.1", int(port))
    w.write((f"GET /api/broadcasts/{bid}/chat?nick=idle{i}&session=idle-{i} HTTP/1.1\r\n"
             f"Host: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    await w.drain()
    await r.readuntil(b"\r\n\r\n")
    while True:
        if not await r.read(65536):
            return
async def main():
    tasks = [asyncio.create_task(one(i)) for i in range(n)]
    await asyncio.sleep(5)
    open(ready, "w").close()
    await asyncio.gather(*tasks, return_exceptions=True)
asyncio.run(main())
PY
CROWD=$!
for _ in $(seq 300); do [[ -f "$WORK/crowd.ready" ]] && break; sleep 0.1; done
for _ in $(seq 100); do
  viewers=$(curl -sf "http://127.0.0.1:$B/api/broadcasts/$ID" | field viewer_count)
  ((viewers >= CHAT)) && break
  sleep 0.1
done
cj1=$(statements)
tj1=$(date +%s.%N)
c4=$(statements); sleep 10; c5=$(statements)
kill "$CROWD" 2>/dev/null || true
echo "   $viewers viewers counted on B"

echo "   $MESSAGES messages"
t6=$(date +%s.%N)
c6=$(statements)
python3 - "$A" "$B" "$ID" "$MESSAGES" <<'PY'
import asyncio, base64, json, os, sys
a, b, bid, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
def frame(text):
    data = json.dumps({"type": "message", "text": text}).encode()
    mask = os.urandom(4)
    head = bytes([0x81, 0x80 | len(data)]) + mask
    return head + bytes(c ^ mask[i % 4] for i, c in enumerate(data))
async def sender(i, count):
    port = a if i % 2 == 0 else b
    r, w = await asyncio.open_connection("127.0.0.1", int(port))
    w.write((f"GET /api/broadcasts/{bid}/chat?nick=s{i}&session=send-{i} HTTP/1.1\r\nHost: x\r\n"
             "Upgrade: websocket\r\nConnection: Upgrade\r\n"
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    await r.readuntil(b"\r\n\r\n")
    for k in range(count):
        w.write(frame(f"m{i}-{k}"))
        await w.drain()
        await asyncio.sleep(1.1)
    await asyncio.sleep(1)
    w.close()
async def main():
    # Ten senders at about 0.9 a second each: within the per-session (1/s)
    # and per-room (20/s) rates.
    await asyncio.gather(*(sender(i, max(1, n // 10)) for i in range(10)))
asyncio.run(main())
PY
c7=$(statements)
t7=$(date +%s.%N)
stored=$(psql -h 127.0.0.1 -p "$PGPORT" -U postgres -Atc \
  "SELECT count(*) FROM chat_messages WHERE broadcast_id = '$ID' AND text LIKE 'm%-%'")

echo "2b. chat: $CHAT sessions on one origin alone (sled), for comparison"
AL=$(free_port); RAL=$(free_port)
start_origin alone "$AL" "$RAL" ""
ALONE_ID=$(create "http://127.0.0.1:$AL" | field id)
chat_one=$(target/release/chat-load --base "http://127.0.0.1:$AL" --broadcast "$ALONE_ID" \
  --sessions "$CHAT" --ramp 10 --timeout 60)
echo "   $chat_one"

cat >"$OUT/cluster.json" <<JSON
{"forwarded": $forwarded,
 "chat_two_origins": $chat_two, "chat_one_origin": $chat_one,
 "db": {"statements_during_chat_run": $((c1 - c0)), "idle_10s_no_viewers": $((c3 - c2)),
        "idle_10s_with_viewers": $((c5 - c4)), "viewers": $viewers,
        "statements_for_joins": $((cj1 - cj0)), "joins_seconds": $(python3 -c "print($tj1 - $tj0)"),
        "messages_stored": $stored, "statements_for_messages": $((c7 - c6)),
        "messages_seconds": $(python3 -c "print($t7 - $t6)")}}
JSON
python3 - "$OUT/cluster.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
f, two, one, db = r["forwarded"], r["chat_two_origins"], r["chat_one_origin"], r["db"]
print(f"| forwarded (B -> A) vs direct (A) | p50 | p99 |\n|---|---|---|")
print(f"| held playlist request: extra time when forwarded | {f['held_extra_p50_ms']:.1f} ms | {f['held_extra_p99_ms']:.1f} ms |")
print(f"| a part, direct | {f['part_direct_p50_ms']:.1f} ms | {f['part_direct_p99_ms']:.1f} ms |")
print(f"| the same part, forwarded | {f['part_forwarded_p50_ms']:.1f} ms | {f['part_forwarded_p99_ms']:.1f} ms |")
print(f"({f['samples']} samples, {f['errors']} errors)\n")
print("| chat crowd | joined | count on every origin after last join | fan-out p50 / p99 |\n|---|---|---|---|")
for name, c in [("two origins (PostgreSQL)", two), ("one origin (sled)", one)]:
    api = "never" if c["count_api_ms"] is None else f"{c['count_api_ms']:,.0f} ms"
    print(f"| {name} | {c['joined']:,} | {api} | {c['fanout_p50_ms']:,.0f} / {c['fanout_p99_ms']:,.0f} ms ({c['fanout_received']:,}) |")
beat = db["idle_10s_no_viewers"] / 10
per_viewer = (db["idle_10s_with_viewers"] - db["idle_10s_no_viewers"]) / 10 / max(db["viewers"], 1)
per_msg = (db["statements_for_messages"] - beat * db["messages_seconds"]) / max(db["messages_stored"], 1)
per_join = (db["statements_for_joins"] - beat * db["joins_seconds"]) / max(db["viewers"], 1)
print(f"\ndatabase: {beat:.1f} statements/s with no viewers (two origins beating); "
      f"{per_join:.2f} per viewer joining ({db['viewers']} joined in {db['joins_seconds']:.1f} s, beats taken out); "
      f"{per_viewer:.4f} more per second per idle viewer; "
      f"{db['statements_for_messages']} statements while {db['messages_stored']} messages were stored "
      f"in {db['messages_seconds']:.0f} s ({per_msg:.2f} per message, beats taken out); {db['statements_during_chat_run']} during the {two['sessions']}-session chat run")
PY
