// The watch page's "Real-time" mode in headless Chromium: page A plays
// LL-HLS, switches to real time (WHEP), changes quality to the smallest
// rendition and back to LL-HLS; page B asks for real time while the server
// takes one real-time viewer per broadcast (page A) and must fall back to
// LL-HLS with a note. Prints one JSON line. Used by origin/tests/webrtc.rs.
//
// Usage: node tests/watch-realtime.mjs BASE_URL BROADCAST
import { chromium } from 'playwright-core';

const [base, id] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run',
    '--disable-component-update', '--disable-sync', '--autoplay-policy=no-user-gesture-required',
    '--allow-loopback-in-peer-connection'],
});
const out = { steps: [] };
const step = (name, ok, extra = {}) => out.steps.push({ name, ok, ...extra });
const advancing = (page, seconds, ms) => page.waitForFunction(async (s) => {
  const v = window.player?.video;
  if (!v) return false;
  const t0 = v.currentTime;
  await new Promise((r) => setTimeout(r, s * 1000));
  return v.currentTime - t0 > s * 0.7;
}, seconds, { timeout: ms, polling: 200 }).then(() => true, () => false);
try {
  const a = await browser.newPage();
  a.on('console', (m) => process.stderr.write(`page A: ${m.text()}\n`));
  await a.goto(`${base}/watch/${id}`);
  step('LL-HLS plays', await advancing(a, 1, 30000));
  await a.click('#realtime');
  const pressed = await a.waitForFunction(() => document.getElementById('realtime').getAttribute('aria-pressed') === 'true'
    || /not available/.test(document.getElementById('rtnote').textContent), null, { timeout: 20000 })
    .then(() => a.getAttribute('#realtime', 'aria-pressed'));
  step('real time on', pressed === 'true', { note: await a.textContent('#rtnote') });
  step('real time plays', await advancing(a, 2, 15000));
  await a.waitForTimeout(1500);
  out.latencyText = await a.textContent('#latency');
  step('real-time readout', /^Real-time · \d+ ms buffered$/.test(out.latencyText));
  out.options = await a.evaluate(() => [...document.getElementById('quality').options].map((o) => o.text));
  await a.selectOption('#quality', { label: '480p' });
  step('quality 480p in real time', await a.waitForFunction(() => window.player.video.videoHeight === 480, null,
    { timeout: 10000 }).then(() => true, () => false));

  const b = await browser.newPage();
  b.on('console', (m) => process.stderr.write(`page B: ${m.text()}\n`));
  await b.goto(`${base}/watch/${id}`);
  step('page B plays LL-HLS', await advancing(b, 1, 30000));
  await b.click('#realtime');
  await b.waitForFunction(() => /not available/.test(document.getElementById('rtnote').textContent), null, { timeout: 20000 })
    .catch(() => {});
  out.fallbackNote = await b.textContent('#rtnote');
  step('page B falls back', /not available/.test(out.fallbackNote)
    && await b.getAttribute('#realtime', 'aria-pressed') === 'false');
  step('page B still plays LL-HLS', await advancing(b, 2, 15000));

  await a.click('#realtime');
  step('page A back to LL-HLS', await a.waitForFunction(() => window.player?.hls && !window.player.video.srcObject, null,
    { timeout: 10000 }).then(() => true, () => false));
  step('page A plays LL-HLS again', await advancing(a, 2, 20000));
} catch (err) {
  step('no exception', false, { error: String(err) });
} finally {
  console.log(JSON.stringify(out));
  await browser.close();
}
