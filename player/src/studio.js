import { api, Chat, duration, el, moderate } from './common.js';
import { publish } from './whip.js';

const $ = (x) => document.getElementById(x);
const STORE = 'studio';
const POLL_MS = 2000;
let mine = JSON.parse(localStorage.getItem(STORE) || 'null');
let hls = null;
let chat = null;
let poll = null;
let browserLive = null;

// An invite link is /studio?invite=CODE.
let invited = new URLSearchParams(window.location.search).get('invite');

async function create(e) {
  e.preventDefault();
  $('createError').textContent = '';
  const body = {
    title: $('title').value, description: $('desc').value, unlisted: $('unlisted').checked, recorded: $('recorded').checked,
  };
  if (!$('invitefield').hidden) body.invite = $('invite').value.trim();
  try {
    const b = await api('/api/broadcasts', { method: 'POST', body });
    // The code is spent: a reload should not offer it again.
    if (invited) {
      history.replaceState(null, '', window.location.pathname);
      invited = null;
    }
    mine = { id: b.id, token: b.owner_token };
    // The owner token stays in this browser, so a reload gets the broadcast back.
    localStorage.setItem(STORE, JSON.stringify(mine));
    show(b);
  } catch (err) {
    $('createError').textContent = err.message;
  }
}

function preview(live) {
  if (live && !hls && window.Hls?.isSupported()) {
    hls = Live.create($('preview'), `/hls/${encodeURIComponent(mine.id)}/master.m3u8`);
    hls.on(Hls.Events.ERROR, (_, d) => { if (d.fatal) { hls.destroy(); hls = null; } });
    $('preview').play().catch(() => {});
  }
  if (!live && hls) { hls.destroy(); hls = null; }
}

function render(b) {
  $('btitle').textContent = b.title;
  const text = { ready: 'Waiting for the stream', live: 'LIVE', ended: 'Ended' }[b.status];
  $('status').textContent = text;
  $('status').className = `status ${b.status}`;
  $('viewers').textContent = `${b.viewer_count} watching`;
  $('overlay').hidden = b.status === 'live';
  $('overlay').textContent = b.status === 'ended' ? 'This broadcast has ended.' : 'Waiting for the stream… start streaming in OBS.';
  $('end').hidden = b.status === 'ended';
  $('browserlive').hidden = b.status === 'ended';
  if (b.status === 'ended' && browserLive) stopLive();
  $('new').hidden = b.status !== 'ended';
  preview(b.status === 'live');
  renderReplay(b);
}

/** What became of the recording, and, once it is a replay, a way to delete it. */
function renderReplay(b) {
  const state = b.replay?.state;
  const text = {
    recording: 'Recording a replay.',
    ready: `Replay ready (${duration(b.replay?.duration_secs ?? 0)}) at the watch link.`,
    deleted: 'Replay deleted.',
  }[state] ?? (b.recorded ? 'A replay is recorded once the stream starts.' : 'No replay is kept of this broadcast.');
  if ($('replaystate').textContent !== text) $('replaystate').textContent = text;
  $('replaybox').hidden = false;
  $('deletereplay').hidden = state !== 'ready';
}

// Stream health, while live: what arrives from the encoder, what the
// transcoder makes of it, and warnings in plain words.
function renderHealth(h) {
  const i = h.ingest;
  const put = (id, text) => { $(id).textContent = text; };
  put('h-bitrate', i ? `${Math.round(i.bitrate_kbps)} kbit/s` : '–');
  put('h-fps', i ? `${i.fps.toFixed(1)} fps` : '–');
  put('h-keyframes', i?.keyframe_interval_secs != null ? `${i.keyframe_interval_secs.toFixed(1)} s` : '–');
  put('h-size', i?.width ? `${i.width}×${i.height}` : '–');
  put('h-codecs', i ? [i.video_codec, i.audio_codec].filter(Boolean).join(', ') + (i.encoder ? ` (${i.encoder})` : '') : '–');
  put('h-dropped', String(h.transcode.dropped_frames));
  put('h-load', `${Math.round(h.transcode.realtime_factor * 100)} % of a core`);
  put('h-viewers', String(h.viewers));
  put('h-latency', h.latency.p50_secs != null ? `${h.latency.p50_secs.toFixed(1)} s (median of ${h.latency.reports})` : '–');
  $('h-warnings').replaceChildren(...h.warnings.map((w) => el('li', { text: w })));
}

