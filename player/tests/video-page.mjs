// What the player scripts that drive one <video id="v"> share: Debian's
// Chromium, headless, a page holding the video element with the player's
// scripts, its console on stderr, and `sleep(ms)` and `waitFor(pred, ms)`
// in the page. Used by dvr-play.mjs and replay-play.mjs.
import { chromium } from 'playwright-core';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');

/** hls.js from npm, and the watch page's own player. */
export const HLS_JS = path.join(root, 'node_modules', 'hls.js', 'dist', 'hls.min.js');
export const LIVE_JS = path.join(root, 'src', 'live.js');

const HELPERS = `
  window.sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  window.waitFor = async (pred, ms) => {
    const end = performance.now() + ms;
    while (performance.now() < end) { if (pred()) return true; await sleep(100); }
    return false;
  };`;

/** Runs `run(page)` on a fresh page with `scripts` loaded; closes the browser after. */
export async function withVideoPage(scripts, run) {
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
    await page.addScriptTag({ content: HELPERS });
    for (const s of scripts) await page.addScriptTag({ path: s });
    return await run(page);
  } finally {
    await browser.close();
  }
}
