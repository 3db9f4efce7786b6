// Glass-to-glass latency: plays a stream whose frames carry their capture time
// (scripts/bench/clock_source.py) and reads the time off every displayed frame.
// Prints one JSON line: samples, p50/p95/max, stalls, time to first frame.
//
// Usage: node tests/latency.mjs URL SECONDS [--ll] [--shaka [--sequence-mode]|--stock] [--whep]
//   --ll: low-latency mode; --shaka: Shaka Player (which also loads preload
//   hints) instead of the watch page's hls.js set-up; --stock: hls.js as
//   shipped (`new Hls()`, no catch-up of ours); --sequence-mode: Shaka with
//   `manifest.hls.sequenceMode` (the README's setting); --whep: URL is a WHEP
//   endpoint (/api/broadcasts/ID/whep), played with a plain RTCPeerConnection.
import { chromium } from 'playwright-core';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const [url, secondsArg, ...flags] = process.argv.slice(2);
const seconds = Number(secondsArg ?? 60);
const lowLatency = flags.includes('--ll');
const shaka = flags.includes('--shaka');
const whep = flags.includes('--whep');
const stock = flags.includes('--stock');
const sequenceMode = flags.includes('--sequence-mode');
const here = path.dirname(fileURLToPath(import.meta.url));
const modules = path.join(here, '..', 'node_modules');
const hlsPath = path.join(modules, 'hls.js', 'dist', 'hls.min.js');
const shakaPath = path.join(modules, 'shaka-player', 'dist', 'shaka-player.compiled.js');
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--autoplay-policy=no-user-gesture-required', '--disable-quic', '--no-first-run',
    '--allow-loopback-in-peer-connection'],
});
try {
  const page = await browser.newPage();
  // WHEP: from a document of the server (its API description, which has no
  // page CSP), as a page of the site would be.
  if (whep) await page.goto(new URL('/api/openapi.json', url).href);
  await page.setContent('<video id="v" muted playsinline></video><canvas id="c"></canvas>');
  if (whep) {
    // A plain RTCPeerConnection; no player library.
  } else if (shaka) {
    await page.addScriptTag({ path: shakaPath });
  } else {
    await page.addScriptTag({ path: hlsPath });
    if (!stock) await page.addScriptTag({ path: path.join(here, '..', 'src', 'live.js') });
  }
  const r = await page.evaluate(async ({ url, seconds, lowLatency, shaka, whep, stock, sequenceMode }) => {
    const video = document.getElementById('v');
    const canvas = document.getElementById('c');
    const ctx = canvas.getContext('2d', { willReadFrequently: true });
    const out = { samples: [], waiting: 0, jumps: 0, fatal: [], firstFrameMs: null };
    const t0 = performance.now();
    let playing = false;
    video.addEventListener('waiting', () => { if (playing) out.waiting++; });
    video.addEventListener('seeking', () => { if (playing) out.jumps++; });
    video.addEventListener('playing', () => { if (!playing) out.firstFrameMs = Math.round(performance.now() - t0); playing = true; });
    let stop;
    if (whep) {
      // WHEP, as any page would: receive-only H.264 and Opus.
      const pc = new RTCPeerConnection();
      pc.addTransceiver('video', { direction: 'recvonly' });
      pc.addTransceiver('audio', { direction: 'recvonly' });
      const stream = new MediaStream();
      pc.ontrack = (e) => stream.addTrack(e.track);
      await pc.setLocalDescription(await pc.createOffer());
      await new Promise((r) => { pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && r(); setTimeout(r, 2000); });
      const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/sdp' }, body: pc.localDescription.sdp });
      if (res.status !== 201) out.fatal.push(`whep ${res.status}`);
      const resource = new URL(res.headers.get('location') ?? '', url).href;
      await pc.setRemoteDescription({ type: 'answer', sdp: await res.text() });
      video.srcObject = stream;
      video.play();
      stop = async () => { pc.close(); await fetch(resource, { method: 'DELETE' }); };
    } else if (shaka) {
      // Shaka Player as shipped, in its low-latency mode: it loads preload
      // hints (hls.js does not) and has no catch-up of its own by default, so
      // it plays on from where it started.
      window.shaka.polyfill.installAll();
      const player = new window.shaka.Player();
      await player.attach(video);
      player.configure({ streaming: { lowLatencyMode: lowLatency } });
      if (sequenceMode) player.configure({ manifest: { hls: { sequenceMode: true } } });
      player.addEventListener('error', (e) => out.fatal.push(String(e.detail?.code)));
      player.addEventListener('adaptation', () => { out.switches = (out.switches ?? 0) + 1; });
      try {
        await player.load(url);
        video.play();
      } catch (e) {
        out.fatal.push(String(e?.code ?? e));
      }
      stop = () => player.destroy();
    } else if (stock) {
      // hls.js as a customer's page would run it: its defaults (low-latency
      // mode is on by default), none of our catch-up.
      const hls = new Hls();
      hls.on(Hls.Events.ERROR, (_, d) => { if (d.fatal) out.fatal.push(d.details); else (out.errors ??= []).push(d.details); });
      hls.loadSource(url);
      hls.attachMedia(video);
      hls.on(Hls.Events.MANIFEST_PARSED, () => video.play());
      stop = () => hls.destroy();
    } else {
      // The watch page's player (src/live.js); the peer's plain HLS gets the same
      // jump to the live sync position, only without low-latency mode.
      const hls = new Hls(lowLatency ? Live.config : { ...Live.config, lowLatencyMode: false });
      Live.keepUp(hls, video);
      hls.on(Hls.Events.ERROR, (_, d) => { if (d.fatal) out.fatal.push(d.details); });
      hls.loadSource(url);
      hls.attachMedia(video);
      hls.on(Hls.Events.MANIFEST_PARSED, () => video.play());
      stop = () => hls.destroy();
    }
    const onFrame = () => {
      const w = video.videoWidth, h = video.videoHeight;
      if (w && h) {
        canvas.width = w; canvas.height = h;
        ctx.drawImage(video, 0, 0, w, h);
        const block = w / 32;
        const row = ctx.getImageData(0, Math.floor(block / 2), w, 1).data;
        let stamp = 0;
        for (let i = 0; i < 32; i++) {
          const x = Math.floor(block * i + block / 2);
          stamp = (stamp * 2) + (row[x * 4] > 128 ? 1 : 0);
        }
        const now = Date.now() % 4294967296;
        const lag = (now - stamp + 4294967296) % 4294967296;
        if (lag < 60000) out.samples.push(lag);
      }
      video.requestVideoFrameCallback(onFrame);
    };
    video.requestVideoFrameCallback(onFrame);
    await new Promise((r) => setTimeout(r, seconds * 1000));
    await stop();
    return out;
  }, { url, seconds, lowLatency, shaka, whep, stock, sequenceMode });
  const s = [...r.samples].sort((a, b) => a - b);
  const q = (p) => s.length ? s[Math.min(s.length - 1, Math.floor(p * s.length))] : null;
  console.log(JSON.stringify({ url, lowLatency, player: whep ? 'whep' : shaka ? 'shaka' : stock ? 'hls.js-stock' : 'hls.js', n: s.length, p50_ms: q(0.5), p95_ms: q(0.95), max_ms: s[s.length - 1] ?? null,
    waiting: r.waiting, jumps: r.jumps, switches: r.switches ?? null, fatal: r.fatal, errors: r.errors ?? [], first_frame_ms: r.firstFrameMs, samples: r.samples }));
} finally {
  await browser.close();
}
