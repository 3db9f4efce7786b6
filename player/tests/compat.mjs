// Player compatibility: stock players from npm, as a customer's page would
// run them (hls.js with its defaults, which are low-latency; Shaka Player with
// `streaming.lowLatencyMode` and nothing else; no catch-up code of ours), each
// in its own page of one headless Chromium, all at once. Prints one JSON line:
// per player, fatal errors, stalls (`waiting` while playing), jumps
// (`seeking` while playing), the longest freeze of the picture, how far
// playback went, and the frames the browser presented.
//
// `shaka-sequence` is Shaka with the one setting the README gives its users
// (`manifest.hls.sequenceMode`), against shaka-player#10589.
//
// Usage: node tests/compat.mjs SECONDS PLAYER=URL...   (PLAYER: hls.js | shaka | shaka-sequence)
import { chromium } from 'playwright-core';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const [secondsArg, ...entries] = process.argv.slice(2);
const seconds = Number(secondsArg);
const modules = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'node_modules');
const scripts = {
  'hls.js': path.join(modules, 'hls.js', 'dist', 'hls.min.js'),
  shaka: path.join(modules, 'shaka-player', 'dist', 'shaka-player.compiled.js'),
};
scripts['shaka-sequence'] = scripts.shaka;

async function play(browser, player, url) {
  const page = await browser.newPage();
  await page.setContent('<video id="v" muted playsinline width="640"></video>');
  await page.addScriptTag({ path: scripts[player] });
  const r = await page.evaluate(async ({ player, url, seconds }) => {
    const video = document.getElementById('v');
    const out = { fatal: [], errors: [], waiting: 0, jumps: 0, firstFrameMs: null, maxFreezeMs: 0, freezes: [] };
    const started = performance.now();
    let playing = false;
    video.addEventListener('waiting', () => { if (playing) out.waiting++; });
    video.addEventListener('seeking', () => { if (playing) out.jumps++; });
    video.addEventListener('playing', () => {
      if (!playing) out.firstFrameMs = Math.round(performance.now() - started);
      playing = true;
    });
    let stop;
    if (player.startsWith('shaka')) {
      window.shaka.polyfill.installAll();
      const p = new window.shaka.Player();
      await p.attach(video);
      p.configure({ streaming: { lowLatencyMode: true } });
      if (player === 'shaka-sequence') p.configure({ manifest: { hls: { sequenceMode: true } } });
      p.addEventListener('error', (e) => {
        const d = e.detail ?? {};
        const err = `${d.code} ${JSON.stringify(d.data ?? []).slice(0, 200)}`;
        if (d.severity === 2) out.fatal.push(err); else out.errors.push(err);
      });
      try {
        await p.load(url);
        video.play().catch((e) => out.fatal.push(`play: ${e}`));
      } catch (e) {
        out.fatal.push(`load: ${e?.code ?? e}`);
      }
      out.latency = () => p.getStats().liveLatency;
      stop = () => p.destroy();
    } else {
      const hls = new window.Hls();
      hls.on(window.Hls.Events.ERROR, (_, d) => (d.fatal ? out.fatal : out.errors).push(d.details));
      hls.loadSource(url);
      hls.attachMedia(video);
      hls.on(window.Hls.Events.MANIFEST_PARSED, () => video.play().catch((e) => out.fatal.push(`play: ${e}`)));
      out.latency = () => hls.latency;
      stop = () => hls.destroy();
    }
    // The picture's freezes, sampled every 50 ms once playing.
    let last = video.currentTime;
    let frozenSince = null;
    const timer = setInterval(() => {
      if (!playing) return;
      const now = performance.now();
      if (video.currentTime !== last) {
        if (frozenSince !== null && now - frozenSince > 500) out.freezes.push({ atMs: Math.round(frozenSince - started), ms: Math.round(now - frozenSince) });
        frozenSince = null;
        last = video.currentTime;
      } else if (frozenSince === null) {
        frozenSince = now;
      }
      if (frozenSince !== null) out.maxFreezeMs = Math.max(out.maxFreezeMs, Math.round(now - frozenSince));
    }, 50);
    let startTime = null;
    const latencies = [];
    const end = performance.now() + seconds * 1000;
    while (performance.now() < end) {
      await new Promise((r) => setTimeout(r, 1000));
      if (playing && startTime === null) startTime = video.currentTime;
      const l = out.latency();
      if (playing && Number.isFinite(l)) latencies.push(l);
    }
    clearInterval(timer);
    out.played = startTime === null ? 0 : video.currentTime - startTime;
    const q = video.getVideoPlaybackQuality();
    out.frames = q.totalVideoFrames;
    out.droppedFrames = q.droppedVideoFrames;
    latencies.sort((a, b) => a - b);
    out.latencyP50 = latencies.length ? latencies[Math.floor(latencies.length / 2)] : null;
    delete out.latency;
    await stop();
    return out;
  }, { player, url, seconds });
  await page.close();
  return { player, url, ...r };
}

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--autoplay-policy=no-user-gesture-required', '--disable-quic', '--no-first-run',
    '--disable-component-update', '--disable-sync', '--disable-background-timer-throttling',
    '--disable-renderer-backgrounding', '--disable-backgrounding-occluded-windows'],
});
try {
  const runs = entries.map((e) => {
    const at = e.indexOf('=');
    const player = e.slice(0, at);
    if (!scripts[player]) throw new Error(`unknown player ${player}`);
    return play(browser, player, e.slice(at + 1));
  });
  console.log(JSON.stringify(await Promise.all(runs)));
} finally {
  await browser.close();
}
