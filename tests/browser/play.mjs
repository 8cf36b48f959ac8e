#!/usr/bin/env node
// Real-browser live playback harness for zerocast: LL-HLS with hls.js, (LL-)DASH with
// dash.js or Shaka Player.
//
//   node tests/browser/play.mjs --url http://127.0.0.1:PORT/live/NAME/index.m3u8 --seconds 20
//   node tests/browser/play.mjs --player dashjs --url http://127.0.0.1:PORT/live/NAME/index.mpd
//
// Serves a tiny page (the player library from node_modules, its adapter page/<player>.js
// and the shared measuring code page/page.js) on a free loopback port, plays the URL in
// headless Debian Chromium via playwright-core, watches playback and prints ONE line of
// JSON on stdout. Exit 0 = the harness ran (the caller judges the JSON), exit 2 = harness
// failure (message on stderr, nothing on stdout).
// See README.md in this folder for the meaning of every field.

import http from 'node:http';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const NODE_MODULES = path.join(HERE, 'node_modules');

// --player NAME: the library served as /lib.js (pinned in package-lock.json) and its label.
const PLAYERS = {
  hlsjs: { label: 'hls.js', lib: path.join(NODE_MODULES, 'hls.js', 'dist', 'hls.min.js') },
  dashjs: { label: 'dash.js', lib: path.join(NODE_MODULES, 'dashjs', 'dist', 'modern', 'umd', 'dash.all.min.js') },
  shaka: { label: 'Shaka Player', lib: path.join(NODE_MODULES, 'shaka-player', 'dist', 'shaka-player.compiled.js') },
};

const START_TIMEOUT_MS = 15_000; // playback must start within this
const POLL_MS = 500; // how often node pulls a snapshot from the page
const FATAL_GRACE_MS = 1_000; // after a fatal player error, collect a bit more then stop

// ---------------------------------------------------------------- arguments
function usage(msg) {
  if (msg) process.stderr.write(`play.mjs: ${msg}\n`);
  process.stderr.write(
    'usage: node play.mjs --url URL [--player hlsjs|dashjs|shaka] [--seconds N] [--hard-timeout S] ' +
      "[--chromium PATH] [--player-config '{json}'] [--chromium-arg ARG]... [--verbose]\n",
  );
  process.exit(2);
}

function parseArgs(argv) {
  const o = {
    url: null,
    seconds: 20,
    chromium: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
    player: 'hlsjs',
    playerConfig: {},
    verbose: false,
    hardTimeout: null,
    chromiumArgs: [],
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const eq = a.indexOf('=');
    const key = a.startsWith('--') && eq > 0 ? a.slice(0, eq) : a;
    const val = () => {
      if (a.startsWith('--') && eq > 0) return a.slice(eq + 1);
      if (i + 1 >= argv.length) usage(`missing value for ${key}`);
      return argv[++i];
    };
    switch (key) {
      case '--url': o.url = val(); break;
      case '--seconds': o.seconds = Number(val()); break;
      case '--chromium': o.chromium = val(); break;
      case '--player': o.player = val(); break;
      // --hls-config is the older name of --player-config (hls.js was the only player).
      case '--player-config': case '--hls-config':
        try { o.playerConfig = JSON.parse(val()); } catch (e) { usage(`${key} is not JSON: ${e.message}`); }
        break;
      case '--hard-timeout': o.hardTimeout = Number(val()); break;
      case '--chromium-arg': o.chromiumArgs.push(val()); break;
      case '--verbose': case '-v': o.verbose = true; break;
      case '--help': case '-h': usage(); break;
      default: usage(`unknown argument ${a}`);
    }
  }
  if (!o.url) usage('--url is required');
  if (!Object.hasOwn(PLAYERS, o.player)) usage(`--player must be one of ${Object.keys(PLAYERS).join(', ')}`);
  if (!o.playerConfig || typeof o.playerConfig !== 'object' || Array.isArray(o.playerConfig)) {
    usage('--player-config must be a JSON object');
  }
  try { new URL(o.url); } catch { usage(`--url is not a URL: ${o.url}`); }
  if (!Number.isFinite(o.seconds) || o.seconds <= 0) usage('--seconds must be a positive number');
  o.hardTimeout ??= o.seconds + 40;
  if (!Number.isFinite(o.hardTimeout) || o.hardTimeout <= 0) usage('--hard-timeout must be a positive number');
  return o;
}

