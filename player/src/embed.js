// The embeddable pages: /embed/{id} (the player alone) and /embed/{id}/chat
// (the chat alone), for other sites' iframes. Same player and chat as the
// watch page.
import { api, Chat, askNickname } from './common.js';

const [, , rawId, part] = location.pathname.split('/');
const id = decodeURIComponent(rawId || '');
const $ = (x) => document.getElementById(x);
const STATUS_POLL_MS = 4000;

function player() {
  const video = $('video');
  const overlay = $('overlay');
  const show = (text) => { overlay.textContent = text; overlay.hidden = !text; };
  let hls = null;
  const start = () => {
    if (hls) return;
    if (!window.Hls?.isSupported()) {
      if (!video.canPlayType('application/vnd.apple.mpegurl')) { show('This browser cannot play the stream.'); return; }
      if (!video.src) { video.src = `/hls/${encodeURIComponent(id)}/master.m3u8`; video.play().catch(() => {}); }
      show('');
      return;
    }
    hls = Live.create(video, `/hls/${encodeURIComponent(id)}/master.m3u8`);
    window.player = { hls, video };
    hls.on(Hls.Events.MANIFEST_PARSED, () => { show(''); video.play().catch(() => {}); });
    hls.on(Hls.Events.ERROR, (_, d) => {
      if (!d.fatal) return;
      show('Reconnecting…');
      hls.destroy();
      hls = null;
    });
  };
  const check = async () => {
    try {
      const b = await api(`/api/broadcasts/${encodeURIComponent(id)}`);
      document.title = b.title;
      $('title').textContent = b.title;
      $('title').href = `/watch/${encodeURIComponent(id)}`;
      $('badge').hidden = b.status !== 'live';
      $('viewers').textContent = b.status === 'live' ? `${b.viewer_count} watching` : '';
      if (b.status === 'ready') show('Not started yet. The stream will start here when the streamer goes live.');
      else if (b.status === 'ended') { show('This broadcast has ended.'); hls?.stopLoad(); }
      else start();
    } catch (err) {
      show(err.message === 'not found' ? 'There is no such broadcast.' : `Could not load the broadcast: ${err.message}`);
    }
  };
  check();
  setInterval(check, STATUS_POLL_MS);
}

if (part === 'chat') {
  askNickname($('nickform'), $('nick')).then((nick) => {
    window.chat = new Chat({ id, nick, log: $('log'), form: $('chatform'), input: $('message') });
  });
} else {
  player();
}
