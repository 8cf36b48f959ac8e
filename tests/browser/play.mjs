#!/usr/bin/env node
// Real-browser LL-HLS playback harness for zerocast.
//
//   node tests/browser/play.mjs --url http://127.0.0.1:PORT/live/NAME/index.m3u8 --seconds 20
//
// Serves a tiny page (hls.js from node_modules) on a free loopback port, plays the
// URL in headless Debian Chromium via playwright-core, watches playback and prints
// ONE line of JSON on stdout. Exit 0 = the harness ran (the caller judges the JSON),
// exit 2 = harness failure (message on stderr, nothing on stdout).
// See README.md in this folder for the meaning of every field.

import http from 'node:http';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const HLS_JS = path.join(HERE, 'node_modules', 'hls.js', 'dist', 'hls.min.js');

const START_TIMEOUT_MS = 15_000; // playback must start within this
const POLL_MS = 500; // how often node pulls a snapshot from the page
const FATAL_GRACE_MS = 1_000; // after a fatal hls.js error, collect a bit more then stop

// ---------------------------------------------------------------- arguments
function usage(msg) {
  if (msg) process.stderr.write(`play.mjs: ${msg}\n`);
  process.stderr.write(
    'usage: node play.mjs --url URL [--seconds N] [--hard-timeout S] [--chromium PATH] ' +
      "[--hls-config '{json}'] [--chromium-arg ARG]... [--verbose]\n",
  );
  process.exit(2);
}