const opts = parseArgs(process.argv.slice(2));
const t0 = Date.now();
const log = (...a) => process.stderr.write(`[play ${((Date.now() - t0) / 1000).toFixed(1)}s] ${a.join(' ')}\n`);
const vlog = (...a) => { if (opts.verbose) log(...a); };

// ---------------------------------------------------------------- page
// The page loads the player library, its adapter and the shared measuring code (page/page.js),
// which keeps all state in window.__zc and exposes __zc.snapshot().
const PLAYER = PLAYERS[opts.player];
const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>zerocast play</title>
<style>html,body{margin:0;background:#000}video{width:640px;height:360px}</style>
</head><body>
<video id="v" muted autoplay playsinline></video>
<script src="/lib.js"></script>
<script src="/adapter.js"></script>
<script src="/page.js"></script>
</body></html>`;
const SCRIPTS = {
  '/lib.js': PLAYER.lib,
  '/adapter.js': path.join(HERE, 'page', `${opts.player}.js`),
  '/page.js': path.join(HERE, 'page', 'page.js'),
};

// ---------------------------------------------------------------- result
let lastSnap = null;
let printed = false;
let hardTimedOut = false;

function applySnapshot(s) {
  if (!s) return;
  lastSnap = s;
}

function finalJson() {
  const s = lastSnap || {};
  const info = s.info || {};
  const lat = s.latency || null;
  const hls = opts.player === 'hlsjs';
  const out = {
    ok: false,
    started: !!s.started,
    playedSeconds: s.playedSeconds ?? 0,
    stalls: s.stalls ?? 0,
    lateSeeks: s.lateSeeks ?? 0,
    errors: s.errors ?? [],
    fatalErrors: s.fatalErrors ?? 0,
    latency: lat
      ? { min: lat.min, median: lat.median, mean: lat.mean, max: lat.max, last: lat.last }
      : { min: null, median: null, mean: null, max: null, last: null },
    targetLatency: info.targetLatency ?? null,
    // LL-HLS only (null for the DASH players).
    partsUsed: hls ? !!info.partsUsed : null,
    canBlockReload: hls ? !!info.canBlockReload : null,
    droppedFrames: s.droppedFrames ?? 0,
    totalFrames: s.totalFrames ?? 0,
    // ---- extras (diagnostics; the fields above are the contract)
    player: opts.player,
    playerVersion: s.playerVersion ?? null,
    latencySource: info.latencySource ?? s.latencySource ?? null,
    lowLatencyMode: info.lowLatencyMode ?? null,
    codecs: s.codecs ?? null,
    activeCodecs: info.activeCodecs ?? null,
    seconds: opts.seconds,
    url: opts.url,
    hlsVersion: hls ? s.playerVersion ?? null : null,
    startupMs: s.startupMs ?? null,
    stallSeconds: s.stallSeconds ?? 0,
    waitingEvents: s.waitingEvents ?? 0,
    seekWaits: s.seekWaits ?? 0,
    seeks: s.seeks ?? 0,
    errorCount: s.errorCount ?? 0,
    latencySamples: lat ? lat.samples : 0,
    maxPlaybackRate: s.maxPlaybackRate ?? 1,
    currentTime: s.currentTime ?? null,
    protocols: s.protocols ?? {},
    slowest: s.slowest ?? [],
    hardTimeout: hardTimedOut,
    wallSeconds: Math.round((Date.now() - t0) / 100) / 10,
  };
  // The player's own counters (hls.js: partTarget, levelLoads, ...; dash.js: manifestLoads,
  // periodSwitches, ...; Shaka: bufferingEvents, gapsJumped, ...).
  for (const [k, v] of Object.entries(info)) if (!(k in out)) out[k] = v;
  out.ok = out.started && out.fatalErrors === 0 && out.stalls === 0 && out.lateSeeks === 0 && out.playedSeconds >= opts.seconds * 0.9;
  return out;
}

function printResult() {
  if (printed) return;
  printed = true;
  process.stdout.write(JSON.stringify(finalJson()) + '\n');
}

// ---------------------------------------------------------------- cleanup
let browser = null;
let server = null;

async function cleanup() {
  const tasks = [];
  if (browser) {
    const b = browser;
    browser = null;
    tasks.push(b.close().catch(() => {}));
  }
  if (server) {
    const s = server;
    server = null;
    s.closeAllConnections?.();
    tasks.push(new Promise((r) => s.close(() => r())));
  }
  await Promise.race([Promise.all(tasks), sleep(5000)]);
}

async function harnessFail(msg) {
  process.stderr.write(`play.mjs: harness failure: ${msg}\n`);
  await cleanup();
  process.exit(2);
}

async function finish() {
  printResult();
  await cleanup();
  process.exit(0);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const withTimeout = (p, ms, what) =>
  Promise.race([p, sleep(ms).then(() => { throw new Error(`${what} timed out after ${ms} ms`); })]);

// Hard overall limit: print what we have and leave.
const hardTimer = setTimeout(async () => {
  hardTimedOut = true;
  log(`hard timeout (${opts.hardTimeout}s) reached; printing partial result`);
  await finish();
}, opts.hardTimeout * 1000);
hardTimer.unref?.();

process.on('SIGINT', () => finish());
process.on('SIGTERM', () => finish());

// ---------------------------------------------------------------- main
async function main() {
  for (const f of Object.values(SCRIPTS)) {
    if (!fs.existsSync(f)) return harnessFail(`${f} not found: run \`npm ci\` in ${HERE}`);
  }
  // Private temp dir for Playwright's profile/artifacts and Chromium's own temp
  // files, removed on any exit (even when the browser had to be killed).
  const tmpBase = fs.mkdtempSync(path.join(os.tmpdir(), 'zerocast-play-'));
  process.env.TMPDIR = tmpBase;
  process.on('exit', () => {
    try { fs.rmSync(tmpBase, { recursive: true, force: true }); } catch {}
  });

  let chromium;
  try {
    ({ chromium } = await import('playwright-core'));
  } catch (e) {
    return harnessFail(`cannot load playwright-core (${e.message}): run \`npm ci\` in ${HERE}`);
  }

  // Tiny static server: / -> page, /lib.js, /adapter.js, /page.js -> files.
  server = http.createServer((req, res) => {
    const p = new URL(req.url, 'http://x').pathname;
    if (p === '/' || p === '/index.html') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
      res.end(PAGE);
    } else if (Object.hasOwn(SCRIPTS, p)) {
      res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8' });
      fs.createReadStream(SCRIPTS[p]).pipe(res);
    } else if (p === '/favicon.ico') {
      res.writeHead(204);
      res.end();
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found\n');
    }
  });
  try {
    await new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', resolve);
    });
  } catch (e) {
    return harnessFail(`cannot start page server: ${e.message}`);
  }
  const pagePort = server.address().port;
  vlog(`page server on http://127.0.0.1:${pagePort}/`);

  try {
    browser = await withTimeout(
      chromium.launch({
        executablePath: opts.chromium,
        headless: true,
        args: [
          '--headless',
          '--no-sandbox',
          '--disable-gpu',
          // QUIC only where the caller forces it (--chromium-arg=--origin-to-force-quic-on=...).
          ...(opts.chromiumArgs.some((a) => a.startsWith('--origin-to-force-quic-on')) ? [] : ['--disable-quic']),
          ...opts.chromiumArgs,
          '--no-first-run',
          '--disable-background-networking',
          '--disable-component-update',
          '--disable-sync',
          '--autoplay-policy=no-user-gesture-required',
        ],
        timeout: 30_000,
      }),
      35_000,
      'chromium launch',
    );
  } catch (e) {
    return harnessFail(`chromium could not start (${opts.chromium}): ${e.message.split('\n')[0]}`);
  }
  vlog(`chromium ${browser.version()} started`);

  let page;
  try {
    const context = await browser.newContext({ viewport: { width: 800, height: 450 } });
    page = await context.newPage();
  } catch (e) {
    return harnessFail(`cannot open a page: ${e.message.split('\n')[0]}`);
  }
  page.on('console', (m) => {
    const t = m.type();
    if (t === 'error') log(`console.error: ${m.text()}`);
    else if (opts.verbose) log(`console.${t}: ${m.text()}`);
  });
  page.on('pageerror', (e) => log(`page exception: ${e.message}`));
  page.on('crash', () => log('page crashed'));
  page.on('requestfailed', (r) => log(`request failed: ${r.url()} ${r.failure()?.errorText ?? ''}`));
  if (opts.verbose) {
    page.on('response', (r) => {
      if (r.status() >= 400) log(`HTTP ${r.status()} ${r.url()}`);
    });
  }

  const params = { url: opts.url, playerConfig: opts.playerConfig, debug: false };
  const pageUrl = `http://127.0.0.1:${pagePort}/#${encodeURIComponent(JSON.stringify(params))}`;
  try {
    await page.goto(pageUrl, { waitUntil: 'load', timeout: 15_000 });
  } catch (e) {
    return harnessFail(`cannot load harness page: ${e.message.split('\n')[0]}`);
  }

  const snap = async () => {
    try {
      const s = await withTimeout(page.evaluate(() => window.__zc && window.__zc.snapshot()), 5_000, 'snapshot');
      applySnapshot(s);
      return s;
    } catch (e) {
      log(`snapshot failed: ${e.message.split('\n')[0]}`);
      return null;
    }
  };

  const first = await snap();
  if (!first || !first.ready) return harnessFail('harness page did not initialise');
  if (first.setupError) return harnessFail(first.setupError);
  vlog(`${PLAYER.label} ${first.playerVersion} loading ${opts.url}`);

  // Phase 1: wait for playback to start (bounded).
  const startDeadline = Date.now() + START_TIMEOUT_MS;
  let fatalAt = null;
  let s = first;
  while (!(s && s.started)) {
    if (Date.now() > startDeadline) {
      log(`playback did not start within ${START_TIMEOUT_MS / 1000}s`);
      return finish();
    }
    if (s && s.fatalErrors > 0) {
      fatalAt ??= Date.now();
      if (Date.now() - fatalAt > FATAL_GRACE_MS) {
        log(`fatal ${PLAYER.label} error before playback started`);
        return finish();
      }
    }
    await sleep(POLL_MS / 2);
    s = (await snap()) ?? s;
  }
  log(`playback started after ${s.startupMs} ms; watching for ${opts.seconds}s`);

  // Phase 2: watch for --seconds.
  const watchEnd = Date.now() + opts.seconds * 1000;
  fatalAt = null;
  let traced = 0;
  while (Date.now() < watchEnd) {
    await sleep(Math.min(POLL_MS, Math.max(0, watchEnd - Date.now())));
    s = (await snap()) ?? s;
    if (opts.verbose && s && Date.now() - traced >= 1000) {
      traced = Date.now();
      vlog(`currentTime ${s.currentTime} latency ${s.lastLatency} bufferAhead ${s.bufferAhead} ` +
        `rate ${Math.round(s.playbackRate * 1000) / 1000} readyState ${s.readyState} stalls ${s.stalls}`);
    }
    if (s && s.fatalErrors > 0) {
      fatalAt ??= Date.now();
      if (Date.now() - fatalAt > FATAL_GRACE_MS) {
        log(`fatal ${PLAYER.label} error during playback; stopping early`);
        break;
      }
    }
  }
  try {
    const fin = await withTimeout(page.evaluate(() => window.__zc.stop()), 5_000, 'final snapshot');
    applySnapshot(fin);
  } catch (e) {
    log(`final snapshot failed: ${e.message.split('\n')[0]}`);
  }
  return finish();
}

main().catch((e) => harnessFail(e && e.stack ? e.stack : String(e)));
