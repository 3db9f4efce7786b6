import { api, Chat, askNickname } from './common.js';
import { play as playRealtime } from './whep.js';

const id = decodeURIComponent(location.pathname.split('/')[2] || '');
const $ = (x) => document.getElementById(x);
const video = $('video');
const overlay = $('overlay');
const quality = $('quality');
const STATUS_POLL_MS = 4000;
let hls = null;
/** The WHEP session while in real-time mode (LL-HLS otherwise). */
let realtime = null;
let status = null;
let stalledSince = null;

function show(text) { overlay.textContent = text; overlay.hidden = !text; }

function setViewers(n) { $('viewers').textContent = `${n} watching`; }

function label(level) {
  return /source\.m3u8$/.test(level.url?.[0] ?? level.uri ?? '') ? 'Source' : `${level.height}p`;
}

function start() {
  if (realtime) return;
  if (hls || !window.Hls?.isSupported()) {
    if (!window.Hls?.isSupported()) show('This browser cannot play the stream (no Media Source Extensions).');
    return;
  }
  hls = Live.create(video, `/hls/${encodeURIComponent(id)}/master.m3u8`);
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
    setTimeout(check, 2000);
  });
}

video.addEventListener('playing', () => { stalledSince = null; if (status === 'live') show(''); });
video.addEventListener('waiting', () => { stalledSince ??= Date.now(); });
video.addEventListener('ended', () => show('This broadcast has ended.'));
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
  video.play().catch(() => {});
});

setInterval(async () => {
  if (realtime) {
    $('latency').textContent = `Real-time · ${await realtime.delayMs()} ms buffered`;
    $('jump').hidden = true;
    return;
  }
  if (!hls || hls.latency === undefined || Number.isNaN(hls.latency)) { $('latency').textContent = ''; return; }
  $('latency').textContent = `${hls.latency.toFixed(1)} s behind live`;
  $('jump').hidden = !(hls.latency > (hls.targetLatency ?? 1) + 2 || video.paused);
  if (stalledSince && Date.now() - stalledSince > 2000 && status === 'live') show('Reconnecting… (the stream is restarting)');
}, 1000);

async function check() {
  try {
    const b = await api(`/api/broadcasts/${encodeURIComponent(id)}`);
    document.title = b.title;
    $('title').textContent = b.title;
    $('description').textContent = b.description;
    setViewers(b.viewer_count);
    status = b.status;
    if (b.status === 'ready') show('Not started yet. The stream will start here when the streamer goes live.');
    else if (b.status === 'ended') {
      show('This broadcast has ended.');
      hls?.stopLoad();
      if (realtime) leaveRealtime();
    } else start();
  } catch (err) {
    show(err.message === 'not found' ? 'There is no such broadcast.' : `Could not load the broadcast: ${err.message}`);
  }
}

check();
setInterval(check, STATUS_POLL_MS);
askNickname($('nickform'), $('nick')).then((nick) => {
  window.chat = new Chat({ id, nick, log: $('log'), form: $('chatform'), input: $('message'), onViewers: setViewers });
});
