// Plays a replay (a VOD HLS stream) with stock hls.js in headless Chromium:
// waits for its duration, seeks to the middle, and plays from there. Prints
// one JSON line: duration, where it seeked, how far it played after the
// seek, fatal errors, and the heights of the levels. Used by
// origin/tests/replay.rs.
//
// Usage: node tests/replay-play.mjs MASTER_URL
import { HLS_JS, withVideoPage } from './video-page.mjs';

const [url] = process.argv.slice(2);

const result = await withVideoPage([HLS_JS], (page) =>
  page.evaluate(async (url) => {
    const video = document.getElementById('v');
    const out = { fatal: [], duration: 0, seekedTo: null, playedAfterSeek: 0, heights: [] };
    const hls = new Hls();
    hls.on(Hls.Events.ERROR, (_, d) => { if (d.fatal) out.fatal.push(`${d.type}/${d.details}`); });
    hls.on(Hls.Events.MANIFEST_PARSED, (_, d) => { out.heights = d.levels.map((l) => l.height); });
    hls.loadSource(url);
    hls.attachMedia(video);
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
  }, url));
console.log(JSON.stringify(result));
