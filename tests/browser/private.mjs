// A private stream's watch page in headless Chromium: without a playback token the page says the
// stream is private; with `?token=` it plays. Prints one line of JSON.
//
//   node tests/browser/private.mjs --base http://127.0.0.1:8080 --stream NAME --token PLAYBACK_TOKEN
//
// Exit 0 with JSON on stdout when the harness ran; 2 with a message on stderr when it could not.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

function fail(msg) {
  process.stderr.write(`private.mjs: ${msg}\n`);
  process.exit(2);
}

const o = { chromium: process.env.CHROMIUM_PATH || '/usr/bin/chromium' };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i += 2) {
  if (argv[i + 1] === undefined) fail(`${argv[i]} needs a value`);
  o[argv[i].replace(/^--/, '')] = argv[i + 1];
}
for (const k of ['base', 'stream', 'token']) if (!o[k]) fail(`--${k} is required`);

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'zerocast-private-'));
process.env.TMPDIR = tmp;
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));

let chromium;
try {
  ({ chromium } = await import('playwright-core'));
} catch (e) {
  fail(`cannot load playwright-core (${e.message}): run \`npm ci\` in tests/browser`);
}
let browser;
try {
  browser = await chromium.launch({
    executablePath: o.chromium,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--autoplay-policy=no-user-gesture-required', '--no-first-run'],
    timeout: 30_000,
  });
} catch (e) {
  fail(`chromium could not start: ${e.message.split('\n')[0]}`);
}
const out = {};
try {
  const page = await browser.newPage();
  await page.goto(`${o.base}/watch/${o.stream}`);
  await page.waitForFunction(() => /private/.test(document.getElementById('player-notice').textContent), null,
    { timeout: 10_000 }).catch(() => {});
  out.withoutToken = await page.textContent('#player-notice');
  await page.goto(`${o.base}/watch/${o.stream}?token=${encodeURIComponent(o.token)}`);
  out.playedWithToken = await page
    .waitForFunction(() => document.querySelector('video').currentTime > 1, null, { timeout: 20_000 })
    .then(() => true, () => false);
  out.noticeWithToken = await page.textContent('#player-notice');
} catch (e) {
  out.error = e.message;
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(out) + '\n');
