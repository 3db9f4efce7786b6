// Plays a replay (a VOD HLS stream) with stock hls.js in headless Chromium:
// waits for its duration, seeks to the middle, and plays from there. Prints
// one JSON line: duration, where it seeked, how far it played after the
// seek, fatal errors, and the heights of the levels. Used by
// origin/tests/replay.rs.
//
// Usage: node tests/replay-play.mjs MASTER_URL
import { chromium } from 'playwright-core';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const [url] = process.argv.slice(2);
const here = path.dirname(fileURLToPath(import.meta.url));
const hlsPath = path.join(here, '..', 'node_modules', 'hls.js', 'dist', 'hls.min.js');

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
  await page.addScriptTag({ path: hlsPath });
  const result = await page.evaluate(async (url) => {
    const video = document.getElementById('v');
    const out = { fatal: [], duration: 0, seekedTo: null, playedAfterSeek: 0, heights: [] };
    const hls = new Hls();
    hls.on(Hls.Events.ERROR, (_, d) => { if (d.fatal) out.fatal.push(`${d.type}/${d.details}`); });
    hls.on(Hls.Events.MANIFEST_PARSED, (_, d) => { out.heights = d.levels.map((l) => l.height); });
    hls.loadSource(url);
    hls.attachMedia(video);
    const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
    const waitFor = async (pred, ms) => {
      const end = performance.now() + ms;
      while (performance.now() < end) { if (pred()) return true; await sleep(100); }
      return false;
    };
    await waitFor(() => Number.isFinite(video.duration) && video.duration > 0, 20000);
    out.duration = video.duration;
    if (!(out.duration > 0) || out.fatal.length) return out;
    await video.play().catch((e) => out.fatal.push(`play: ${e}`));
    const middle = out.duration / 2;
    video.currentTime = middle;
    await waitFor(() => !video.seeking, 10000);
    out.seekedTo = video.currentTime;
    await waitFor(() => video.currentTime >= middle + 3 || out.fatal.length > 0, 20000);
    out.playedAfterSeek = video.currentTime - middle;
    out.level = hls.currentLevel;
    hls.destroy();
    return out;
  }, url);
  console.log(JSON.stringify(result));
} finally {
  await browser.close();
}
