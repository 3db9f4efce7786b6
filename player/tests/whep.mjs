// Watches a live broadcast over WHEP in headless Chromium, the way a page on
// any site would (RTCPeerConnection, receive-only H.264 and Opus), and prints
// one JSON line: time to first frame, frames decoded, the longest freeze,
// the picture heights seen, rendition switches (with --switch: down to the
// smallest, then back up), whether audio is live, and the transport ICE
// settled on (udp, or tcp for ICE-TCP). Used by
// origin/tests/webrtc.rs.
//
// Usage: node tests/whep.mjs BASE_URL BROADCAST SECONDS [--switch SMALL:HEIGHT,LARGE:HEIGHT]
import { chromium } from 'playwright-core';

const [base, id, secondsArg, flag, plan] = process.argv.slice(2);
const seconds = Number(secondsArg ?? 20);
const switches = flag === '--switch' ? plan.split(',').map((p) => p.split(':')) : [];

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run',
    '--disable-component-update', '--disable-sync', '--autoplay-policy=no-user-gesture-required',
    '--allow-loopback-in-peer-connection'],
});
try {
  const page = await browser.newPage();
  page.on('console', (m) => process.stderr.write(`whep: ${m.text()}\n`));
  await page.goto(`${base}/`);
  const result = await page.evaluate(async ({ id, seconds, switches }) => {
    const out = { fatal: [], heights: [], switches: [], maxFreezeMs: 0, firstFrameMs: null };
    const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
    const video = document.createElement('video');
    // Not muted: Chromium measures audio energy as it plays it out.
    video.playsInline = true;
    document.body.append(video);
    const pc = new RTCPeerConnection();
    pc.addTransceiver('video', { direction: 'recvonly' });
    pc.addTransceiver('audio', { direction: 'recvonly' });
    const stream = new MediaStream();
    pc.ontrack = (e) => stream.addTrack(e.track);
    video.srcObject = stream;
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise((resolve) => {
      if (pc.iceGatheringState === 'complete') resolve();
      pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && resolve();
      setTimeout(resolve, 3000);
    });
    const started = performance.now();
    const res = await fetch(`/api/broadcasts/${id}/whep`, {
      method: 'POST', headers: { 'content-type': 'application/sdp' }, body: pc.localDescription.sdp,
    });
    if (res.status !== 201) {
      out.fatal.push(`POST ${res.status}: ${await res.text()}`);
      return out;
    }
    const resource = res.headers.get('location');
    await pc.setRemoteDescription({ type: 'answer', sdp: await res.text() });
    video.play().catch(() => {});
    const stats = async () => {
      const s = { video: {}, audio: {} };
      for (const r of (await pc.getStats()).values()) {
        if (r.type === 'inbound-rtp') s[r.kind] = r;
      }
      return s;
    };
    let decoded = 0;
    let frozenSince = null;
    let height = 0;
    const sample = async () => {
      const s = await stats();
      const now = performance.now();
      const d = s.video.framesDecoded ?? 0;
      height = s.video.frameHeight ?? 0;
      if (d > 0 && out.firstFrameMs === null) out.firstFrameMs = Math.round(now - started);
      if (height && !out.heights.includes(height)) out.heights.push(height);
      if (d > decoded) {
        frozenSince = null;
        decoded = d;
      } else if (decoded > 0) {
        frozenSince ??= now;
        out.maxFreezeMs = Math.max(out.maxFreezeMs, Math.round(now - frozenSince));
      }
      return s;
    };
    const end = performance.now() + seconds * 1000;
    let next = 0;
    while (performance.now() < end) {
      await sleep(100);
      await sample();
      if (next < switches.length && out.firstFrameMs !== null && performance.now() - started > 6000 * (next + 1)) {
        const [name, want] = switches[next++];
        const t0 = performance.now();
        const r = await fetch(`${resource}/rendition`, {
          method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ rendition: name }),
        });
        let ok = r.status === 204;
        while (ok && height !== Number(want) && performance.now() - t0 < 10000) {
          await sleep(100);
          await sample();
        }
        out.switches.push({ to: name, status: r.status, ok: ok && height === Number(want), ms: Math.round(performance.now() - t0) });
      }
    }
    const s = await stats();
    out.framesDecoded = s.video.framesDecoded ?? 0;
    out.framesDropped = s.video.framesDropped ?? 0;
    const all = await pc.getStats();
    out.codec = all.get(s.video.codecId)?.sdpFmtpLine ?? null;
    // The transport ICE settled on: "udp", or "tcp" (ICE-TCP).
    const pair = [...all.values()].find((r) => r.type === 'candidate-pair' && r.nominated && r.state === 'succeeded');
    out.transport = pair ? all.get(pair.localCandidateId)?.protocol ?? null : null;
    out.audio = { packetsReceived: s.audio.packetsReceived ?? 0, totalAudioEnergy: s.audio.totalAudioEnergy ?? 0,
      concealedSamples: s.audio.concealedSamples ?? 0, totalSamplesReceived: s.audio.totalSamplesReceived ?? 0 };
    const del = await fetch(resource, { method: 'DELETE' });
    out.deleteStatus = del.status;
    pc.close();
    return out;
  }, { id, seconds, switches });
  console.log(JSON.stringify(result));
} finally {
  await browser.close();
}
