// The hls.js set-up for live playback that the watch page, the studio preview,
// the browser tests and the latency benchmark all share (a classic script, so
// that test pages can load the very same file).
(() => {
  // Low-latency mode; no liveSyncDuration, so the playlist's PART-HOLD-BACK
  // sets the target latency, and hls.js may play up to 1.5x fast to reach it.
  const config = { lowLatencyMode: true, maxLiveSyncPlaybackRate: 1.5, backBufferLength: 30 };
  // hls.js only speeds up while more than 1 s is buffered ahead, which a
  // stream played 0.6 s behind live never has. So whatever start-up took
  // (first fetches, first decode) would stay in the latency for good. Instead,
  // when playback is behind the live sync position by more than this and that
  // position is already buffered, jump to it.
  const MAX_BEHIND_S = 0.15;
  const CHECK_EVERY_MS = 2000;

  function keepUp(hls, video) {
    const check = () => {
      const target = hls.liveSyncPosition;
      if (!Number.isFinite(target) || video.paused || video.seeking) return;
      const b = video.buffered;
      const end = b.length ? b.end(b.length - 1) : 0;
      if (video.currentTime < target - MAX_BEHIND_S && end > target + 0.1) video.currentTime = target;
    };
    video.addEventListener('playing', check);
    const timer = setInterval(check, CHECK_EVERY_MS);
    hls.on(Hls.Events.DESTROYING, () => {
      clearInterval(timer);
      video.removeEventListener('playing', check);
    });
  }

  // A player for `url` in `video`, kept near the live edge.
  function create(video, url, extra = {}) {
    const hls = new Hls({ ...config, ...extra });
    keepUp(hls, video);
    hls.loadSource(url);
    hls.attachMedia(video);
    return hls;
  }

  window.Live = { config, keepUp, create };
})();