function parseArgs(argv) {
  const o = {
    url: null,
    seconds: 20,
    chromium: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
    hlsConfig: {},
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
      case '--hls-config':
        try { o.hlsConfig = JSON.parse(val()); } catch (e) { usage(`--hls-config is not JSON: ${e.message}`); }
        break;
      case '--hard-timeout': o.hardTimeout = Number(val()); break;
      case '--chromium-arg': o.chromiumArgs.push(val()); break;
      case '--verbose': case '-v': o.verbose = true; break;
      case '--help': case '-h': usage(); break;
      default: usage(`unknown argument ${a}`);
    }
  }
  if (!o.url) usage('--url is required');
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
// The page keeps all state in window.__zc and exposes __zc.snapshot(), which
// returns the summary in the final JSON shape (so a late/hung page still gives
// the last polled numbers).
const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>zerocast play</title>
<style>html,body{margin:0;background:#000}video{width:640px;height:360px}</style>
</head><body>
<video id="v" muted autoplay playsinline></video>
<script src="/hls.min.js"></script>
<script>
(function () {
  const params = JSON.parse(decodeURIComponent(location.hash.slice(1)));
  const video = document.getElementById('v');
  const now = () => performance.now() / 1000;
  const S = window.__zc = {
    ready: false, setupError: null, hlsVersion: null,
    started: false, startedAt: null, startupMs: null,
    playedSeconds: 0, lastCT: null, lastWall: null,
    stalls: 0, stalled: false, stallStart: 0, stallCT: 0, stallSeconds: 0,
    waitingEvents: 0, seekWaits: 0, bufferStalledErrors: 0, seeks: 0, lateSeeks: 0,
    errors: [], errorCount: 0, fatalErrors: 0,
    latency: [], targetLatency: null, maxPlaybackRate: 1,
    partsUsed: false, canBlockReload: false, partTarget: null, partCount: 0,
    levelLoads: 0, fragsLoaded: 0, partsLoaded: 0,
    protocols: {},
    stopped: false,
  };
  // Which protocol carried each request to the stream's origin (h2, h3, http/1.1), from
  // Resource Timing; entries are counted and cleared as they come so the buffer never fills.
  const streamOrigin = new URL(params.url).origin;
  function countProtocols() {
    const entries = performance.getEntriesByType('resource');
    for (const e of entries) {
      if (!e.name.startsWith(streamOrigin)) continue;
      const p = e.nextHopProtocol || '(hidden)';
      S.protocols[p] = (S.protocols[p] || 0) + 1;
    }
    performance.clearResourceTimings();
  }
  performance.setResourceTimingBufferSize(10000);
  const t0 = now();
  const STARTUP_WINDOW_S = 2;

  function beginStall(why) {
    if (!S.started || S.stopped || S.stalled) return;
    S.stalls++; S.stalled = true; S.stallStart = now(); S.stallCT = video.currentTime;
    console.warn('[zc] stall #' + S.stalls + ' (' + why + ') at currentTime=' + video.currentTime.toFixed(3));
  }
  function endStall() {
    if (!S.stalled) return;
    S.stalled = false; S.stallSeconds += now() - S.stallStart;
  }

  // Sample playback progression, latency etc. Played time is the sum of forward
  // currentTime steps that are plausible for the wall time elapsed (seeks excluded).
  function sample() {
    if (S.stopped) return;
    const w = now(), ct = video.currentTime;
    if (S.started) {
      if (S.lastCT !== null) {
        const d = ct - S.lastCT, dw = w - S.lastWall;
        if (d > 0 && d <= dw * 2.1 + 0.05) S.playedSeconds += d;
        // fallback stall end: clear progress past where the stall began
        if (S.stalled && !video.paused && ct > S.stallCT + 0.25) endStall();
      }
      S.lastCT = ct; S.lastWall = w;
      if (hls) {
        const l = hls.latency;
        if (typeof l === 'number' && l > 0 && isFinite(l)) S.latency.push(l);
        const tl = hls.targetLatency;
        if (typeof tl === 'number' && isFinite(tl)) S.targetLatency = tl;
      }
      if (video.playbackRate > S.maxPlaybackRate) S.maxPlaybackRate = video.playbackRate;
    }
  }

  function stats(a) {
    if (!a.length) return null;
    const s = a.slice().sort((x, y) => x - y);
    const r = (x) => Math.round(x * 1000) / 1000;
    const m = s.length >> 1;
    const med = s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
    return { min: r(s[0]), median: r(med), max: r(s[s.length - 1]), last: r(a[a.length - 1]), samples: a.length };
  }

  S.snapshot = function () {
    sample();
    countProtocols();
    const q = video.getVideoPlaybackQuality ? video.getVideoPlaybackQuality() : null;
    const r = (x) => (x === null || x === undefined ? null : Math.round(x * 1000) / 1000);
    return {
      ready: S.ready, setupError: S.setupError, hlsVersion: S.hlsVersion,
      started: S.started, startupMs: S.startupMs,
      playedSeconds: r(S.playedSeconds),
      stalls: S.stalls, stallSeconds: r(S.stallSeconds + (S.stalled ? now() - S.stallStart : 0)),
      waitingEvents: S.waitingEvents, seekWaits: S.seekWaits, bufferStalledErrors: S.bufferStalledErrors,
      seeks: S.seeks, lateSeeks: S.lateSeeks,
      errors: S.errors, errorCount: S.errorCount, fatalErrors: S.fatalErrors,
      latency: stats(S.latency), targetLatency: r(S.targetLatency),
      lowLatencyMode: hls ? !!hls.lowLatencyMode : null,
      partsUsed: S.partsUsed, canBlockReload: S.canBlockReload, partTarget: S.partTarget, partCount: S.partCount,
      levelLoads: S.levelLoads, fragsLoaded: S.fragsLoaded, partsLoaded: S.partsLoaded,
      droppedFrames: q ? q.droppedVideoFrames : null, totalFrames: q ? q.totalVideoFrames : null,
      maxPlaybackRate: S.maxPlaybackRate,
      protocols: S.protocols,
      currentTime: r(video.currentTime), paused: video.paused, readyState: video.readyState,
      bufferAhead: (function () {
        const b = video.buffered, ct = video.currentTime;
        for (let i = 0; i < b.length; i++) if (b.start(i) <= ct + 0.1 && ct <= b.end(i)) return r(b.end(i) - ct);
        return 0;
      })(),
    };
  };
  S.stop = function () { const s = S.snapshot(); S.stopped = true; return s; };

  let hls = null;
  try {
    if (typeof Hls === 'undefined') throw new Error('hls.js did not load (Hls is undefined)');
    S.hlsVersion = Hls.version;
    if (!Hls.isSupported()) throw new Error('Hls.isSupported() is false (no MediaSource / codec support in this browser)');
    const config = Object.assign({
      lowLatencyMode: true,
      backBufferLength: 30,   // keep memory bounded; defaults otherwise
      debug: !!params.debug,
    }, params.hlsConfig || {});
    hls = window.hls = new Hls(config);
  } catch (e) {
    S.setupError = String(e && e.message || e);
    S.ready = true;
    return;
  }

  video.addEventListener('playing', () => {
    if (!S.started) {
      S.started = true; S.startedAt = now(); S.startupMs = Math.round((S.startedAt - t0) * 1000);
      S.lastCT = video.currentTime; S.lastWall = now();
      console.log('[zc] playback started at currentTime=' + video.currentTime.toFixed(3));
    }
    endStall();
  });
  // A 'waiting' while a seek is in progress is the seek loading its target, not the buffer
  // running dry: it is counted in seekWaits, and the seek itself in seeks (or lateSeeks when
  // it comes after the start-up window, where hls.js may still move the playhead onto the
  // first buffered part).
  video.addEventListener('waiting', () => {
    if (!S.started || S.stopped) return;
    S.waitingEvents++;
    if (video.seeking) { S.seekWaits++; return; }
    beginStall('waiting');
  });
  video.addEventListener('seeking', () => {
    if (!S.started || S.stopped) return;
    S.seeks++;
    if (now() - S.startedAt > STARTUP_WINDOW_S) S.lateSeeks++;
  });
  video.addEventListener('error', () => {
    const e = video.error;
    console.error('[zc] <video> error ' + (e ? e.code + ' ' + e.message : '?'));
  });

  hls.on(Hls.Events.ERROR, (ev, d) => {
    if (S.stopped) return;
    S.errorCount++;
    if (d.fatal) S.fatalErrors++;
    if (d.details === Hls.ErrorDetails.BUFFER_STALLED_ERROR) { S.bufferStalledErrors++; beginStall('bufferStalledError'); }
    if (S.errors.length < 100) {
      const e = { type: d.type, details: d.details, fatal: !!d.fatal, t: Math.round((now() - t0) * 1000) / 1000 };
      if (d.response && d.response.code !== undefined) e.httpStatus = d.response.code;
      const u = (d.context && d.context.url) || (d.frag && d.frag.url) || d.url;
      if (u) e.url = String(u);
      if (d.error && d.error.message) e.message = String(d.error.message).slice(0, 300);
      S.errors.push(e);
    }
    (d.fatal ? console.error : console.warn)('[zc] hls.js ERROR ' + d.type + '/' + d.details + (d.fatal ? ' FATAL' : '') +
      (d.error && d.error.message ? ': ' + d.error.message : ''));
  });
  const onDetails = (ev, d) => {
    const det = d.details;
    if (!det) return;
    S.levelLoads++;
    const n = det.partList ? det.partList.length : 0;
    S.partCount = n;
    if (n > 0) S.partsUsed = true;
    if (det.canBlockReload) S.canBlockReload = true;
    if (det.partTarget) S.partTarget = det.partTarget;
  };
  hls.on(Hls.Events.LEVEL_LOADED, onDetails);
  if (Hls.Events.STALL_RESOLVED) hls.on(Hls.Events.STALL_RESOLVED, () => endStall());
  hls.on(Hls.Events.FRAG_LOADED, (ev, d) => { if (d.part) S.partsLoaded++; else S.fragsLoaded++; });
  hls.on(Hls.Events.MANIFEST_PARSED, () => {
    const p = video.play();
    if (p && p.catch) p.catch((e) => console.error('[zc] video.play() rejected: ' + e));
  });

  setInterval(sample, 250);
  hls.attachMedia(video);
  hls.loadSource(params.url);
  S.ready = true;
})();
</script></body></html>`;

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
  const lat = s.latency || null;
  const out = {
    ok: false,
    started: !!s.started,
    playedSeconds: s.playedSeconds ?? 0,
    stalls: s.stalls ?? 0,
    lateSeeks: s.lateSeeks ?? 0,
    errors: s.errors ?? [],
    fatalErrors: s.fatalErrors ?? 0,
    latency: lat
      ? { min: lat.min, median: lat.median, max: lat.max, last: lat.last }
      : { min: null, median: null, max: null, last: null },
    targetLatency: s.targetLatency ?? null,
    partsUsed: !!s.partsUsed,
    canBlockReload: !!s.canBlockReload,
    droppedFrames: s.droppedFrames ?? 0,
    totalFrames: s.totalFrames ?? 0,
    // ---- extras (diagnostics; the fields above are the contract)
    seconds: opts.seconds,
    url: opts.url,
    hlsVersion: s.hlsVersion ?? null,
    lowLatencyMode: s.lowLatencyMode ?? null,
    startupMs: s.startupMs ?? null,
    stallSeconds: s.stallSeconds ?? 0,
    waitingEvents: s.waitingEvents ?? 0,
    seekWaits: s.seekWaits ?? 0,
    bufferStalledErrors: s.bufferStalledErrors ?? 0,
    seeks: s.seeks ?? 0,
    errorCount: s.errorCount ?? 0,
    latencySamples: lat ? lat.samples : 0,
    partTarget: s.partTarget ?? null,
    partCount: s.partCount ?? 0,
    levelLoads: s.levelLoads ?? 0,
    fragsLoaded: s.fragsLoaded ?? 0,
    partsLoaded: s.partsLoaded ?? 0,
    maxPlaybackRate: s.maxPlaybackRate ?? 1,
    protocols: s.protocols ?? {},
    hardTimeout: hardTimedOut,
    wallSeconds: Math.round((Date.now() - t0) / 100) / 10,
  };
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
  if (!fs.existsSync(HLS_JS)) {
    return harnessFail(`${HLS_JS} not found: run \`npm ci\` in ${HERE}`);
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

  // Tiny static server: / -> page, /hls.min.js -> node_modules copy.
  server = http.createServer((req, res) => {
    const p = new URL(req.url, 'http://x').pathname;
    if (p === '/' || p === '/index.html') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
      res.end(PAGE);
    } else if (p === '/hls.min.js') {
      res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8' });
      fs.createReadStream(HLS_JS).pipe(res);
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

  const params = { url: opts.url, hlsConfig: opts.hlsConfig, debug: false };
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
  vlog(`hls.js ${first.hlsVersion} loading ${opts.url}`);

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
        log('fatal hls.js error before playback started');
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
  while (Date.now() < watchEnd) {
    await sleep(Math.min(POLL_MS, Math.max(0, watchEnd - Date.now())));
    s = (await snap()) ?? s;
    if (s && s.fatalErrors > 0) {
      fatalAt ??= Date.now();
      if (Date.now() - fatalAt > FATAL_GRACE_MS) {
        log('fatal hls.js error during playback; stopping early');
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
