// Shared helpers for the pages. User text is only ever put in the DOM with
// textContent or value, never innerHTML, so a "<script>" title shows as text.

export async function api(path, { method = 'GET', body, token } = {}) {
  const headers = {};
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const data = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(data.error || `${res.status}`);
  return data;
}

export function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'text') e.textContent = v;
    else if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

/** A length of time as a player shows it: 1:02:03 or 4:05. */
export function duration(secs) {
  const s = Math.round(secs);
  const [h, m, r] = [Math.floor(s / 3600), Math.floor(s / 60) % 60, s % 60];
  const two = (n) => `${n}`.padStart(2, '0');
  return h ? `${h}:${two(m)}:${two(r)}` : `${m}:${two(r)}`;
}

export function since(iso) {
  if (!iso) return '';
  const s = Math.max(0, Math.floor((Date.now() - Date.parse(iso)) / 1000));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
  return h ? `${h}h ${m}m` : `${m}m ${s % 60}s`;
}

/** A random id for this browser tab; distinct tabs are distinct viewers. */
export function sessionId() {
  let id = sessionStorage.getItem('session');
  if (!id) {
    id = Array.from(crypto.getRandomValues(new Uint8Array(12)), (b) => b.toString(16).padStart(2, '0')).join('');
    sessionStorage.setItem('session', id);
  }
  return id;
}

/**
 * The chat panel: connects to the room, shows history and live messages,
 * reports viewer counts, and reconnects with exponential back-off and full
 * jitter, so that a server restart does not bring every page back at once.
 */
export class Chat {
  constructor({ id, nick, token, log, form, input, onViewers }) {
    Object.assign(this, { id, nick, token, log, form, input, onViewers, closed: false, attempt: 0 });
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      const text = input.value.trim();
      if (!text) return;
      if (!this.ws || this.ws.readyState !== WebSocket.OPEN) {
        // Kept in the box, to send once the chat is back.
        this.system('Not sent: the chat is reconnecting.');
        return;
      }
      this.ws.send(JSON.stringify({ type: 'message', text }));
      input.value = '';
    });
    this.connect();
  }

  connect() {
    const proto = location.protocol === 'https:' ? 'wss' : 'ws';
    const q = new URLSearchParams({ nick: this.nick, session: sessionId() });
    if (this.token) q.set('token', this.token);
    this.ws = new WebSocket(`${proto}://${location.host}/api/broadcasts/${encodeURIComponent(this.id)}/chat?${q}`);
    this.ws.onopen = () => {
      // Said after the history that a join brings, which replaces the log.
      this.reconnected = this.attempt > 0;
      this.attempt = 0;
    };
    this.ws.onmessage = (e) => this.receive(JSON.parse(e.data));
    this.ws.onclose = (e) => {
      if (this.closed) return;
      // 1013: the room is full; 4001: this page fell behind. Both say why.
      const wait = Chat.backoff(this.attempt++, e.code === 1013);
      if (this.attempt === 1 || e.reason) {
        this.system(`${e.reason || 'Chat disconnected.'} Reconnecting in ${Math.max(1, Math.round(wait / 1000))} s…`);
      }
      setTimeout(() => this.connect(), wait);
    };
  }

  /**
   * Milliseconds before reconnect attempt `n` (0, 1, ...): uniformly random
   * up to a ceiling that doubles from 1 s to 30 s (a full room starts at 10 s).
   */
  static backoff(n, full) {
    const ceiling = Math.min(30000, (full ? 10000 : 1000) * 2 ** n);
    return Math.round(Math.random() * ceiling);
  }

  receive(m) {
    if (m.type === 'history') {
      this.log.replaceChildren();
      m.messages.forEach((x) => this.add(x));
      if (this.reconnected) this.system('Chat reconnected.');
      this.reconnected = false;
    }
    else if (m.type === 'messages') m.messages.forEach((x) => this.add(x));
    else if (m.type === 'viewers') this.onViewers?.(m.count);
    else if (m.type === 'error') this.system(m.error);
    else if (m.type === 'notice') {
      this.system(m.text);
      if (m.slow_mode_secs !== undefined) this.onSlowMode?.(m.slow_mode_secs);
    }
    else if (m.type === 'deleted') {
      for (const id of m.ids) this.log.querySelector(`[data-id="${Number(id)}"]`)?.remove();
    }
  }

  add(m) {
    const row = el('div', { class: m.streamer ? 'msg streamer' : 'msg', 'data-id': m.id },
      el('span', { class: 'user', text: `${m.user}${m.streamer ? ' (streamer)' : ''}:` }), el('span', { class: 'text', text: m.text }));
    if (this.controls) row.append(this.controls(m));
    this.scrolled(() => this.log.append(row));
  }

  system(text) { this.scrolled(() => this.log.append(el('div', { class: 'msg system', text }))); }

  scrolled(f) {
    const atBottom = this.log.scrollTop + this.log.clientHeight >= this.log.scrollHeight - 8;
    f();
    if (atBottom) this.log.scrollTop = this.log.scrollHeight;
  }

  close() { this.closed = true; this.ws?.close(); }
}

