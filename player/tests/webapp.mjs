// The web app in headless Chromium against a running server: create a
// broadcast in the studio, publish to the key it shows with ffmpeg, find it in
// the directory, watch it on two pages, switch quality, chat, count viewers,
// end it; every page in each of those states passes axe-core's WCAG 2.1 A/AA
// rules, and the error states a viewer or streamer can meet are shown (chat
// disconnected and back, an End that failed). Saves screenshots of the three
// pages under player/screenshots/.
//
// The studio is reached the way a new streamer reaches it: first without a
// code (asked for, a wrong one refused), then through an invite link.
//
// Usage: node tests/webapp.mjs BASE_URL INVITE_LINK
import { chromium } from 'playwright-core';
import { spawn } from 'node:child_process';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const [base, inviteLink] = process.argv.slice(2);
const shots = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'screenshots');
fs.mkdirSync(shots, { recursive: true });
const step = (s) => process.stderr.write(`webapp: ${s}\n`);
// ffmpeg's video bitrate (CBR); the studio's health panel must show it within 20 %.
const BITRATE_KBPS = 1500;
const TITLE = '<script>window.pwned=1</script> 오늘의 방송 & <b>bold</b>';

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--autoplay-policy=no-user-gesture-required', '--disable-quic', '--no-first-run',
    '--disable-component-update', '--disable-sync'],
});
let ffmpeg = null;
const offsite = [];
async function page(width = 1280, height = 800) {
  const ctx = await browser.newContext({ viewport: { width, height } });
  const p = await ctx.newPage();
  p.on('pageerror', (e) => { throw new Error(`page error: ${e.message}`); });
  p.on('dialog', (d) => { throw new Error(`unexpected dialog: ${d.message()}`); });
  p.on('request', (r) => { if (!r.url().startsWith(base) && !r.url().startsWith(base.replace('http', 'ws')) && !r.url().startsWith('blob:') && !r.url().startsWith('data:')) offsite.push(r.url()); });
  return p;
}
const until = async (f, ms, what) => {
  const end = Date.now() + ms;
  while (Date.now() < end) { if (await f()) return; await new Promise((r) => setTimeout(r, 250)); }
  throw new Error(`timed out: ${what}`);
};
// Sends a chat message from page (or frame) `p`.
const say = async (p, text) => { await p.fill('#message', text); await p.press('#message', 'Enter'); };
const apiGet = async (id) => (await fetch(`${base}/api/broadcasts/${id}`)).json();
// axe-core's WCAG 2.1 A and AA rules on the page as it is now (evaluated over
// the DevTools protocol, which the pages' CSP does not govern).
const axeSource = fs.readFileSync(path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'node_modules', 'axe-core', 'axe.min.js'), 'utf8');
async function audit(p, what) {
  if (!(await p.evaluate(() => 'axe' in window))) await p.evaluate(axeSource);
  const violations = await p.evaluate(async () => (await window.axe.run(document, {
    runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] },
  })).violations.map((v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(' ')).join(', ')})`));
  assert.deepEqual(violations, [], `${what}: WCAG 2.1 AA`);
}

try {
  step('studio: without an invite, the code is asked for and a wrong one refused');
  const studio = await page();
  await studio.goto(`${base}/studio`);
  await studio.waitForSelector('#invitefield:not([hidden])');
  assert.equal(await studio.inputValue('#invite'), '');
  await audit(studio, 'studio, asking for an invite code');
  await studio.fill('#title', TITLE);
  await studio.fill('#invite', 'inv_000000000000000000000000');
  await studio.click('button[type=submit]');
  await until(async () => /unknown or revoked invite code/.test(await studio.textContent('#createError')), 5000, 'the wrong code is refused');
  assert.equal(await studio.isVisible('#dashboard'), false);
  step('studio: the invite link fills the code in and creates the broadcast');
  await studio.goto(inviteLink);
  await studio.waitForSelector('#invitefield:not([hidden])');
  assert.equal(await studio.inputValue('#invite'), new URL(inviteLink).searchParams.get('invite'));
  await studio.fill('#title', TITLE);
  await studio.fill('#desc', 'A test of the whole app');
  await studio.click('button[type=submit]');
  await studio.waitForSelector('#dashboard:not([hidden])');
  assert.equal(new URL(studio.url()).search, '', 'the spent code leaves the address bar');
  assert.equal(await studio.getAttribute('#key', 'type'), 'password', 'the key is hidden until revealed');
  await studio.click('#reveal');
  assert.equal(await studio.getAttribute('#key', 'type'), 'text');
  const server = await studio.inputValue('#server');
  const key = await studio.inputValue('#key');
  const id = (await studio.getAttribute('#watchlink', 'href')).split('/').pop();
  assert.match(server, /^rtmp:\/\/127\.0\.0\.1:\d+\/live$/);
  assert.match(key, /^live_[0-9a-f]{32}$/);
  assert.equal(await studio.textContent('#btitle'), TITLE, 'the title is shown as text');
  assert.match(await studio.textContent('#status'), /Waiting/);

  step('publish with ffmpeg to the key the studio shows');
  ffmpeg = spawn('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-nostdin', '-re',
    '-f', 'lavfi', '-i', 'testsrc2=size=1280x720:rate=30', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000',
    '-t', '120', '-c:v', 'libx264', '-preset', 'veryfast', '-tune', 'zerolatency', '-g', '60',
    '-b:v', `${BITRATE_KBPS}k`, '-minrate', `${BITRATE_KBPS}k`, '-maxrate', `${BITRATE_KBPS}k`, '-bufsize', `${BITRATE_KBPS}k`,
    '-c:a', 'aac', '-f', 'flv', `${server}/${key}`], { stdio: 'inherit' });
  await until(async () => (await studio.textContent('#status')) === 'LIVE', 30000, 'studio shows LIVE');

  step('directory lists it with its thumbnail');
  const dir = await page(390, 844);
  await dir.goto(`${base}/`);
  const card = `.card[data-id="${id}"]`;
  await until(async () => dir.evaluate((sel) => {
    const img = document.querySelector(`${sel} img`);
    return !!img && img.complete && img.naturalWidth > 0;
  }, card), 30000, 'the card with a loaded thumbnail');
  assert.equal(await dir.textContent(`${card} .title`), TITLE, 'a <script> title renders as text');
  assert.equal(await dir.evaluate(() => window.pwned), undefined, 'and never runs');
  assert.equal(await dir.locator(`${card} .title b`).count(), 0);
  await dir.fill('#q', '오늘의');
  await until(async () => (await dir.locator(card).count()) === 1, 5000, 'search finds it');
  await dir.fill('#q', 'nothing-matches-this');
  await until(async () => dir.isVisible('#empty'), 5000, 'the empty state');
  await dir.fill('#q', '');
  await until(async () => (await dir.locator(card).count()) === 1, 10000, 'back in the list');
  await dir.screenshot({ path: path.join(shots, 'directory.png'), fullPage: true });
  await audit(dir, 'directory');
  assert.equal(await dir.getAttribute('#live', 'aria-live'), null, 'the grid, redrawn every 5 s, is not a live region');
  assert.equal(await dir.textContent('#livecount'), '1 live broadcast', 'a status says how many are live');

  step('two watch pages play; quality switch; viewer count');
  const w1 = await page();
  await w1.goto(`${base}/watch/${id}`);
  await w1.fill('#nick', 'alice');
  await w1.press('#nick', 'Enter');
  await until(async () => w1.evaluate(() => (window.player?.video.currentTime ?? 0) > 2), 30000, 'watch page 1 plays');
  const w2 = await page();
  await w2.goto(`${base}/watch/${id}`);
  await w2.fill('#nick', 'bob');
  await w2.click('#nickform button');
  await until(async () => w2.evaluate(() => (window.player?.video.currentTime ?? 0) > 1), 30000, 'watch page 2 plays');
  await until(async () => (await apiGet(id)).viewer_count === 2, 10000, 'two viewers');
  await until(async () => /2 watching/.test(await w1.textContent('#viewers')), 10000, 'the count is shown live');
  const options = await w1.$$eval('#quality option', (o) => o.map((x) => x.textContent));
  assert.deepEqual(options, ['Auto', '720p', '480p']);
  await w1.selectOption('#quality', { label: '480p' });
  await until(async () => w1.evaluate(() => window.player.video.videoHeight === 480), 20000, 'videoHeight 480');
  assert.match(await w1.textContent('#latency'), /behind live/);

  step('chat between the watch pages and the studio');
  await say(w1, 'hi from alice <b>x</b>');
  for (const p of [w2, studio]) {
    await until(async () => (await p.locator('#log .msg .text', { hasText: 'hi from alice <b>x</b>' }).count()) === 1, 10000, 'message arrives');
    assert.equal(await p.locator('#log .msg .text b').count(), 0, 'chat text is text');
  }
  await say(studio, 'welcome!');
  await until(async () => (await w1.locator('#log .msg.streamer', { hasText: 'welcome!' }).count()) === 1, 10000, 'the streamer is marked');

  step("the studio's stream health: ffmpeg's bitrate, its keyframes, and the viewers' delay");
  await studio.waitForSelector('#health:not([hidden])');
  let shown = null;
  await until(async () => {
    shown = parseFloat(await studio.textContent('#h-bitrate'));
    return Math.abs(shown - BITRATE_KBPS) <= BITRATE_KBPS * 0.2;
  }, 20000, `the panel shows ffmpeg's ${BITRATE_KBPS} kbit/s within 20 % (last shown: ${shown})`);
  step(`health: ${shown} kbit/s shown for ${BITRATE_KBPS}`);
  assert.equal(await studio.textContent('#h-fps'), '30.0 fps', "the source's rate, by its timestamps");
  assert.equal(await studio.textContent('#h-keyframes'), '2.0 s', 'ffmpeg -g 60 at 30 fps');
  assert.equal(await studio.textContent('#h-size'), '1280×720');
  assert.match(await studio.textContent('#h-codecs'), /^avc1\.[0-9a-f]{6}, mp4a\.40\.2/);
  // The panel is polled every 2 s: wait for a poll after the second viewer.
  await until(async () => (await studio.textContent('#h-viewers')) === '2', 10000, 'the panel counts both viewers');
  await until(async () => /^\d+\.\d s \(median of 2\)$/.test(await studio.textContent('#h-latency')), 15000, "both viewers' delay is reported");
  assert.equal(await studio.locator('#h-warnings li').count(), 0, 'a good setup gets no warning');

  step('blocked terms from the studio: the sender is told, the room sees nothing');
  await studio.fill('#terms', 'Spam\n바보');
  await studio.click('#termsform button[type=submit]');
  await until(async () => (await studio.textContent('#termsstate')) === 'Saved: 2 blocked', 5000, 'the terms are saved');
  await new Promise((r) => setTimeout(r, 5500)); // the room reads its list every 5 s
  await say(w2, '너 바보야');
  await until(async () => (await w2.locator('#log .system', { hasText: 'contains a term blocked' }).count()) === 1, 10000, 'the sender is told');
  await say(w2, 'after the blocked one');
  await until(async () => (await w1.locator('#log .msg .text', { hasText: 'after the blocked one' }).count()) === 1, 10000, 'the next message arrives');
  assert.equal(await w1.locator('#log .msg .text', { hasText: '바보' }).count(), 0, 'the blocked one never did');
  await w1.screenshot({ path: path.join(shots, 'watch.png') });
  await studio.screenshot({ path: path.join(shots, 'studio.png'), fullPage: true });
  await audit(w1, 'watch page');
  await audit(studio, 'studio, live');
  for (const p of [w1, studio]) assert.equal(await p.getAttribute('#log', 'role'), 'log', 'the chat is a log');

  step("moderation from the owner's watch page: a deleted message vanishes for everyone; a timed-out viewer is told");
  // The studio's browser: its watch page finds the owner's token.
  const owner = await studio.context().newPage();
  await owner.goto(`${base}/watch/${id}`);
  await owner.fill('#nick', 'owner');
  await owner.press('#nick', 'Enter');
  await owner.waitForSelector('#modbar:not([hidden])');
  await say(w2, 'delete me please');
  const row = (p, text) => p.locator('#log .msg', { hasText: text });
  await until(async () => (await row(w1, 'delete me please').count()) === 1, 10000, 'the message arrives');
  assert.equal(await w1.locator('#log .modtools').count(), 0, 'a viewer gets no moderation buttons');
  assert.equal(await w1.isHidden('#modbar'), true, 'nor the moderation bar');
  await until(async () => (await row(owner, 'delete me please').count()) === 1, 10000, 'the owner sees it');
  await row(owner, 'delete me please').getByRole('button', { name: /^Delete this message/ }).click();
  for (const p of [w1, w2, owner, studio]) {
    await until(async () => (await row(p, 'delete me please').count()) === 0, 10000, 'the deleted message vanishes');
  }
  await say(w2, 'time me out');
  await until(async () => (await row(owner, 'time me out').count()) === 1, 10000, 'the owner sees it');
  await row(owner, 'time me out').getByRole('button', { name: /^Time out/ }).click();
  await until(async () => (await owner.locator('#log .system', { hasText: 'bob is timed out for 10 minutes' }).count()) === 1, 10000, 'the owner is told');
  await say(w2, 'can I still talk?');
  await until(async () => (await w2.locator('#log .system', { hasText: 'you are timed out of this chat until' }).count()) === 1, 10000, 'the timed-out viewer is told');
  await say(studio, 'after the time-out');
  await until(async () => (await row(w1, 'after the time-out').count()) === 1, 10000, 'the next message arrives');
  assert.equal(await row(w1, 'can I still talk?').count(), 0, 'the refused one never did');
  await audit(owner, 'watch page, moderating');
  await owner.screenshot({ path: path.join(shots, 'watch-moderating.png') });
  // Every page here shares 127.0.0.1, and a time-out holds against the
  // address too: lifted, so that the others may talk again.
  const token = await studio.evaluate(() => JSON.parse(localStorage.getItem('studio')).token);
  const auth = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
  const moderation = `${base}/api/broadcasts/${id}/moderation`;
  const { in_force: inForce } = await (await fetch(moderation, { headers: auth })).json();
  assert.equal(inForce.length, 1, 'one time-out in force');
  const lifted = await fetch(moderation, { method: 'POST', headers: auth, body: JSON.stringify({ action: 'lift', target: inForce[0] }) });
  assert.equal(lifted.status, 201);
  await owner.close();

  step("the studio appoints a moderator; the link signs a watch page in; slow mode reaches the viewers");
  await studio.fill('#modname', 'mia');
  await studio.click('#modsform button[type=submit]');
  await studio.waitForSelector('#modlink:not([hidden])');
  const modLink = await studio.inputValue('#modlink');
  assert.match(modLink, new RegExp(`/watch/${id}\\?mod=mod_[0-9a-f]{32}$`));
  await until(async () => (await studio.locator('#mods li', { hasText: 'mia' }).count()) === 1, 5000, 'the studio lists her');
  const mia = await page();
  await mia.goto(modLink);
  await until(async () => new URL(mia.url()).search === '', 5000, 'the token leaves the address bar before the nickname is asked for');
  await mia.fill('#nick', 'mia');
  await mia.press('#nick', 'Enter');
  await mia.waitForSelector('#modbar:not([hidden])');
  await mia.selectOption('#slowmode', '30');
  await until(async () => (await w1.locator('#log .system', { hasText: 'Slow mode is on: one message per 30 s.' }).count()) === 1, 10000, 'viewers are told');
  await until(async () => (await studio.inputValue('#slowmode')) === '30', 10000, "the studio's bar follows");
  await mia.selectOption('#slowmode', '0');
  await until(async () => (await w1.locator('#log .system', { hasText: 'Slow mode is off.' }).count()) === 1, 10000, 'and that it is off');
  await studio.locator('#mods li', { hasText: 'mia' }).getByRole('button', { name: 'Dismiss mia' }).click();
  await until(async () => (await studio.locator('#mods li').count()) === 0, 5000, 'dismissed');
  await mia.close();

  step('the video can be paused with its own controls');
  assert.equal(await w1.evaluate(() => window.player.video.controls), true);
  await w1.evaluate(() => window.player.video.pause());
  await new Promise((r) => setTimeout(r, 2000));
  assert.equal(await w1.evaluate(() => window.player.video.paused), true, 'stays paused');
  await w1.evaluate(() => window.player.video.play());
  await until(async () => w1.evaluate(() => !window.player.video.paused), 5000, 'plays again');

  step('chat: disconnected, reconnecting, back');
  const w3 = await page();
  const chatSockets = [];
  await w3.routeWebSocket(/\/chat\?/, (ws) => { chatSockets.push(ws); ws.connectToServer(); });
  await w3.goto(`${base}/watch/${id}`);
  await w3.fill('#nick', 'carol');
  await w3.press('#nick', 'Enter');
  await until(async () => chatSockets.length === 1 && (await w3.locator('#log .msg.streamer').count()) >= 1, 10000, 'chat history arrives');
  // Every notice, also those a reconnect's history replaces before a poll sees them.
  await w3.evaluate(() => {
    window.notices = [];
    new MutationObserver((ms) => ms.forEach((m) => m.addedNodes.forEach((n) => {
      if (n.classList?.contains('system')) window.notices.push(n.textContent);
    }))).observe(document.getElementById('log'), { childList: true });
  });
  await chatSockets[0].close({ code: 4000, reason: '' });
  await until(async () => w3.evaluate(() => window.notices.some((t) => /^Chat disconnected\. Reconnecting in \d+ s/.test(t))), 5000, 'the page says the chat is reconnecting');
  await until(async () => (await w3.locator('#log .msg.system', { hasText: 'Chat reconnected.' }).count()) === 1, 10000, 'and that it is back');
  await say(w3, 'back again');
  await until(async () => (await w1.locator('#log .msg .text', { hasText: 'back again' }).count()) === 1, 10000, 'a message after the reconnect arrives');
  await w3.context().close();

  await w2.context().close();
  await until(async () => (await apiGet(id)).viewer_count === 1, 10000, 'the count falls back to one');

  step('another site embeds the player and the chat; the watch page it may not frame');
  // A customer's page on another origin: its own little server on loopback (a
  // page the browser made up would count as public, and Chromium's local
  // network access checks keep public pages from framing a loopback server).
  const site = await page();
  const customerServer = http.createServer((req, res) => {
    res.setHeader('content-type', 'text/html');
    res.end(`<!doctype html><title>Customer</title><h1>Our show</h1>
     <iframe id="player" title="Live video" src="${base}/embed/${id}" width="640" height="400"></iframe>
     <iframe id="chat" title="Live chat" src="${base}/embed/${id}/chat" width="340" height="400"></iframe>
     <iframe id="watch" title="Watch page" src="${base}/watch/${id}" width="640" height="400"></iframe>`);
  });
  await new Promise((r) => customerServer.listen(0, '127.0.0.1', r));
  const customer = `http://127.0.0.1:${customerServer.address().port}`;
  await site.goto(`${customer}/show`);
  const frame = (suffix) => site.frames().find((f) => f.url().endsWith(suffix));
  await until(async () => frame(`/embed/${id}`)?.evaluate(() => (window.player?.video.currentTime ?? 0) > 1).catch(() => false), 30000, 'the embedded player plays');
  const embedded = frame(`/embed/${id}`);
  assert.equal(await embedded.textContent('#title'), TITLE, 'the title, as text');
  assert.equal(await embedded.isVisible('#badge'), true, 'LIVE');
  const chatFrame = frame(`/embed/${id}/chat`);
  await chatFrame.fill('#nick', 'dave');
  await chatFrame.press('#nick', 'Enter');
  await until(async () => (await chatFrame.locator('#log .msg.streamer', { hasText: 'welcome!' }).count()) === 1, 10000, 'the embedded chat has the history');
  await say(chatFrame, 'hello from an embed');
  await until(async () => (await studio.locator('#log .msg .text', { hasText: 'hello from an embed' }).count()) === 1, 10000, 'the studio gets it');
  // frame-ancestors 'none': the watch page is not rendered inside another site.
  const watchFrame = frame(`/watch/${id}`);
  assert.ok(!watchFrame || await watchFrame.evaluate(() => !document.getElementById('video')).catch(() => true), 'the watch page refuses to be framed');
  await audit(embedded, 'embedded player');
  await audit(chatFrame, 'embedded chat');
  await site.context().close();
  customerServer.close();

  step('chat reconnects with exponential back-off and full jitter');
  const waits = await w1.evaluate(async () => {
    const { Chat } = await import('/assets/common.js');
    return [0, 1, 2, 3, 4, 5, 10].map((n) => Array.from({ length: 200 }, () => Chat.backoff(n, false)))
      .concat([Array.from({ length: 200 }, () => Chat.backoff(0, true))]);
  });
  const ceilings = [1000, 2000, 4000, 8000, 16000, 30000, 30000, 10000];
  waits.forEach((w, i) => {
    assert.ok(w.every((d) => d >= 0 && d <= ceilings[i]), `attempt ${i}: within 0..${ceilings[i]} ms`);
    // Spread over the window, so that a restart does not bring every page back at once.
    assert.ok(Math.min(...w) < ceilings[i] * 0.1 && Math.max(...w) > ceilings[i] * 0.9, `attempt ${i}: spread`);
  });

  step('an End that fails says so, and the broadcast stays live');
  await studio.route('**/api/broadcasts/*', (r) => (r.request().method() === 'PATCH'
    ? r.fulfill({ status: 503, contentType: 'application/json', body: JSON.stringify({ error: 'the store is unavailable' }) })
    : r.fallback()));
  await studio.click('#end');
  await studio.click('#end');
  await until(async () => /Could not end the broadcast: the store is unavailable/.test(await studio.textContent('#endError')), 5000, 'the failed End is shown');
  assert.equal(await studio.getAttribute('#endError', 'role'), 'alert');
  assert.equal((await apiGet(id)).status, 'live');
  assert.equal(await studio.textContent('#end'), 'End broadcast', 'disarmed again');
  await studio.unroute('**/api/broadcasts/*');

  step('the studio ends the broadcast; the watch page shows it');
  await studio.click('#end');
  await studio.click('#end');
  await until(async () => (await studio.textContent('#status')) === 'Ended', 10000, 'studio shows Ended');
  await until(async () => /ended/i.test(await w1.textContent('#overlay')) && await w1.isVisible('#overlay'), 15000, 'watch page shows ended');
  await w1.screenshot({ path: path.join(shots, 'watch-ended.png') });
  assert.equal(await studio.textContent('#endError'), '', 'the error is gone once it worked');
  await audit(w1, 'watch page, ended');
  await audit(studio, 'studio, ended');

  step('the replay: offered where it was watched live, played from the start when opened after the end, with seeking and the quality menu');
  await until(async () => w1.isVisible('#replay'), 30000, 'the watch page offers the replay');
  await w1.click('#replay');
  await until(async () => w1.evaluate(() => window.player?.video.currentTime > 1 && !window.player.video.paused), 20000, 'the replay plays from the start');
  assert.match(await w1.textContent('#latency'), /^Replay · \d+:\d\d$/);
  assert.equal(await w1.isHidden('#jump') && await w1.isHidden('#realtime'), true, 'no live controls on a replay');
  assert.deepEqual(await w1.locator('#quality option').allTextContents(), ['Auto', '720p', '480p']);
  await w1.evaluate(() => { window.player.video.currentTime = window.player.video.duration / 2; });
  await until(async () => w1.evaluate(() => {
    const v = window.player.video;
    return !v.seeking && v.currentTime > v.duration / 2 + 1;
  }), 20000, 'it seeks to the middle and plays on');
  await w1.selectOption('#quality', { label: '480p' });
  await until(async () => w1.evaluate(() => window.player.hls.levels[window.player.hls.currentLevel]?.height === 480), 15000, 'the quality menu switches the replay to 480p');
  await audit(w1, 'watch page, replay');
  const late = await page();
  await late.goto(`${base}/watch/${id}`);
  await until(async () => late.evaluate(() => window.player?.video.currentTime > 0.5), 20000, 'opened after the end, the page plays the replay');
  assert.equal(await late.isHidden('#overlay'), true);

  step('the directory lists the replay with its thumbnail and length; the studio deletes it');
  const replayCard = `#replays .card[data-id="${id}"]`;
  await until(async () => dir.evaluate((sel) => {
    const img = document.querySelector(`${sel} img`);
    return !!img && img.complete && img.naturalWidth > 0;
  }, replayCard), 15000, 'a replay card with its thumbnail');
  assert.match(await dir.textContent(`${replayCard} .duration`), /^Replay, \d+:\d\d$/);
  await audit(dir, 'directory with a replay');
  await until(async () => /^Replay ready \(\d+:\d\d\)/.test(await studio.textContent('#replaystate')), 10000, 'the studio says the replay is ready');
  await studio.click('#deletereplay');
  await studio.click('#deletereplay');
  await until(async () => (await studio.textContent('#replaystate')) === 'Replay deleted.', 10000, 'the studio says it is deleted');
  assert.equal((await fetch(`${base}/hls/${id}/master.m3u8`)).status, 410, 'its playlist is gone');
  assert.equal(await studio.isHidden('#deletereplay'), true);
  await audit(studio, 'studio, replay deleted');

  step('a reload of the studio gets the broadcast back');
  await studio.reload();
  await studio.waitForSelector('#dashboard:not([hidden])');
  assert.equal(await studio.textContent('#btitle'), TITLE);
  // Our pages ask nothing of another host (the customer's page is not ours).
  assert.deepEqual(offsite.filter((u) => !u.startsWith(customer)), [], 'no request to another host');
  console.log(JSON.stringify({ ok: true, id }));
} finally {
  ffmpeg?.kill('SIGKILL');
  await browser.close();
}