async function refreshHealth(live) {
  $('health').hidden = !live;
  if (!live) return;
  try {
    renderHealth(await api(`/api/broadcasts/${encodeURIComponent(mine.id)}/health`, { token: mine.token }));
  } catch { /* the next poll tries again */ }
}

async function refresh() {
  try {
    const b = await api(`/api/broadcasts/${encodeURIComponent(mine.id)}`, { token: mine.token });
    render(b);
    await refreshHealth(b.status === 'live');
  } catch (err) {
    if (err.message === 'not found' || err.message.startsWith('not the owner')) reset();
  }
}

function show(b) {
  $('create').hidden = true;
  $('dashboard').hidden = false;
  $('server').value = b.rtmp_url;
  $('key').value = b.stream_key ?? '';
  $('whipurl').textContent = new URL(`/api/broadcasts/${encodeURIComponent(b.id)}/whip`, window.location.href).href;
  $('watchlink').href = `/watch/${encodeURIComponent(b.id)}`;
  if (b.blocked_terms) $('terms').value = b.blocked_terms.join('\n');
  render(b);
  if (!chat) {
    chat = new Chat({ id: b.id, nick: 'host', token: mine.token, log: $('log'), form: $('chatform'), input: $('message'),
      onViewers: (n) => { $('viewers').textContent = `${n} watching`; } });
    moderate(chat, $('modbar'), b.id, mine.token).catch((err) => chat.system(`Moderation unavailable: ${err.message}`));
    listModerators().catch((err) => { $('modstate').textContent = `Moderators not listed: ${err.message}`; });
  }
  clearInterval(poll);
  poll = setInterval(refresh, POLL_MS);
}

// Going live from this browser: 1280x720 at 30 fps asked for, H.264 up to 4 Mbit/s.
async function goLive() {
  const state = $('livestate');
  $('golive').disabled = true;
  state.textContent = 'Starting…';
  let stream = null;
  try {
    const video = { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 30 } };
    const audio = $('mic').checked;
    if ($('source').value === 'screen') {
      stream = await navigator.mediaDevices.getDisplayMedia({ video, audio: false });
      if (audio) {
        const mic = await navigator.mediaDevices.getUserMedia({ audio: true });
        for (const t of mic.getAudioTracks()) stream.addTrack(t);
      }
    } else {
      stream = await navigator.mediaDevices.getUserMedia({ video, audio });
    }
    $('camera').srcObject = stream;
    $('camera').hidden = false;
    browserLive = await publish(mine.id, $('key').value, stream, {
      onState: (s) => {
        state.textContent = { connected: 'Sending', connecting: 'Connecting…', failed: 'Connection failed', disconnected: 'Connection lost…' }[s] ?? s;
        if (s === 'failed') stopLive();
      },
    });
    browserLive.stream = stream;
    window.__whip = browserLive; // for tests and the console
    $('golive').hidden = true;
    $('stoplive').hidden = false;
  } catch (err) {
    for (const t of stream?.getTracks() ?? []) t.stop();
    $('camera').hidden = true;
    state.textContent = `Could not go live: ${err.message}`;
  } finally {
    $('golive').disabled = false;
  }
}

async function stopLive() {
  const live = browserLive;
  browserLive = null;
  if (live) {
    for (const t of live.stream?.getTracks() ?? []) t.stop();
    await live.stop();
  }
  $('camera').hidden = true;
  $('golive').hidden = false;
  $('stoplive').hidden = true;
  if (live) $('livestate').textContent = 'Stopped';
}

function reset() {
  stopLive();
  localStorage.removeItem(STORE);
  mine = null;
  chat?.close();
  chat = null;
  $('modbar').hidden = true;
  $('mods').replaceChildren();
  $('modlink').hidden = true;
  clearInterval(poll);
  preview(false);
  $('dashboard').hidden = true;
  showCreate();
}

// The form as the server's creation policy wants it: an invite code field
// (filled from the link), or a note that only the operator creates.
async function showCreate() {
  let creation = 'open';
  try { ({ creation } = await api('/api/access')); } catch { /* try creating; the server will say */ }
  $('invitefield').hidden = creation !== 'invite';
  $('invite').required = creation === 'invite';
  if (invited) $('invite').value = invited;
  $('adminonly').hidden = creation !== 'admin';
  $('create').querySelector('button[type=submit]').disabled = creation === 'admin';
  $('create').hidden = false;
}

