// Rewinds a live stream with a DVR window in the watch page's player
// (src/live.js on hls.js, headless Chromium): plays at the live edge, seeks
// 60 s back, plays there (the catch-up must not pull it back), then returns
// to live as the page's "Jump to live" does. Prints one JSON line with the
// latencies at each stage. Used by origin/tests/replay.rs.
//
// Usage: node tests/dvr-play.mjs MASTER_URL
import { chromium } from 'playwright-core';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const [url] = process.argv.slice(2);
const here = path.dirname(fileURLToPath(import.meta.url));

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--autoplay-policy=no-user-gesture-required', '--no-first-run',
    '--disable-component-update', '--disable-sync'],
});
try {
  const page = await browser.newPage();
  page.on('console', (m) => process.stderr.write(`page: ${m.text()}\n`));
  await page.setContent('<video id="v" muted playsinline width="640"></video>');
  await page.addScriptTag({ path: path.join(here, '..', 'node_modules', 'hls.js', 'dist', 'hls.min.js') });
  await page.addScriptTag({ path: path.join(here, '..', 'src', 'live.js') });
  const result = await page.evaluate(async (url) => {
    const video = document.getElementById('v');
    const out = { fatal: [], seekable: 0 };
    const hls = Live.create(video, url);
    hls.on(Hls.Events.ERROR, (_, d) => { if (d.fatal) out.fatal.push(`${d.type}/${d.details}`); });
    hls.on(Hls.Events.MANIFEST_PARSED, () => video.play().catch((e) => out.fatal.push(`play: ${e}`)));
    const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
    const waitFor = async (pred, ms) => {
      const end = performance.now() + ms;
      while (performance.now() < end) { if (pred()) return true; await sleep(100); }
      return false;
    };
    // The latency over `ms`, sampled every 250 ms (the median).
    const latency = async (ms) => {
      const xs = [];
      for (let t = 0; t < ms; t += 250) { await sleep(250); if (Number.isFinite(hls.latency)) xs.push(hls.latency); }
      xs.sort((a, b) => a - b);
      return xs[Math.floor(xs.length / 2)] ?? null;
    };
    if (!await waitFor(() => video.currentTime > 0 && !video.paused, 20000)) return out;
    await sleep(6000);
    out.live = await latency(3000);
    const s = video.seekable;
    out.seekable = s.length ? s.end(s.length - 1) - s.start(0) : 0;
    const from = video.currentTime;
    video.currentTime = from - 60;
    await waitFor(() => !video.seeking, 15000);
    out.rewoundTo = video.currentTime - from;
    await waitFor(() => video.currentTime > from - 60 + 3, 15000);
    await sleep(3000);
    out.rewound = await latency(2000);
    out.playedRewound = video.currentTime - (from - 60);
    // "Jump to live".
    video.currentTime = hls.liveSyncPosition;
    await waitFor(() => !video.seeking, 10000);
    await sleep(5000);
    out.back = await latency(3000);
    hls.destroy();
    return out;
  }, url);
  console.log(JSON.stringify(result));
} finally {
  await browser.close();
}
