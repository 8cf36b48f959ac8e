// The studio (/studio) in a real headless Chromium, driven by playwright-core: signed in as a
// broadcaster, it creates a stream through the page's form and prints the key the page shows
// as a first JSON line ({"obs_stream_key": ...}); the caller publishes with it; the page must
// then show the stream live. A second JSON line reports what the page showed.
//
//   node tests/browser/studio.mjs --base http://127.0.0.1:8080 --token TOKEN --stream NAME \
//     [--screenshots DIR]
//
// Exit 0 with the JSON lines when the harness ran; 2 with a message on stderr when it could not.

import path from 'node:path';

import { failWith, launchChromium, parseArgs, privateTmp } from './lib.mjs';

const fail = failWith('studio.mjs');
const o = parseArgs(process.argv.slice(2), { screenshots: null }, ['base', 'token', 'stream'], fail);
privateTmp('zerocast-studio-');
const browser = await launchChromium(
  o.chromium,
  ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
  fail,
);
const out = { console: [] };
try {
  const context = await browser.newContext({ viewport: { width: 1000, height: 620 } });
  await context.addInitScript((t) => {
    localStorage.setItem('zerocast.token', t);
    window.__csp = 0;
    document.addEventListener('securitypolicyviolation', () => { window.__csp += 1; });
  }, o.token);
  const page = await context.newPage();
  page.on('console', (m) => {
    if (m.type() === 'error') out.console.push(m.text());
  });
  page.on('pageerror', (e) => out.console.push(`exception: ${e.message}`));
  await page.goto(`${o.base}/studio`);
  await page.fill('#new-name', o.stream);
  await page.press('#new-name', 'Enter');
  await page.waitForSelector('#issued:not([hidden])', { timeout: 10_000 });
  const key = await page.textContent('#issued-obs');
  process.stdout.write(JSON.stringify({ obs_stream_key: key }) + '\n');
  const item = page.locator(`#mine li[data-name="${o.stream}"] .facts`).first();
  const t0 = Date.now();
  await page.waitForFunction((name) => {
    const li = document.querySelector(`#mine li[data-name="${name}"] .facts`);
    return li && li.textContent.startsWith('LIVE');
  }, o.stream, { timeout: 30_000 }).catch(() => {});
  out.liveAfterMs = Date.now() - t0;
  out.facts = await item.textContent();
  out.listed = await page.locator('#mine li').count();
  // Moderation and keys from the page: rotate the key, set slow mode, ban a user.
  const li = page.locator(`#mine li[data-name="${o.stream}"]`);
  await li.getByRole('button', { name: 'Rotate key' }).click();
  await page.waitForFunction((k) => document.getElementById('issued-obs').textContent !== k, key,
    { timeout: 5000 }).catch(() => {});
  const rotated = await page.textContent('#issued-obs');
  out.rotated = rotated !== key && rotated.startsWith(`${o.stream}?key=`);
  await li.getByLabel(`Slow mode seconds for ${o.stream}`).fill('5');
  await li.getByRole('button', { name: 'Set slow mode' }).click();
  await page.waitForFunction(() => /Slow mode of/.test(document.getElementById('studio-status').textContent), null,
    { timeout: 5000 }).catch(() => {});
  const api = await page.getAttribute('body', 'data-api');
  const r = await fetch(`${api}/api/v1/streams/${o.stream}`, { headers: { Authorization: `Bearer ${o.token}` } });
  out.slowModeSecs = (await r.json()).stream.slow_mode_secs;
  await li.getByLabel(`User id to ban or unban in ${o.stream}`).fill('0b6d5e0e-7c59-4f8a-9c4e-5a3f2b1c0d9e');
  await li.getByRole('button', { name: 'Ban', exact: true }).click();
  await page.waitForFunction(() => /is banned/.test(document.getElementById('studio-status').textContent), null,
    { timeout: 5000 }).catch(() => {});
  out.banStatus = await page.textContent('#studio-status');
  out.cspViolations = await page.evaluate(() => window.__csp);
  // The key shown is the one issued: blur it out of the screenshot all the same.
  await page.evaluate(() => {
    for (const id of ['issued-url', 'issued-obs']) {
      const el = document.getElementById(id);
      el.textContent = el.textContent.replace(/key=.*/, 'key=…');
    }
  });
  if (o.screenshots) await page.screenshot({ path: path.join(o.screenshots, 'studio.png') });
} catch (e) {
  out.error = e.message;
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(out) + '\n');
