// The watch page where there are no Media Source Extensions (as on iPhone
// Safari): headless Chromium with MediaSource removed before the page runs,
// so hls.js cannot work and the page must hand the stream to the video
// element's own HLS (Chromium has it too). Prints one JSON line: whether the
// page took the native path, how far playback advanced, the quality
// selector's state and the latency readout. Used by origin/tests/players.rs.
//
// Usage: node tests/watch-native.mjs BASE_URL BROADCAST SECONDS
import { chromium } from 'playwright-core';

const [base, id, secondsArg] = process.argv.slice(2);
const seconds = Number(secondsArg ?? 15);
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run',
    '--disable-component-update', '--disable-sync', '--autoplay-policy=no-user-gesture-required'],
});
const out = { fatal: [] };
try {
  const page = await browser.newPage();
  page.on('console', (m) => process.stderr.write(`page: ${m.text()}\n`));
  page.on('pageerror', (e) => out.fatal.push(String(e)));
  await page.addInitScript(() => {
    for (const name of ['MediaSource', 'ManagedMediaSource', 'WebKitMediaSource']) delete window[name];
  });
  await page.goto(`${base}/watch/${id}`);
  out.mse = await page.evaluate(() => typeof window.MediaSource !== 'undefined');
  const started = await page.waitForFunction(() => window.player?.video?.currentTime > 0, null,
    { timeout: 30000, polling: 200 }).then(() => true, () => false);
  out.native = await page.evaluate(() => window.player?.native === true && !window.player?.hls);
  const t0 = await page.evaluate(() => window.player?.video?.currentTime ?? 0);
  await page.waitForTimeout(seconds * 1000);
  const t1 = await page.evaluate(() => window.player?.video?.currentTime ?? 0);
  out.started = started;
  out.advanced = Number((t1 - t0).toFixed(2));
  out.src = await page.evaluate(() => window.player?.video?.getAttribute('src'));
  out.quality = await page.evaluate(() => {
    const q = document.getElementById('quality');
    return { disabled: q.disabled, options: [...q.options].map((o) => o.text) };
  });
  out.latencyText = await page.textContent('#latency');
  out.element = await page.evaluate(() => {
    const v = window.player?.video;
    if (!v) return null;
    const ranges = (r) => [...Array(r.length).keys()].map((i) => [r.start(i), r.end(i)]);
    return { duration: String(v.duration), seekable: ranges(v.seekable), buffered: ranges(v.buffered),
      currentTime: v.currentTime, startDate: typeof v.getStartDate === 'function' ? String(v.getStartDate()) : null };
  });
  out.overlay = await page.evaluate(() => {
    const o = document.getElementById('overlay');
    return o.hidden ? '' : o.textContent;
  });
} catch (err) {
  out.fatal.push(String(err));
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
