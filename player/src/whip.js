// WHIP (RFC 9725) from this browser: camera or screen and microphone, H.264
// forced by codec preferences, sent to /api/broadcasts/{id}/whip with the
// stream key. Non-trickle: the offer carries every candidate. `negotiate` is
// shared with WHEP (whep.js).

const GATHER_MS = 3000;

/** H.264 codecs this browser can send, packetization-mode=1 first. */
function h264Codecs() {
  const all = RTCRtpSender.getCapabilities?.('video')?.codecs ?? [];
  const h264 = all.filter((c) => c.mimeType.toLowerCase() === 'video/h264');
  const mode1 = (c) => /packetization-mode=1/.test(c.sdpFmtpLine ?? '');
  return [...h264.filter(mode1), ...h264.filter((c) => !mode1(c))];
}

function gathered(pc) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { if (pc.iceGatheringState === 'complete') resolve(); };
    pc.addEventListener('icegatheringstatechange', done);
    setTimeout(resolve, GATHER_MS);
  });
}

/**
 * Offers `pc`'s media to a WHIP or WHEP endpoint at `url` (every candidate
 * in the offer) and applies the answer; returns the session's resource URL.
 * On a refusal, closes `pc` and throws the server's message.
 */
export async function negotiate(pc, url, headers = {}) {
  await pc.setLocalDescription(await pc.createOffer());
  await gathered(pc);
  let res;
  try {
    res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/sdp', ...headers },
      body: pc.localDescription.sdp,
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
  return resource;
}

/**
 * Publishes `stream` to broadcast `id` with `key`. Resolves once the server
 * has answered; `onState` hears the connection's state ('connected',
 * 'failed', ...). Returns { stop() } (ends the session with DELETE).
 */
export async function publish(id, key, stream, { maxBitrateKbps = 4000, onState } = {}) {
  const codecs = h264Codecs();
  if (!codecs.length) throw new Error('this browser cannot send H.264 video');
  const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
  let video = null;
  for (const track of stream.getTracks()) {
    const t = pc.addTransceiver(track, { direction: 'sendonly', streams: [stream] });
    if (track.kind === 'video') {
      t.setCodecPreferences(codecs);
      video = t.sender;
      // Keep the picture size; let the frame rate give way on a slow network.
      track.contentHint ||= 'motion';
    }
  }
  pc.addEventListener('connectionstatechange', () => onState?.(pc.connectionState));
  const resource = await negotiate(pc, `/api/broadcasts/${encodeURIComponent(id)}/whip`,
    { authorization: `Bearer ${key}` });
  if (video) {
    const p = video.getParameters();
    p.degradationPreference = 'maintain-resolution';
    p.encodings = (p.encodings?.length ? p.encodings : [{}]).map((e) => ({ ...e, maxBitrate: maxBitrateKbps * 1000 }));
    await video.setParameters(p).catch(() => {});
  }
  return {
    pc,
    async stop() {
      pc.close();
      await fetch(resource, { method: 'DELETE' }).catch(() => {});
    },
  };
}
