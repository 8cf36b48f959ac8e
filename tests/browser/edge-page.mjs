// The watch page served by an edge node (`--origin`), in headless Chromium: it plays the stream
// the edge follows from its origin, and its chat talks to the social API named by the edge's
// `pages-api-url` (the origin's), both ways with a second client of that API. Prints one line
// of JSON; edge/tests/web.rs decides pass/fail from it.
//
//   node --experimental-websocket tests/browser/edge-page.mjs --base http://127.0.0.1:EDGE \
//     --api http://127.0.0.1:ORIGIN_API --stream NAME --viewer TOKEN --other TOKEN [--seconds 12]
//
// Exit 0 with JSON on stdout when the harness ran; 2 with a message on stderr when it could not.

import {
  CHROMIUM_ARGS, chatClient, failWith, launchChromium, parseArgs, playbackCounters, privateTmp, sleep,
  waitReceived, watchCounters,
} from './lib.mjs';

const fail = failWith('edge-page.mjs');

async function main() {
  const o = parseArgs(process.argv.slice(2), { seconds: '12' }, ['base', 'api', 'stream', 'viewer', 'other'], fail);
  privateTmp('zerocast-edge-page-');
  const browser = await launchChromium(o.chromium, CHROMIUM_ARGS, fail);
  const out = { console: [] };
  try {
    const context = await browser.newContext({ viewport: { width: 1100, height: 620 } });
    await context.addInitScript(watchCounters, o.viewer);
    const page = await context.newPage();
    page.on('console', (m) => {
      if (m.type() === 'error') out.console.push(m.text());
    });
    page.on('pageerror', (e) => out.console.push(`exception: ${e.message}`));
    await page.goto(`${o.base}/watch/${o.stream}`);
    out.pageApi = await page.evaluate(() => document.body.dataset.api);
    await page.waitForFunction(() => window.__t.playing !== null, null, { timeout: 30_000 });
    out.firstFrameMs = await page.evaluate(() => Math.round(window.__t.playing));
    const t0 = Date.now();
    const from = await page.evaluate(() => document.querySelector('video').currentTime);

    // Chat both ways with a client of the origin's API.
    const other = await chatClient(o.api, o.other, o.stream);
    await page.waitForSelector('#chat-input:not([disabled])', { timeout: 10_000 });
    const incoming = `to the page on the edge ${Date.now()}`;
    const sent = Date.now();
    other.ws.send(JSON.stringify({ type: 'chat', room: o.stream, content: incoming, client_id: `e-${sent}` }));
    await page.locator('#messages li', { hasText: incoming }).waitFor({ timeout: 5000 }).catch(() => {});
    out.chatInMs = (await page.locator('#messages li', { hasText: incoming }).count()) ? Date.now() - sent : -1;
    const typed = `typed on the edge ${Date.now()}`;
    await page.fill('#chat-input', typed);
    const wait = waitReceived(other, typed, 5000);
    await page.press('#chat-input', 'Enter');
    out.chatOutMs = (await wait) ?? -1;

    // Watch the rest of the time.
    await sleep(Math.max(0, o.seconds * 1000 - (Date.now() - t0)));
    Object.assign(out, await playbackCounters(page), await page.evaluate(() => ({
      latency: window.zerocast.hls ? window.zerocast.hls.latency : null,
      state: document.getElementById('state').textContent,
    })));
    out.played = out.currentTime - from;
    out.watchedSeconds = (Date.now() - t0) / 1000;
    other.ws.close();
  } catch (e) {
    out.error = e.message;
  } finally {
    await browser.close();
  }
  process.stdout.write(JSON.stringify(out) + '\n');
}

main();