$('create').addEventListener('submit', create);
$('reveal').addEventListener('click', () => {
  const hidden = $('key').type === 'password';
  $('key').type = hidden ? 'text' : 'password';
  $('reveal').textContent = hidden ? 'Hide' : 'Show';
  $('reveal').setAttribute('aria-pressed', String(hidden));
});
for (const b of document.querySelectorAll('[data-copy]')) {
  b.addEventListener('click', async () => {
    const v = $(b.dataset.copy).value;
    try { await navigator.clipboard.writeText(v); } catch { $(b.dataset.copy).select(); document.execCommand?.('copy'); }
    b.textContent = 'Copied';
    setTimeout(() => { b.textContent = 'Copy'; }, 1500);
  });
}
$('end').addEventListener('click', async () => {
  const btn = $('end');
  if (btn.dataset.armed !== '1') {
    btn.dataset.armed = '1';
    btn.textContent = 'Click again to end';
    setTimeout(() => { btn.dataset.armed = ''; btn.textContent = 'End broadcast'; }, 5000);
    return;
  }
  $('endError').textContent = '';
  try {
    render(await api(`/api/broadcasts/${encodeURIComponent(mine.id)}`, { method: 'PATCH', body: { status: 'ended' }, token: mine.token }));
  } catch (err) {
    btn.dataset.armed = '';
    btn.textContent = 'End broadcast';
    $('endError').textContent = `Could not end the broadcast: ${err.message}. Try again.`;
  }
});
$('new').addEventListener('click', reset);
$('deletereplay').addEventListener('click', async () => {
  const btn = $('deletereplay');
  if (btn.dataset.armed !== '1') {
    btn.dataset.armed = '1';
    btn.textContent = 'Click again to delete the replay';
    setTimeout(() => { btn.dataset.armed = ''; btn.textContent = 'Delete the replay'; }, 5000);
    return;
  }
  btn.dataset.armed = '';
  btn.textContent = 'Delete the replay';
  try {
    render(await api(`/api/broadcasts/${encodeURIComponent(mine.id)}/replay`, { method: 'DELETE', token: mine.token }));
  } catch (err) {
    $('replaystate').textContent = `Could not delete the replay: ${err.message}`;
  }
});
$('termsform').addEventListener('submit', async (e) => {
  e.preventDefault();
  $('termsstate').textContent = 'Saving…';
  try {
    const b = await api(`/api/broadcasts/${encodeURIComponent(mine.id)}`, { method: 'PATCH', body: { blocked_terms: $('terms').value.split('\n') }, token: mine.token });
    $('terms').value = b.blocked_terms.join('\n');
    $('termsstate').textContent = `Saved: ${b.blocked_terms.length} blocked`;
  } catch (err) {
    $('termsstate').textContent = `Not saved: ${err.message}`;
  }
});
// Moderators: appointed by name, each with a link shown once; dismissed here.
const moderatorsPath = () => `/api/broadcasts/${encodeURIComponent(mine.id)}/moderators`;
async function listModerators() {
  const { moderators } = await api(moderatorsPath(), { token: mine.token });
  $('mods').replaceChildren(...moderators.map((m) => el('li', {}, `${m.name} `,
    el('button', { type: 'button', class: 'mod secondary', text: 'Dismiss', 'aria-label': `Dismiss ${m.name}`, onclick: () => dismiss(m) }))));
}
async function dismiss(m) {
  try {
    await api(`${moderatorsPath()}/${encodeURIComponent(m.id)}`, { method: 'DELETE', token: mine.token });
    $('modstate').textContent = `${m.name} is no longer a moderator.`;
  } catch (err) {
    $('modstate').textContent = `Not dismissed: ${err.message}`;
  }
  listModerators().catch(() => {});
}
$('modsform').addEventListener('submit', async (e) => {
  e.preventDefault();
  try {
    const m = await api(moderatorsPath(), { method: 'POST', body: { name: $('modname').value }, token: mine.token });
    $('modlink').value = new URL(m.watch_url, window.location.href).href;
    $('modlink').hidden = false;
    $('modstate').textContent = `Send ${m.name} this link; it is shown once.`;
    $('modname').value = '';
  } catch (err) {
    $('modstate').textContent = `Not appointed: ${err.message}`;
  }
  listModerators().catch(() => {});
});
$('golive').addEventListener('click', goLive);
$('stoplive').addEventListener('click', stopLive);

if (mine) {
  api(`/api/broadcasts/${encodeURIComponent(mine.id)}`, { token: mine.token }).then(show).catch(reset);
} else {
  showCreate();
}
