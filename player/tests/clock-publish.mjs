// Publishes a pixel clock over WHIP from headless Chromium: a 1280x720 canvas
// redrawn 30 times a second with the wall-clock time (ms, low 32 bits) as 32
// black/white 40x40 blocks across the top (the layout of
// scripts/bench/clock_source.py, so tests/latency.mjs reads either), a moving
// bar, and a 440 Hz tone; sent with the studio's WHIP client (src/whip.js).
// Prints {"live": true} once sending, then stays SECONDS.
//
// Usage: node tests/clock-publish.mjs BASE_URL BROADCAST STREAM_KEY SECONDS
import { chromium } from 'playwright-core';

const [base, id, key, secondsArg] = process.argv.slice(2);
const seconds = Number(secondsArg ?? 60);
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run',
    '--autoplay-policy=no-user-gesture-required', '--allow-loopback-in-peer-connection'],
});
try {
  const page = await browser.newPage();
  page.on('console', (m) => process.stderr.write(`clock: ${m.text()}\n`));
  // A page of the server, so the module loads as the studio loads it.
  await page.goto(`${base}/studio`);
  const state = await page.evaluate(async ({ id, key }) => {
    const { publish } = await import('/assets/whip.js');
    const canvas = document.createElement('canvas');
    canvas.width = 1280;
    canvas.height = 720;
    const ctx = canvas.getContext('2d');
    let n = 0;
    const draw = () => {
      const stamp = Date.now() % 4294967296;
      ctx.fillStyle = '#808080';
      ctx.fillRect(0, 0, 1280, 720);
      for (let i = 0; i < 32; i++) {
        ctx.fillStyle = Math.floor(stamp / 2 ** (31 - i)) % 2 ? '#ebebeb' : '#101010';
        ctx.fillRect(i * 40, 0, 40, 40);
      }
      ctx.fillStyle = '#ffffff';
      ctx.fillRect((n++ * 8) % 1200, 40, 80, 80);
    };
    draw();
    setInterval(draw, 1000 / 30);
    const stream = canvas.captureStream(30);
    const audio = new AudioContext();
    const tone = audio.createOscillator();
    tone.frequency.value = 440;
    const sink = audio.createMediaStreamDestination();
    tone.connect(sink);
    tone.start();
    for (const t of sink.stream.getAudioTracks()) stream.addTrack(t);
    try {
      window.__live = await publish(id, key, stream);
    } catch (err) {
      return `failed: ${err.message}`;
    }
    for (let i = 0; i < 100 && window.__live.pc.connectionState !== 'connected'; i++) {
      await new Promise((r) => setTimeout(r, 100));
    }
    return window.__live.pc.connectionState;
  }, { id, key });
  console.log(JSON.stringify({ live: state === 'connected', state }));
  if (state !== 'connected') process.exit(1);
  await page.waitForTimeout(seconds * 1000);
  await page.evaluate(() => window.__live.stop());
} finally {
  await browser.close();
}
