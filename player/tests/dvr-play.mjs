// Rewinds a live stream with a DVR window in the watch page's player
// (src/live.js on hls.js, headless Chromium): plays at the live edge, seeks
// 60 s back, plays there (the catch-up must not pull it back), then returns
// to live as the page's "Jump to live" does. Prints one JSON line with the
// latencies at each stage. Used by origin/tests/replay.rs.
//
// Usage: node tests/dvr-play.mjs MASTER_URL
import { HLS_JS, LIVE_JS, withVideoPage } from './video-page.mjs';

const [url] = process.argv.slice(2);

const result = await withVideoPage([HLS_JS, LIVE_JS], (page) =>
  page.evaluate(async (url) => {
    const video = document.getElementById('v');
    const out = { fatal: [], seekable: 0 };
    const hls = Live.create(video, url);
    hls.on(Hls.Events.ERROR, (_, d) => { if (d.fatal) out.fatal.push(`${d.type}/${d.details}`); });
    hls.on(Hls.Events.MANIFEST_PARSED, () => video.play().catch((e) => out.fatal.push(`play: ${e}`)));
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
  }, url));
console.log(JSON.stringify(result));
