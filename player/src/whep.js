// WHEP from this browser: receive-only H.264 and Opus from
// /api/broadcasts/{id}/whep, a tenth of a second or so behind the source
// instead of LL-HLS's parts and hold-back. Non-trickle, like whip.js.
import { negotiate } from './whip.js';

const CONNECT_MS = 8000;

/**
 * Connects to `rendition` (or the largest) of broadcast `id`. Resolves once
 * connected, with the `stream` to show; rejects with what went wrong (the
 * caller falls back to LL-HLS). `onLost` hears a connection that fails later.
 */
export async function play(id, { rendition, onLost } = {}) {
  const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
  pc.addTransceiver('video', { direction: 'recvonly' });
  pc.addTransceiver('audio', { direction: 'recvonly' });
  const stream = new MediaStream();
  pc.ontrack = (e) => stream.addTrack(e.track);
  const query = rendition ? `?rendition=${encodeURIComponent(rendition)}` : '';
  const resource = await negotiate(pc, `/api/broadcasts/${encodeURIComponent(id)}/whep${query}`);
  const stop = async () => {
    pc.close();
    await fetch(resource, { method: 'DELETE' }).catch(() => {});
  };
  const connected = await new Promise((resolve) => {
    const check = () => {
      if (pc.connectionState === 'connected') resolve(true);
      if (pc.connectionState === 'failed') resolve(false);
    };
    pc.addEventListener('connectionstatechange', check);
    setTimeout(() => resolve(pc.connectionState === 'connected'), CONNECT_MS);
  });
  if (!connected) {
    await stop();
    throw new Error('no WebRTC connection (UDP blocked?)');
  }
  pc.addEventListener('connectionstatechange', () => {
    if (pc.connectionState === 'failed' || pc.connectionState === 'disconnected') onLost?.();
  });
  return {
    pc,
    stream,
    stop,
    /** Switches at the next keyframe of `name` (e.g. '480p'). */
    async switchTo(name) {
      await fetch(`${resource}/rendition`, {
        method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ rendition: name }),
      });
    },
    /** Milliseconds of media buffered in the receiver plus half the round trip. */
    async delayMs() {
      let buffer = 0;
      let rtt = 0;
      for (const r of (await pc.getStats()).values()) {
        if (r.type === 'inbound-rtp' && r.kind === 'video' && r.jitterBufferEmittedCount) {
          buffer = (1000 * r.jitterBufferDelay) / r.jitterBufferEmittedCount;
        }
        if (r.type === 'candidate-pair' && r.nominated && r.currentRoundTripTime !== undefined) rtt = 1000 * r.currentRoundTripTime;
      }
      return Math.round(buffer + rtt / 2);
    },
  };
}
