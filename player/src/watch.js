import { api, Chat, askNickname, duration, moderate, moderatorToken, sessionId } from './common.js';
import { play as playRealtime } from './whep.js';

const id = decodeURIComponent(location.pathname.split('/')[2] || '');
const $ = (x) => document.getElementById(x);
const video = $('video');
const overlay = $('overlay');
const quality = $('quality');
const STATUS_POLL_MS = 4000;
/** How often the page tells the server how far behind live it plays (the streamer's health panel). */
const LATENCY_REPORT_MS = 5000;
let hls = null;
/** Playing through the video element's own HLS (no Media Source Extensions: iPhone Safari). */
let native = false;
/** The WHEP session while in real-time mode (LL-HLS otherwise). */
let realtime = null;
let status = null;
let stalledSince = null;
/** Seen live on this page: at the end it offers the replay instead of starting it. */
let sawLive = false;
/** Playing the recording of an ended broadcast (VOD). */
let replaying = false;

function show(text) { overlay.textContent = text; overlay.hidden = !text; }

function setViewers(n) { $('viewers').textContent = `${n} watching`; }

function label(level) {
  return /source\.m3u8$/.test(level.url?.[0] ?? level.uri ?? '') ? 'Source' : `${level.height}p`;
}

const master = () => `/hls/${encodeURIComponent(id)}/master.m3u8`;

function start() {
  if (realtime || hls || native) return;
  if (!window.Hls?.isSupported()) {
    startNative();
    return;
  }
  hls = replaying ? vod(video, master()) : Live.create(video, master());
  window.player = { hls, video };
  hls.on(Hls.Events.MANIFEST_PARSED, () => {
    const levels = hls.levels.map((l, i) => [l, i]).sort((a, b) => b[0].height - a[0].height);
    quality.replaceChildren(new Option('Auto', '-1'), ...levels.map(([l, i]) => new Option(label(l), String(i))));
    video.play().catch(() => {});
  });
  hls.on(Hls.Events.ERROR, (_, d) => {
    if (!d.fatal) return;
    show('Reconnecting…');
    hls.destroy();
    hls = null;
    replaying = false;
    setTimeout(check, 2000);
  });
}

/** A replay: hls.js's defaults for video on demand, from the start. */
function vod(element, url) {
  const h = new Hls();
  h.loadSource(url);
  h.attachMedia(element);
  return h;
}

/** Plays the broadcast's recording from the start, with seeking and the quality selector. */
function startReplay(replay) {
  if (replaying) return;
  hls?.destroy();
  hls = null;
  if (realtime) leaveRealtime();
  if (native) {
    native = false;
    video.removeAttribute('src');
  }
  replaying = true;
  show('');
  $('replay').hidden = true;
  $('realtime').hidden = true;
  $('jump').hidden = true;
  video.setAttribute('aria-label', 'Replay video');
  $('latency').textContent = `Replay · ${duration(replay.duration_secs)}`;
  start();
}

/**
 * Without Media Source Extensions (iPhone Safari), the video element plays
 * HLS itself. The browser picks the rendition, so the selector only says so.
 */
function startNative() {
  if (!video.canPlayType('application/vnd.apple.mpegurl')) {
    show('This browser cannot play the stream (no Media Source Extensions and no built-in HLS).');
    return;
  }
  native = true;
  quality.replaceChildren(new Option('Auto (chosen by the browser)', '-1'));
  quality.disabled = true;
  video.src = master();
  video.play().catch(() => {});
  window.player = { hls: null, video, native: true };
}

/**
 * How far behind the element plays: behind live from the playlist's
 * PROGRAM-DATE-TIME where the platform exposes it (Safari's getStartDate),
 * else behind the newest media it has (the live edge, or its buffer's end).
 */
function nativeBehind() {
  const start = video.getStartDate?.().getTime();
  if (start) return [(Date.now() - start) / 1000 - video.currentTime, 'behind live'];
  const r = video.seekable.length ? video.seekable : video.buffered;
  return r.length ? [r.end(r.length - 1) - video.currentTime, 'behind the newest media'] : null;
}

video.addEventListener('error', () => {
  if (!native) return;
  show('Reconnecting…');
  native = false;
  video.removeAttribute('src');
  video.load();
  setTimeout(check, 2000);
});
video.addEventListener('playing', () => { stalledSince = null; if (status === 'live' || replaying) show(''); });
video.addEventListener('waiting', () => { stalledSince ??= Date.now(); });
video.addEventListener('ended', () => show(replaying ? 'End of the replay.' : 'This broadcast has ended.'));
quality.addEventListener('change', () => {
  if (hls) hls.currentLevel = Number(quality.value);
  // Real time: the chosen rendition from its next keyframe ("Auto" keeps it).
  if (realtime && quality.value !== '-1') realtime.switchTo(quality.selectedOptions[0].text);
});

function setRealtime(on, note = '') {
  $('realtime').setAttribute('aria-pressed', String(on));
  $('realtime').disabled = false;
  $('rtnote').textContent = note;
}

