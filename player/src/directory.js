import { api, duration, el, since } from './common.js';

const q = document.getElementById('q');
const live = document.getElementById('live');
const replays = document.getElementById('replays');
const empty = document.getElementById('empty');
const livecount = document.getElementById('livecount');
const REFRESH_MS = 5000;

function card(b) {
  const img = el('img', { class: 'thumb', alt: '', loading: 'lazy' });
  // Live: refreshed with the grid. A replay's thumbnail never changes.
  img.src = b.status === 'live' ? `${b.thumbnail_url}?t=${Math.floor(Date.now() / REFRESH_MS)}` : b.thumbnail_url;
  img.onerror = () => img.removeAttribute('src');
  const meta = b.status === 'live'
    ? [el('span', { class: 'badge', text: 'LIVE' }), ` ${b.viewer_count} watching · live for ${since(b.started_at)}`]
    : [`ended ${b.ended_at ? new Date(b.ended_at).toLocaleString() : ''}`];
  const length = b.replay
    ? [el('span', { class: 'duration' }, el('span', { class: 'sr-only', text: 'Replay, ' }), duration(b.replay.duration_secs))]
    : [];
  return el('a', { class: 'card', href: `/watch/${encodeURIComponent(b.id)}`, 'data-id': b.id },
    el('div', { class: 'thumbwrap' }, img, ...length),
    el('div', { class: 'body' },
      el('div', { class: 'title', text: b.title }),
      el('div', { class: 'desc', text: b.description }),
      el('div', { class: 'dim' }, ...meta)));
}

async function refresh() {
  const text = q.value.trim();
  try {
    const [l, e] = await Promise.all([
      api(`/api/broadcasts?status=live&limit=100&q=${encodeURIComponent(text)}`),
      api(`/api/broadcasts?replay=ready&limit=12&q=${encodeURIComponent(text)}`),
    ]);
    live.replaceChildren(...l.broadcasts.map(card));
    // The grid is redrawn every few seconds; screen readers hear only a change in how many are live.
    const count = `${l.broadcasts.length} live ${l.broadcasts.length === 1 ? 'broadcast' : 'broadcasts'}`;
    if (livecount.textContent !== count) livecount.textContent = count;
    replays.replaceChildren(...e.broadcasts.map(card));
    empty.hidden = l.broadcasts.length > 0;
    empty.textContent = text ? `Nobody live matches “${text}”.` : 'Nobody is live right now.';
  } catch (err) {
    empty.hidden = false;
    empty.textContent = `Could not load broadcasts: ${err.message}`;
  }
}

document.getElementById('search').addEventListener('submit', (e) => { e.preventDefault(); refresh(); });
q.addEventListener('input', () => { clearTimeout(q.t); q.t = setTimeout(refresh, 250); });
refresh();
setInterval(refresh, REFRESH_MS);
