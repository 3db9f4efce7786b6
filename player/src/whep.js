// WHEP from this browser: receive-only H.264 and Opus from
// /api/broadcasts/{id}/whep, about a fifth of a second behind the source
// instead of LL-HLS's part and hold-back. Non-trickle, like whip.js.

const GATHER_MS = 3000;
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
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((resolve) => {
    if (pc.iceGatheringState === 'complete') return resolve();
    pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && resolve());
    setTimeout(resolve, GATHER_MS);
  });
  const query = rendition ? `?rendition=${encodeURIComponent(rendition)}` : '';
  let res;
  try {
    res = await fetch(`/api/broadcasts/${encodeURIComponent(id)}/whep${query}`, {
      method: 'POST', headers: { 'content-type': 'application/sdp' }, body: pc.localDescription.sdp,
    });
  } catch (err) {
    pc.close();
    throw new Error(`could not reach the server: ${err.message}`);
  }
  if (res.status !== 201) {
    const body = await res.json().catch(() => ({}));
    pc.close();
    throw new Error(body.error || `the server answered ${res.status}`);
  }
  const resource = new URL(res.headers.get('location'), window.location.href).href;
  await pc.setRemoteDescription({ type: 'answer', sdp: await res.text() });
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