/** Back to LL-HLS, saying why when it was not asked for. */
function leaveRealtime(note = '') {
  realtime?.stop();
  realtime = null;
  video.srcObject = null;
  setRealtime(false, note);
  if (status === 'live') start();
}

async function goRealtime() {
  $('realtime').disabled = true;
  $('rtnote').textContent = 'Connecting in real time…';
  const chosen = quality.value === '-1' ? undefined : quality.selectedOptions[0].text;
  try {
    const session = await playRealtime(id, {
      rendition: chosen === 'Source' ? undefined : chosen,
      onLost: () => leaveRealtime('The real-time connection was lost; back to LL-HLS.'),
    });
    hls?.destroy();
    hls = null;
    if (native) {
      native = false;
      video.removeAttribute('src');
      quality.disabled = false;
    }
    realtime = session;
    video.srcObject = session.stream;
    video.play().catch(() => {});
    window.player = { hls: null, video, realtime };
    setRealtime(true);
  } catch (err) {
    setRealtime(false, `Real-time is not available (${err.message}); playing LL-HLS.`);
  }
}

$('realtime').addEventListener('click', () => (realtime ? leaveRealtime() : goRealtime()));
$('unmute').addEventListener('click', () => {
  video.muted = !video.muted;
  $('unmute').textContent = video.muted ? 'Unmute' : 'Mute';
});
$('jump').addEventListener('click', () => {
  if (hls?.liveSyncPosition) video.currentTime = hls.liveSyncPosition;
  if (native && video.seekable.length) video.currentTime = video.seekable.end(video.seekable.length - 1) - 1;
  video.play().catch(() => {});
});

setInterval(async () => {
  if (replaying) return;
  if (realtime) {
    $('latency').textContent = `Real-time · ${await realtime.delayMs()} ms buffered`;
    $('jump').hidden = true;
    return;
  }
  if (native) {
    const behind = nativeBehind();
    $('latency').textContent = behind ? `${behind[0].toFixed(1)} s ${behind[1]}` : '';
    $('jump').hidden = !((behind && behind[0] > 6) || video.paused);
    return;
  }
  if (!hls || hls.latency === undefined || Number.isNaN(hls.latency)) { $('latency').textContent = ''; return; }
  $('latency').textContent = `${hls.latency.toFixed(1)} s behind live`;
  $('jump').hidden = !(hls.latency > (hls.targetLatency ?? 1) + 2 || video.paused);
  if (stalledSince && Date.now() - stalledSince > 2000 && status === 'live') show('Reconnecting… (the stream is restarting)');
}, 1000);

// The delay this viewer sees, for the streamer's health panel: from the
// playing picture's PROGRAM-DATE-TIME where hls.js has it, else its own
// estimate. Only the origin holding the publish takes it; failures are ignored.
setInterval(() => {
  if (!hls || realtime || status !== 'live' || video.paused) return;
  const date = hls.playingDate;
  const secs = date ? (Date.now() - date.getTime()) / 1000 : hls.latency;
  if (!Number.isFinite(secs) || secs < 0 || secs > 120) return;
  fetch(`/api/broadcasts/${encodeURIComponent(id)}/latency`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, keepalive: true,
    body: JSON.stringify({ session: sessionId(), secs }),
  }).catch(() => {});
}, LATENCY_REPORT_MS);

async function check() {
  try {
    const b = await api(`/api/broadcasts/${encodeURIComponent(id)}`);
    document.title = b.title;
    $('title').textContent = b.title;
    $('description').textContent = b.description;
    setViewers(b.viewer_count);
    status = b.status;
    const replay = b.replay?.state === 'ready' ? b.replay : null;
    if (b.status === 'ready') show('Not started yet. The stream will start here when the streamer goes live.');
    else if (b.status === 'ended') {
      // Opened after the end: the replay. Watched to the end: offered.
      if (replay && !sawLive) startReplay(replay);
      if (replaying) return;
      show('This broadcast has ended.');
      hls?.stopLoad();
      if (realtime) leaveRealtime();
      $('replay').hidden = !replay;
      $('replay').onclick = () => startReplay(replay);
    } else {
      sawLive ||= b.status === 'live';
      start();
    }
  } catch (err) {
    show(err.message === 'not found' ? 'There is no such broadcast.' : `Could not load the broadcast: ${err.message}`);
  }
}

check();
setInterval(check, STATUS_POLL_MS);
// Asked at once, so that a moderator link's token leaves the address bar
// before the nickname is asked for.
const moderating = moderatorToken(id);
askNickname($('nickform'), $('nick')).then(async (nick) => {
  const token = await moderating;
  window.chat = new Chat({ id, nick, token, log: $('log'), form: $('chatform'), input: $('message'), onViewers: setViewers });
  if (token) moderate(window.chat, $('modbar'), id, token).catch((err) => window.chat.system(`Moderation unavailable: ${err.message}`));
});
