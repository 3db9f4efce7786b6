// Plays an LL-HLS stream with hls.js in headless Chromium and prints one JSON
// line: stalls, fatal errors, playback progress, latency, and the result of
// forced quality switches, and the longest freeze (wall-clock time in which
// the picture did not advance, e.g. across an origin restart). Used by
// origin/tests/players.rs and origin/tests/edge.rs.
//
// Usage: node tests/llhls-play.mjs MASTER_URL SECONDS [--switch]
import { chromium } from 'playwright-core';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const [url, secondsArg, ...flags] = process.argv.slice(2);
const seconds = Number(secondsArg ?? 30);
const doSwitch = flags.includes('--switch');
const here = path.dirname(fileURLToPath(import.meta.url));
const hlsPath = path.join(here, '..', 'node_modules', 'hls.js', 'dist', 'hls.min.js');

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--autoplay-policy=no-user-gesture-required', '--disable-quic', '--no-first-run',
    '--disable-component-update', '--disable-sync'],
});
try {
  const page = await browser.newPage();
  page.on('console', (m) => process.stderr.write(`page: ${m.text()}\n`));
  // Requests that took over a second or failed, for telling a server that
  // held a request too long from a player that stopped asking.
  const slow = [];
  const t0 = Date.now();
  const note = (r, status) => {
    const t = r.timing();
    const ms = Math.round(t.responseEnd);
    if (ms > 1000 || status >= 400 || status === 0) {
      slow.push({ url: r.url().replace(/^https?:\/\/[^/]+/, ''), status, ms, endedAtMs: Date.now() - t0 });
    }
  };
  // A response is looked up asynchronously; each lookup is kept and settled
  // before the browser closes (a lookup still pending then would reject).
  const lookups = [];
  page.on('requestfinished', (r) => {
    lookups.push(r.response().then((resp) => note(r, resp?.status() ?? 0), () => {}));
  });
  page.on('requestfailed', (r) => note(r, 0));
  await page.setContent('<video id="v" muted playsinline width="640"></video>');
  await page.addScriptTag({ path: hlsPath });
  await page.addScriptTag({ path: path.join(here, '..', 'src', 'live.js') });
  const result = await page.evaluate(async ({ url, seconds, doSwitch }) => {
    const video = document.getElementById('v');
    const out = {
      supported: Hls.isSupported(), fatal: [], errors: [], stalls: 0, waiting: 0,
      firstFrameMs: null, currentTime: 0, latencies: [], switches: [], heights: [],
    };
    if (!out.supported) return out;
    // The watch page's player (src/live.js).
    const hls = new Hls(Live.config);
    Live.keepUp(hls, video);
    const started = performance.now();
    let playing = false;
    hls.on(Hls.Events.ERROR, (_, d) => {
      const e = `${d.type}/${d.details}`;
      if (d.fatal) out.fatal.push(e); else out.errors.push(e);
      if (d.details === Hls.ErrorDetails.BUFFER_STALLED_ERROR && playing) out.stalls++;
    });
    video.addEventListener('waiting', () => { if (playing) out.waiting++; });
    video.addEventListener('seeking', () => { if (playing) out.jumps = (out.jumps ?? 0) + 1; });
    video.addEventListener('playing', () => {
      if (!playing) out.firstFrameMs = Math.round(performance.now() - started);
      playing = true;
    });
    hls.loadSource(url);
    hls.attachMedia(video);
    hls.on(Hls.Events.MANIFEST_PARSED, () => video.play().catch((e) => out.fatal.push(`play: ${e}`)));
    const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
    const waitFor = async (pred, ms) => {
      const end = performance.now() + ms;
      while (performance.now() < end) { if (pred()) return true; await sleep(100); }
      return false;
    };
    await waitFor(() => playing, 20000);
    // Freezes: sampled every 50 ms once playing.
    out.maxFreezeMs = 0;
    out.freezes = [];
    let lastTime = video.currentTime;
    let frozenSince = null;
    const freezeTimer = setInterval(() => {
      const now = performance.now();
      if (video.currentTime !== lastTime) {
        if (frozenSince !== null && now - frozenSince > 500) {
          out.freezes.push({ atMs: Math.round(frozenSince - started), ms: Math.round(now - frozenSince) });
        }
        frozenSince = null;
        lastTime = video.currentTime;
      } else if (frozenSince === null) {
        frozenSince = now;
      }
      if (frozenSince !== null) out.maxFreezeMs = Math.max(out.maxFreezeMs, Math.round(now - frozenSince));
    }, 50);
    const end = performance.now() + seconds * 1000;
    let switched = !doSwitch;
    while (performance.now() < end && out.fatal.length === 0) {
      await sleep(1000);
      if (hls.latency) out.latencies.push(hls.latency);
      // Wall clock minus the PROGRAM-DATE-TIME of the frame on screen.
      if (hls.playingDate) (out.pdtLatencies ??= []).push((Date.now() - hls.playingDate.getTime()) / 1000);
      out.heights.push(video.videoHeight);
      if (!switched && performance.now() - started > 15000) {
        switched = true;
        // Down to the smallest rendition, then back up to the largest.
        const byHeight = hls.levels.map((l, i) => [l.height, i]).sort((a, b) => a[0] - b[0]);
        for (const [want, level] of [byHeight[0], byHeight[byHeight.length - 1]]) {
          const t0 = performance.now();
          const before = out.waiting + out.stalls;
          hls.currentLevel = level;
          const ok = await waitFor(() => video.videoHeight === want, 15000);
          out.switches.push({ to: want, ok, ms: Math.round(performance.now() - t0),
            stallsDuring: out.waiting + out.stalls - before, height: video.videoHeight });
        }
      }
    }
    clearInterval(freezeTimer);
    out.currentTime = video.currentTime;
    out.levels = hls.levels.map((l) => l.height);
    out.lowLatency = hls.lowLatencyMode;
    out.targetLatency = hls.targetLatency;
    hls.destroy();
    return out;
  }, { url, seconds, doSwitch });
  await Promise.allSettled(lookups);
  result.slowRequests = slow;
  console.log(JSON.stringify(result));
} finally {
  await browser.close();
}
