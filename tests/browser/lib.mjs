// What the browser harnesses share: failing with exit code 2, `--key value` arguments, a
// private TMPDIR, and headless Chromium through playwright-core.

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
