// The hls.js set-up for live playback that the watch page, the studio preview,
// the browser tests and the latency benchmark all share (a classic script, so
// that test pages can load the very same file).
(() => {
  // Low-latency mode; no liveSyncDuration, so the playlist's PART-HOLD-BACK
  // sets the target latency. hls.js's own catch-up (maxLiveSyncPlaybackRate)
  // only runs while more than 1 s is buffered ahead, which a stream played
  // 0.5 s behind live never has: whatever start-up took (first fetches, first
  // decode) would stay in the latency for good. So it is off, and keepUp()
  // below does the catching up.
  const config = { lowLatencyMode: true, maxLiveSyncPlaybackRate: 1, backBufferLength: 30 };
  // Behind the target by more than this: play faster...
  const CATCH_UP_FROM_S = 0.1;
  // ...at this rate (audio keeps its pitch)...
  const CATCH_UP_RATE = 1.15;
  // ...until within this of the target, or less than this is buffered ahead.
  const CAUGHT_UP_S = 0.03;
  const MIN_AHEAD_S = 0.2;
  // Further behind than this (a long stall, a background tab): jump instead.
  const JUMP_FROM_S = 3;
  const CHECK_EVERY_MS = 250;

  // A viewer who seeks back further than that is rewinding (DVR): left
  // there, at normal speed, until they seek back near live (Jump to live).
  function keepUp(hls, video) {
    let rewound = false;
    const seeking = () => {
      const edge = hls.liveSyncPosition;
      rewound = !!edge && edge - video.currentTime > JUMP_FROM_S;
      if (rewound) video.playbackRate = 1;
    };
    video.addEventListener('seeking', seeking);
    const check = () => {
      if (rewound) return;
      const target = hls.targetLatency;
      const latency = hls.latency;
      if (!target || !latency || video.paused || video.seeking || !hls.liveSyncPosition) return;
      const b = video.buffered;
      const ahead = (b.length ? b.end(b.length - 1) : 0) - video.currentTime;
      const behind = latency - target;
      if (behind > JUMP_FROM_S && hls.liveSyncPosition < video.currentTime + ahead) {
        video.currentTime = hls.liveSyncPosition;
      } else if (behind > CATCH_UP_FROM_S && ahead > MIN_AHEAD_S) {
        video.playbackRate = CATCH_UP_RATE;
      } else if (video.playbackRate !== 1 && (behind < CAUGHT_UP_S || ahead < MIN_AHEAD_S)) {
        video.playbackRate = 1;
      }
    };
    const timer = setInterval(check, CHECK_EVERY_MS);
    hls.on(Hls.Events.DESTROYING, () => {
      clearInterval(timer);
      video.removeEventListener('seeking', seeking);
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
