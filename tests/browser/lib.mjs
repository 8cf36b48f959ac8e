// What the browser harnesses share: failing with exit code 2, `--key value` arguments, a
// private TMPDIR, headless Chromium through playwright-core, the watch page's playback
// counters, and a second chat client over the social API's WebSocket.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));

// A `fail(msg)` for the harness `name`: the message on stderr, exit code 2.
export function failWith(name) {
  return (msg) => {
    process.stderr.write(`${name}: ${msg}\n`);
    process.exit(2);
  };
}

// `--key value` pairs of `argv` over `defaults`; every key of `required` must be set.
export function parseArgs(argv, defaults, required, fail) {
  const o = { chromium: process.env.CHROMIUM_PATH || '/usr/bin/chromium', ...defaults };
  for (let i = 0; i < argv.length; i += 2) {
    if (argv[i + 1] === undefined) fail(`${argv[i]} needs a value`);
    o[argv[i].replace(/^--/, '')] = argv[i + 1];
  }
  for (const k of required) if (!o[k]) fail(`--${k} is required`);
  return o;
}

// Points TMPDIR (Chromium's profile and caches) at a fresh directory removed on exit.
export function privateTmp(prefix) {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  process.env.TMPDIR = tmp;
  process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));
}

// Headless Chromium at `executablePath` with `args`, or `fail` saying why not.
export async function launchChromium(executablePath, args, fail) {
  let chromium;
  try {
    ({ chromium } = await import('playwright-core'));
  } catch (e) {
    fail(`cannot load playwright-core (${e.message}): run \`npm ci\` in ${HERE}`);
  }
  try {
    return await chromium.launch({ executablePath, headless: true, args, timeout: 30_000 });
  } catch (e) {
    fail(`chromium could not start: ${e.message.split('\n')[0]}`);
  }
}

// Chromium's flags for the page harnesses: no sandbox (root), no GPU, autoplay without a
// gesture, and none of the background connections this machine's closed network refuses.
export const CHROMIUM_ARGS = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--autoplay-policy=no-user-gesture-required',
  '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// An init script for a watch page (`context.addInitScript(watchCounters, token)`): signs in
// with `token` and keeps the test's own counters in `window.__t`, from the first script on:
// when the <video> first played, 'waiting' events after that (a stall), CSP violations.
export function watchCounters(token) {
  localStorage.setItem('zerocast.token', token);
  window.__t = { playing: null, waiting: 0, started: false, csp: 0 };
  document.addEventListener('securitypolicyviolation', () => { window.__t.csp += 1; });
  document.addEventListener('DOMContentLoaded', () => {
    const v = document.querySelector('video');
    if (!v) return;
    v.addEventListener('playing', () => {
      if (window.__t.playing === null) window.__t.playing = performance.now();
      window.__t.started = true;
    });
    v.addEventListener('waiting', () => { if (window.__t.started && !v.seeking) window.__t.waiting += 1; });
  });
}

// The page's and the test's playback counters so far (pages set up with `watchCounters`).
export function playbackCounters(page) {
  return page.evaluate(() => ({
    pageStalls: window.zerocast.stats.stalls,
    waitingEvents: window.__t.waiting,
    currentTime: document.querySelector('video').currentTime,
    cspViolations: window.__t.csp,
  }));
}

// The user id (`sub`) of a token.
export function sub(token) {
  const p = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
  return JSON.parse(Buffer.from(p, 'base64').toString()).sub;
}

// A chat client: a WebSocket on the social API at `api` with `token`, subscribed to `room`;
// resolves once subscribed. `received` lists the chat messages it got, `errors` its error frames.
export function chatClient(api, token, room) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${api.replace(/^http/, 'ws')}/api/v1/ws?access_token=${encodeURIComponent(token)}`);
    const c = { ws, received: [], errors: [], waiters: [] };
    ws.onopen = () => ws.send(JSON.stringify({ type: 'subscribe', room }));
    ws.onerror = () => reject(new Error('second client: WebSocket error'));
    ws.onmessage = (ev) => {
      const f = JSON.parse(ev.data);
      if (f.type === 'subscribed') resolve(c);
      if (f.type === 'error') {
        c.errors.push(f);
        process.stderr.write(`second client got an error frame: ${ev.data}\n`);
      }
      if (f.type === 'chat') {
        c.received.push({ at: Date.now(), content: f.message.content });
        c.waiters = c.waiters.filter((w) => !w(f.message.content));
      }
    };
  });
}

// Milliseconds until chat client `c` receives `content` (0 if it already has), or null after `ms`.
export function waitReceived(c, content, ms) {
  const t0 = Date.now();
  return new Promise((resolve) => {
    const hit = c.received.find((m) => m.content === content);
    if (hit) return resolve(hit.at - t0);
    const timer = setTimeout(() => resolve(null), ms);
    c.waiters.push((got) => {
      if (got !== content) return false;
      clearTimeout(timer);
      resolve(Date.now() - t0);
      return true;
    });
  });
}