/** Slow-mode choices, in seconds (0: off). */
const SLOW_MODES = [0, 10, 30, 60, 120];
/** A time-out from a page's button, in minutes. */
const TIMEOUT_MINUTES = 10;

/**
 * Moderation from a page, for the owner's token or a moderator's: buttons on
 * each message (delete; time out or ban its sender) and a slow-mode choice
 * in `bar`. What a button did, or why it failed, is said in the chat.
 * Call it before the chat's history arrives (right after `new Chat`).
 */
export async function moderate(chat, bar, id, token) {
  const path = `/api/broadcasts/${encodeURIComponent(id)}/moderation`;
  const act = async (body, done) => {
    try {
      await api(path, { method: 'POST', body, token });
      if (done) chat.system(done);
    } catch (err) {
      chat.system(`Not done: ${err.message}`);
    }
  };
  chat.controls = (m) => {
    const button = (text, label, body, done) => el('button', { type: 'button', class: 'mod secondary', text, 'aria-label': `${label} (${m.user})`, onclick: () => act(body, done) });
    const tools = el('span', { class: 'modtools' },
      button('Delete', 'Delete this message', { action: 'delete', message: m.id }));
    if (!m.streamer) {
      tools.append(
        button('Time out', `Time out for ${TIMEOUT_MINUTES} minutes`, { action: 'timeout', message: m.id, minutes: TIMEOUT_MINUTES }, `${m.user} is timed out for ${TIMEOUT_MINUTES} minutes.`),
        button('Ban', 'Ban from this chat', { action: 'ban', message: m.id }, `${m.user} is banned from this chat.`));
    }
    return tools;
  };
  const slow = el('select', { id: 'slowmode', onchange: () => act({ action: 'slow_mode', seconds: Number(slow.value) }) },
    ...SLOW_MODES.map((s) => el('option', { value: s, text: s ? `one message per ${s} s` : 'off' })));
  bar.replaceChildren(el('label', { for: 'slowmode', text: 'Slow mode' }), slow);
  bar.hidden = false;
  // What is in force, and then every change, whoever made it.
  chat.onSlowMode = (secs) => {
    if (!SLOW_MODES.includes(secs) && !slow.querySelector(`option[value="${secs}"]`)) {
      slow.append(el('option', { value: secs, text: `one message per ${secs} s` }));
    }
    slow.value = String(secs);
  };
  chat.onSlowMode((await api(path, { token })).slow_mode_secs);
}

/**
 * The token this page moderates broadcast `id`'s chat with, if any: the
 * owner's (the studio in this browser made it) or a moderator's (from a
 * `?mod=` link, taken out of the address bar and remembered), once the
 * server confirms it still moderates.
 */
export async function moderatorToken(id) {
  const params = new URLSearchParams(location.search);
  const link = params.get('mod');
  if (link) {
    localStorage.setItem(`mod:${id}`, link);
    params.delete('mod');
    history.replaceState(null, '', `${location.pathname}${params.size ? `?${params}` : ''}`);
  }
  const studio = JSON.parse(localStorage.getItem('studio') || 'null');
  const token = studio?.id === id ? studio.token : localStorage.getItem(`mod:${id}`);
  if (!token) return null;
  try {
    await api(`/api/broadcasts/${encodeURIComponent(id)}/moderation`, { token });
    return token;
  } catch {
    localStorage.removeItem(`mod:${id}`);
    return null;
  }
}

/**
 * Shows the nickname form in the chat panel once; resolves with the nickname
 * (remembered in localStorage for later visits).
 */
export function askNickname(form, input) {
  const saved = localStorage.getItem('nick');
  if (saved) { form.hidden = true; return Promise.resolve(saved); }
  form.hidden = false;
  input.focus();
  return new Promise((resolve) => {
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      const n = input.value.trim().slice(0, 24);
      if (!n) return;
      localStorage.setItem('nick', n);
      form.hidden = true;
      resolve(n);
    });
  });
}
