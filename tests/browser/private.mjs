// A private stream's watch page in headless Chromium: without a playback token the page says the
// stream is private; with `?token=` it plays. Prints one line of JSON.
//
//   node tests/browser/private.mjs --base http://127.0.0.1:8080 --stream NAME --token PLAYBACK_TOKEN
//
// Exit 0 with JSON on stdout when the harness ran; 2 with a message on stderr when it could not.

import { failWith, launchChromium, parseArgs, privateTmp } from './lib.mjs';

const fail = failWith('private.mjs');
const o = parseArgs(process.argv.slice(2), {}, ['base', 'stream', 'token'], fail);
privateTmp('zerocast-private-');
const browser = await launchChromium(
  o.chromium,
  ['--no-sandbox', '--disable-gpu', '--autoplay-policy=no-user-gesture-required', '--no-first-run'],
  fail,
);
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
