// The watch page (/watch/NAME) in a real headless Chromium, driven by playwright-core, against a
// live zerocast server: it plays, its stats line agrees with hls.js, chat goes both ways with a
// second client (a WebSocket from this script), the follow button follows, a ban shows.
// Prints one line of JSON; edge/tests/web.rs decides pass/fail from it.
//
//   node --experimental-websocket tests/browser/watch.mjs --base http://127.0.0.1:8080 \
//     --api http://127.0.0.1:8090 --stream NAME --viewer TOKEN --other TOKEN --owner TOKEN \
//     [--seconds 20] [--dashSeconds 15] [--screenshots DIR]
//
// --viewer is the token the page signs in with, --other the second chat client's, --owner the
// stream owner's (it bans the viewer at the end). Exit 0 with JSON on stdout when the harness
// ran; 2 with a message on stderr when it could not (no Chromium, no playwright-core).

import path from 'node:path';

import {
  CHROMIUM_ARGS, chatClient, failWith, launchChromium, parseArgs, playbackCounters, privateTmp, sleep, sub,
  waitReceived, watchCounters,
} from './lib.mjs';

const fail = failWith('watch.mjs');

async function api(o, token, method, p, body) {
  const r = await fetch(o.api + p, {
    method,
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  if (!r.ok) throw new Error(`${method} ${p}: ${r.status} ${text}`);
  return text ? JSON.parse(text) : {};
}

async function main() {
  const o = parseArgs(process.argv.slice(2), { seconds: '20', dashSeconds: '15', screenshots: null },
    ['base', 'api', 'stream', 'viewer', 'other', 'owner'], fail);
  o.seconds = Number(o.seconds);
  o.dashSeconds = Number(o.dashSeconds);
  privateTmp('zerocast-watch-');
  const browser = await launchChromium(o.chromium, CHROMIUM_ARGS, fail);
  const out = { console: [], cspViolations: 0 };
  try {
    const context = await browser.newContext({ viewport: { width: 1100, height: 620 } });
    // Signed in as the viewer, and the test's own playback counters, from the first script on.
    await context.addInitScript(watchCounters, o.viewer);
    const page = await context.newPage();
    page.on('console', (m) => {
      if (m.type() === 'error' || m.type() === 'warning') out.console.push(m.text());
    });
    page.on('pageerror', (e) => out.console.push(`exception: ${e.message}`));

    // The list of live streams.
    await page.goto(`${o.base}/`);
    out.homeListsStream = await page.locator('#streams a', { hasText: o.stream }).count() > 0;
    out.homeFacts = await page.locator('#streams li', { hasText: o.stream }).locator('.facts').textContent()
      .catch(() => null);
    if (o.screenshots) await page.screenshot({ path: path.join(o.screenshots, 'home.png') });

    // The watch page: time to first frame, page weight.
    await page.goto(`${o.base}/watch/${o.stream}`);
    await page.waitForFunction(() => window.__t.playing !== null, null, { timeout: 20_000 });
    Object.assign(out, await page.evaluate(() => {
      const nav = performance.getEntriesByType('navigation')[0];
      const assets = performance.getEntriesByType('resource').filter((r) => r.name.includes('/web/'));
      const weight = { html: nav.encodedBodySize };
      for (const r of assets) weight[r.name.split('/web/')[1]] = r.encodedBodySize;
      return { firstFrameMs: Math.round(window.__t.playing), pageWeight: weight };
    }));

    // A second viewer whose token expires while the page is open (`--expiring`, a token of a
    // few seconds; the API allows 30 s of leeway): its chat says so once the API closes the
    // socket. Its player is kept from loading media, to leave the CPU to the page measured.
    let expiring = null;
    if (o.expiring) {
      const ectx = await browser.newContext({ viewport: { width: 800, height: 600 } });
      await ectx.addInitScript((t) => localStorage.setItem('zerocast.token', t), o.expiring);
      await ectx.route(/\/live\//, (r) => r.abort());
      expiring = await ectx.newPage();
      await expiring.goto(`${o.base}/watch/${o.stream}`);
      await expiring.waitForSelector('#chat-input:not([disabled])', { timeout: 10_000 }).catch(() => {});
      out.expiringConnected = await expiring.evaluate(() => window.zerocast.chat.connected);
    }

    // The second client, and the follow button's starting count.
    const other = await chatClient(o.api, o.other, o.stream);
    const owner = sub(o.owner);
    const countsBefore = (await api(o, o.viewer, 'GET', `/api/v1/users/${owner}/counts`)).followers;
    await page.waitForSelector('#follow:not([disabled])', { timeout: 10_000 });
    await page.waitForSelector('#chat-input:not([disabled])', { timeout: 10_000 });

    // Watch for the given time, sampling the stats line against hls.js.
    const t0 = Date.now();
    const playedFrom = await page.evaluate(() => document.querySelector('video').currentTime);
    let maxDiff = 0;
    let samples = 0;
    let chatIn = null;
    let chatOut = null;
    let followed = null;
    while (Date.now() - t0 < o.seconds * 1000) {
      const s = await page.evaluate(() => ({
        shown: document.getElementById('stats').dataset.latency,
        text: document.getElementById('stats').textContent,
        hls: window.zerocast.hls ? window.zerocast.hls.latency : null,
      }));
      if (s.shown && Number.isFinite(s.hls) && s.hls > 0) {
        maxDiff = Math.max(maxDiff, Math.abs(Number(s.shown) - s.hls));
        samples += 1;
        out.statsLine = s.text;
        out.latency = s.hls;
      }
      const elapsed = Date.now() - t0;
      if (chatIn === null && elapsed > 3000) {
        // A message from the second client appears in the page.
        const content = `hello from the test ${Date.now()}`;
        const sent = Date.now();
        other.ws.send(JSON.stringify({ type: 'chat', room: o.stream, content, client_id: `t-${sent}` }));
        await page.locator('#messages li', { hasText: content }).waitFor({ timeout: 5000 }).catch(() => {});
        chatIn = (await page.locator('#messages li', { hasText: content }).count()) ? Date.now() - sent : -1;
        // The sender's display name (its profile), once the page asked for it.
        await page.waitForFunction((c) => [...document.querySelectorAll('#messages li')]
          .some((li) => li.textContent.includes(c) && !/^[0-9a-f]{8}$/.test(li.querySelector('.from').textContent)),
        content, { timeout: 5000 }).catch(() => {});
        out.chatFrom = await page.locator('#messages li', { hasText: content }).locator('.from').textContent();
      } else if (chatOut === null && elapsed > 6000) {
        // A message typed into the page reaches the second client.
        const content = `typed in the page ${Date.now()}`;
        await page.fill('#chat-input', content);
        const wait = waitReceived(other, content, 5000);
        await page.press('#chat-input', 'Enter');
        chatOut = (await wait) ?? -1;
      } else if (followed === null && elapsed > 9000) {
        await page.click('#follow');
        await page.waitForFunction((n) => document.getElementById('followers').dataset.count === String(n),
          countsBefore + 1, { timeout: 5000 }).catch(() => {});
        const after = (await api(o, o.viewer, 'GET', `/api/v1/users/${owner}/counts`)).followers;
        followed = { before: countsBefore, after, button: await page.textContent('#follow') };
      }
      await sleep(250);
    }
    Object.assign(out, await playbackCounters(page), await page.evaluate(() => ({
      viewersShown: document.getElementById('viewers').textContent,
      ownerShown: document.getElementById('owner').textContent,
    })));
    out.played = out.currentTime - playedFrom;
    out.watchedSeconds = (Date.now() - t0) / 1000;
    Object.assign(out, { latencyMaxDiff: maxDiff, latencySamples: samples, chatInMs: chatIn, chatOutMs: chatOut, followed });
    if (o.screenshots) await page.screenshot({ path: path.join(o.screenshots, 'watch.png') });

    // The chat socket drops: the page reconnects by itself and shows, once, what was said
    // while it was away (the room's history on subscribing again).
    await page.evaluate(() => window.zerocast.chat.drop());
    await page.waitForFunction(() => !window.zerocast.chat.connected, null, { timeout: 5000 }).catch(() => {});
    const away = `said while you were away ${Date.now()}`;
    other.ws.send(JSON.stringify({ type: 'chat', room: o.stream, content: away, client_id: `a-${Date.now()}` }));
    await page.locator('#messages li', { hasText: away }).waitFor({ timeout: 10_000 }).catch(() => {});
    out.reconnect = await page.evaluate((text) => ({
      reconnects: window.zerocast.chat.reconnects,
      connected: window.zerocast.chat.connected,
      shown: [...document.querySelectorAll('#messages li')].filter((li) => li.textContent.includes(text)).length,
      total: document.querySelectorAll('#messages li').length,
    }), away);
    await page.waitForSelector('#chat-input:not([disabled])', { timeout: 10_000 }).catch(() => {});

    // A guest (no token) reads the chat: the history on joining, then live messages; it cannot
    // type. Its player is kept from loading media, as for the other extra pages.
    {
      const gctx = await browser.newContext({ viewport: { width: 800, height: 600 } });
      await gctx.route(/\/live\//, (r) => r.abort());
      const gp = await gctx.newPage();
      gp.on('pageerror', (e) => out.console.push(`guest page exception: ${e.message}`));
      await gp.goto(`${o.base}/watch/${o.stream}`);
      await gp.locator('#messages li', { hasText: away }).waitFor({ timeout: 10_000 }).catch(() => {});
      const live = `for everyone ${Date.now()}`;
      other.ws.send(JSON.stringify({ type: 'chat', room: o.stream, content: live, client_id: `g-${Date.now()}` }));
      await gp.locator('#messages li', { hasText: live }).waitFor({ timeout: 5000 }).catch(() => {});
      out.guest = await gp.evaluate(([a, l]) => ({
        history: [...document.querySelectorAll('#messages li')].some((li) => li.textContent.includes(a)),
        live: [...document.querySelectorAll('#messages li')].some((li) => li.textContent.includes(l)),
        inputDisabled: document.getElementById('chat-input').disabled,
        status: document.getElementById('chat-status').textContent,
      }), [away, live]);
      await gctx.close();
    }

    // Slow mode (3 s, set by the owner): a second message right after a first one is refused,
    // and the page counts down on its send button until the next one may go.
    await api(o, o.owner, 'PATCH', `/api/v1/streams/${o.stream}`, { slow_mode_secs: 3 });
    await sleep(300);
    const first = `slow one ${Date.now()}`;
    await page.fill('#chat-input', first);
    await page.press('#chat-input', 'Enter');
    await page.locator('#messages li', { hasText: first }).waitFor({ timeout: 5000 }).catch(() => {});
    await page.fill('#chat-input', 'slow two');
    await page.press('#chat-input', 'Enter');
    await page.waitForFunction(() => /^Wait \d+ s$/.test(document.getElementById('chat-send').textContent), null,
      { timeout: 5000 }).catch(() => {});
    out.slowMode = {
      status: await page.textContent('#chat-status'),
      button: await page.textContent('#chat-send'),
      disabled: await page.isDisabled('#chat-send'),
    };
    await page.waitForFunction(() => document.getElementById('chat-send').textContent === 'Send', null,
      { timeout: 6000 }).catch(() => {});
    out.slowMode.after = await page.textContent('#chat-send');
    await api(o, o.owner, 'PATCH', `/api/v1/streams/${o.stream}`, { slow_mode_secs: 0 });
    await sleep(300);

    // Faster than the chat's rate limit (bursts of 20, then 10 a second): the page says so and
    // holds its send button until the wait the server named has passed.
    out.rateLimit = { sent: 0 };
    for (let i = 0; i < 40; i++) {
      await page.fill('#chat-input', `flood ${i}`);
      await page.press('#chat-input', 'Enter');
      out.rateLimit.sent = i + 1;
      if (/Too fast/.test(await page.textContent('#chat-status'))) break;
    }
    await page.waitForFunction(() => /Too fast/.test(document.getElementById('chat-status').textContent), null,
      { timeout: 5000 }).catch(() => {});
    out.rateLimit.status = await page.textContent('#chat-status');
    // Let the bucket refill before the next send.
    await sleep(2500);

    // The owner bans the viewer; the page says so when the viewer sends.
    await api(o, o.owner, 'POST', `/api/v1/rooms/${o.stream}/bans`, { user: sub(o.viewer) });
    await page.fill('#chat-input', 'am I banned?');
    await page.press('#chat-input', 'Enter');
    await page.waitForFunction(() => /banned/i.test(document.getElementById('chat-status').textContent), null,
      { timeout: 5000 }).catch(() => {});
    out.banMessage = await page.textContent('#chat-status');

    // The owner moderates from a chat line: their own watch page shows Timeout and Ban on the
    // second client's lines; a timeout there keeps that client from chatting.
    {
      const octx = await browser.newContext({ viewport: { width: 1100, height: 620 } });
      await octx.addInitScript((t) => localStorage.setItem('zerocast.token', t), o.owner);
      await octx.route(/\/live\//, (r) => r.abort());
      const op = await octx.newPage();
      op.on('pageerror', (e) => out.console.push(`owner page exception: ${e.message}`));
      await op.goto(`${o.base}/watch/${o.stream}`);
      const line = op.locator('#messages li', { hasText: 'hello from the test' }).first();
      await line.locator('.mod button', { hasText: 'Timeout' }).click({ timeout: 10_000 }).catch(() => {});
      await op.waitForFunction(() => /may not chat/.test(document.getElementById('chat-status').textContent), null,
        { timeout: 5000 }).catch(() => {});
      out.moderation = { status: await op.textContent('#chat-status') };
      const before = other.errors.length;
      other.ws.send(JSON.stringify({ type: 'chat', room: o.stream, content: 'timed out?', client_id: `m-${Date.now()}` }));
      const t = Date.now();
      while (other.errors.length === before && Date.now() - t < 5000) await sleep(50);
      out.moderation.refused = other.errors.length > before ? other.errors[other.errors.length - 1].code : null;
      await octx.close();
    }

    if (expiring) {
      await expiring.waitForFunction(() => /expired/.test(document.getElementById('chat-status').textContent), null,
        { timeout: 60_000 }).catch(() => {});
      out.expired = {
        status: await expiring.textContent('#chat-status'),
        inputDisabled: await expiring.isDisabled('#chat-input'),
        reconnects: await expiring.evaluate(() => window.zerocast.chat.reconnects),
      };
      await expiring.context().close();
    }

    // Readable at 360 px wide: nothing wider than the viewport.
    await page.setViewportSize({ width: 360, height: 740 });
    await sleep(300);
    out.overflow360 = await page.evaluate(() => document.documentElement.scrollWidth > 360);
    if (o.screenshots) await page.screenshot({ path: path.join(o.screenshots, 'watch-360.png') });
    other.ws.close();

    // A build without hls.js (its URL answers 404): the page says what is missing.
    const bare = await context.newPage();
    await bare.route(/\/web\/hls\.js/, (r) => r.fulfill({ status: 404, body: 'missing' }));
    await bare.goto(`${o.base}/watch/${o.stream}`);
    await bare.waitForFunction(() => /missing/.test(document.getElementById('player-notice').textContent), null,
      { timeout: 10_000 }).catch(() => {});
    out.missingLibraryNotice = await bare.textContent('#player-notice');
    await bare.close();

    // The DASH player (?player=dash): dash.js plays the MPD of the same stream, and the
    // page's readout is dash.js's own live latency.
    const dash = await context.newPage();
    dash.on('pageerror', (e) => out.console.push(`dash page exception: ${e.message}`));
    await dash.setViewportSize({ width: 1100, height: 620 });
    await dash.goto(`${o.base}/watch/${o.stream}?player=dash`);
    await dash.waitForFunction(() => window.__t.playing !== null, null, { timeout: 20_000 });
    const d = { library: await dash.evaluate(() => ({ dash: !!window.dashjs, hls: !!window.Hls })) };
    d.firstFrameMs = await dash.evaluate(() => Math.round(window.__t.playing));
    const dashFrom = await dash.evaluate(() => document.querySelector('video').currentTime);
    const d0 = Date.now();
    d.latencyMaxDiff = 0;
    d.latencySamples = 0;
    while (Date.now() - d0 < o.dashSeconds * 1000) {
      const s = await dash.evaluate(() => ({
        shown: document.getElementById('stats').dataset.latency,
        text: document.getElementById('stats').textContent,
        dash: window.zerocast.dash ? window.zerocast.dash.getCurrentLiveLatency() : null,
      }));
      if (s.shown && Number.isFinite(s.dash) && s.dash > 0) {
        d.latencyMaxDiff = Math.max(d.latencyMaxDiff, Math.abs(Number(s.shown) - s.dash));
        d.latencySamples += 1;
        d.latency = s.dash;
        d.statsLine = s.text;
      }
      await sleep(250);
    }
    Object.assign(d, await playbackCounters(dash), await dash.evaluate(() => ({
      current: document.getElementById('use-dash').getAttribute('aria-current'),
    })));
    d.played = d.currentTime - dashFrom;
    out.dash = d;
    if (o.screenshots) await dash.screenshot({ path: path.join(o.screenshots, 'watch-dash.png') });
    await dash.close();
  } catch (e) {
    out.error = e.message;
  } finally {
    await browser.close();
  }
  process.stdout.write(JSON.stringify(out) + '\n');
}

main();
