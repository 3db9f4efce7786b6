// Goes live from the studio page with Chromium's fake camera and microphone
// (WHIP), the way a streamer would: create a broadcast, "Go live from this
// browser", stay live, "Stop". Prints one JSON line when the studio says it
// is sending and the broadcast is LIVE ({"live": true, "id": ...}) and one when done ({"stopped": ...},
// with the sender's WebRTC stats). Used by origin/tests/webrtc.rs.
//
// With --vanish, the browser is killed (SIGKILL) once live instead, as when
// a streamer's machine loses power: {"vanished": true}.
//
// The studio is opened at STUDIO_URL (an invite link, under the default policy).
//
// Usage: node tests/whip.mjs STUDIO_URL SECONDS [--vanish]
import { chromium } from 'playwright-core';
import { execSync } from 'node:child_process';

const [studioUrl, secondsArg, ...flags] = process.argv.slice(2);
const seconds = Number(secondsArg ?? 30);
const vanish = flags.includes('--vanish');

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run',
    '--disable-component-update', '--disable-sync',
    '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
    '--allow-loopback-in-peer-connection'],
});
try {
  const page = await browser.newPage();
  page.on('console', (m) => process.stderr.write(`studio: ${m.text()}\n`));
  page.on('pageerror', (e) => process.stderr.write(`studio error: ${e}\n`));
  await page.goto(studioUrl);
  await page.fill('#title', 'Live from a browser');
  await page.click('#create button[type=submit]');
  await page.waitForSelector('#dashboard:not([hidden])');
  await page.click('#golive');
  await page.waitForFunction(() => {
    const s = document.getElementById('livestate').textContent;
    return s === 'Sending' || s.startsWith('Could not');
  }, null, { timeout: 20000 });
  // Live once the transcoder has the browser's first keyframe.
  await page.waitForFunction(() => document.getElementById('status').textContent === 'LIVE'
    || document.getElementById('livestate').textContent.startsWith('Could not'), null, { timeout: 20000 });
  const state = await page.textContent('#livestate');
  const id = await page.evaluate(() => JSON.parse(localStorage.getItem('studio')).id);
  console.log(JSON.stringify({ live: state === 'Sending', state, id }));
  if (state !== 'Sending') process.exit(1);
  if (vanish) {
    // This script's children are the browser, each leading its process group
    // (renderers included); nothing says goodbye.
    const children = execSync(`ps -o pid= --ppid ${process.pid}`).toString().trim().split(/\s+/).map(Number);
    for (const pid of children) {
      for (const target of [-pid, pid]) {
        try { process.kill(target, 'SIGKILL'); } catch { /* gone already (the ps shell) */ }
      }
    }
    console.log(JSON.stringify({ vanished: true }));
    process.exit(0);
  }
  await page.waitForTimeout(seconds * 1000);
  const stats = await page.evaluate(async () => {
    const out = {};
    const pc = window.__whip?.pc;
    if (!pc) return out;
    for (const r of (await pc.getStats()).values()) {
      if (r.type === 'outbound-rtp') {
        out[r.kind] = { packetsSent: r.packetsSent, framesEncoded: r.framesEncoded, frameWidth: r.frameWidth,
          frameHeight: r.frameHeight, pliCount: r.pliCount, nackCount: r.nackCount, encoder: r.encoderImplementation };
      }
    }
    return out;
  });
  await page.click('#stoplive');
  await page.waitForFunction(() => document.getElementById('livestate').textContent === 'Stopped');
  console.log(JSON.stringify({ stopped: true, stats }));
} finally {
  await browser.close();
}
