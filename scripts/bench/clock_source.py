#!/usr/bin/env python3
"""Writes raw 1280x720 yuv420p frames at 30 fps, in real time, to stdout.

Each frame carries the wall-clock time it was made (milliseconds since the
epoch, low 32 bits) as a row of 32 black/white 40x40 blocks across the top,
most significant bit first. The blocks survive scaling to 480p and x264, so a
player can read the time off the frame it displays and subtract it from its
own clock: glass-to-glass latency on one machine, with no clock sync.

Usage: clock_source.py SECONDS | ffmpeg -f rawvideo -pix_fmt yuv420p -s 1280x720 -r 30 -i - ...
"""
import sys
import time

W, H, FPS, BLOCK, BITS = 1280, 720, 30, 40, 32
seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 60.0
gray_row = bytes([128]) * W
chroma = bytes([128]) * (W * H // 2)
# A band below the blocks that changes every frame, so the encoder sees motion.
out = sys.stdout.buffer
start = time.time()
n = 0
while n < seconds * FPS:
    due = start + n / FPS
    delay = due - time.time()
    if delay > 0:
        time.sleep(delay)
    stamp = int(time.time() * 1000) & 0xFFFFFFFF
    row = b"".join(
        (b"\xeb" if (stamp >> (BITS - 1 - i)) & 1 else b"\x10") * BLOCK for i in range(BITS)
    )
    moving = bytearray(gray_row)
    x = (n * 8) % (W - 80)
    moving[x : x + 80] = b"\xff" * 80
    frame = row * BLOCK + bytes(moving) * 80 + gray_row * (H - BLOCK - 80)
    try:
        out.write(frame)
        out.write(chroma)
    except BrokenPipeError:
        break
    n += 1
