// Harness of the browser tests: a real Herald server (HERALD_DEV_LOGIN on, temporary
// SQLite database, port 0), headless Chromium driven by puppeteer-core (Debian's
// /usr/bin/chromium, or CHROMIUM_PATH), HS256 tokens minted with node:crypto, waiting
// helpers with deadlines, and screenshots written to artifacts/.

import { spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import puppeteer from 'puppeteer-core';

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = resolve(here, '../..');

export const SECRET = 'herald-browser-tests-secret-0123456789';
export const ARTIFACTS = join(here, 'artifacts');

/** Path of the server binary the tests run. */
export function heraldBin() {
  if (process.env.HERALD_BIN) return process.env.HERALD_BIN;
  const target = process.env.CARGO_TARGET_DIR ?? join(repoRoot, 'target');
  return join(target, 'debug', 'herald');
}

/** Starts Herald on a free port with a fresh database; `env` adds HERALD_* settings. */
export async function startServer(env = {}) {
  const bin = heraldBin();
  if (!existsSync(bin)) throw new Error(`no Herald binary at ${bin}: run \`cargo build --bin herald\` or set HERALD_BIN`);
  const dir = mkdtempSync(join(tmpdir(), 'herald-browser-'));
  const child = spawn(bin, [], {
    env: {
      PATH: process.env.PATH,
      RUST_LOG: 'info',
      HERALD_BIND: '127.0.0.1:0',
      HERALD_DATABASE_URL: `sqlite://${join(dir, 'herald.db')}`,
      HERALD_JWT_SECRET: SECRET,
      HERALD_DEV_LOGIN: 'true',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  const port = await new Promise((resolvePort, reject) => {
    const timer = setTimeout(() => reject(new Error(`Herald did not start within 20 s:\n${log}`)), 20000);
    const onData = (chunk) => {
      log += chunk;
      const m = /herald listening on \S+:(\d+)/.exec(log);
      if (m) {
        clearTimeout(timer);
        resolvePort(Number(m[1]));
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`Herald exited with ${code} before listening:\n${log}`));
    });
  });
  const exited = new Promise((r) => child.on('exit', r));
  return {
    http: `http://127.0.0.1:${port}`,
    logs: () => log,
    async stop() {
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 10000);
      await exited;
      clearTimeout(t);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** An HS256 token for `sub`, valid `ttlSecs` (negative: already expired). */
export function mintToken(sub, { ttlSecs = 3600, roles } = {}) {
  const b64 = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const now = Math.floor(Date.now() / 1000);
  const unsigned = `${b64({ alg: "HS256", typ: "JWT" })}.${b64({ sub, iat: now, exp: now + ttlSecs, ...(roles ? { roles } : {}) })}`;
  return `${unsigned}.${createHmac('sha256', SECRET).update(unsigned).digest('base64url')}`;
}

/** Headless Chromium (Debian's package unless CHROMIUM_PATH says otherwise). */
export function launchBrowser() {
  return puppeteer.launch({
    executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-dev-shm-usage'],
  });
}

/**
 * A page in its own browser context (its own sessionStorage), at a phone-sized or desktop
 * viewport, that records console errors and CSP violations.
 */
export async function openPage(browser, http, { width = 1200, height = 800 } = {}) {
  const context = await browser.createBrowserContext();
  const page = await context.newPage();
  await page.setViewport({ width, height });
  const problems = [];
  page.on('console', (msg) => { if (msg.type() === 'error') problems.push(msg.text()); });
  page.on('pageerror', (err) => problems.push(String(err)));
  await page.goto(`${http}/`, { waitUntil: 'load' });
  return { page, context, problems };
}

/** Signs in with the dev login form as `user` and waits for the chat. */
export async function devSignIn(page, user) {
  await page.waitForSelector('#name-form:not([hidden])');
  await page.type('#name-input', user);
  await page.click('#name-form button[type=submit]');
  await page.waitForSelector('#chat:not([hidden])');
  await page.waitForFunction((u) => document.getElementById('me').textContent === u, { timeout: 10000 }, user);
}

/** Joins (or creates) the public room `name` from the page's form and waits until the join is acked. */
export async function joinRoom(page, name) {
  await page.type('#join-input', name);
  await page.click('#join-form button[type=submit]');
  // Joined: the title shows the room, the form was cleared, and the join ack's snapshot
  // lists the user themself.
  await page.waitForFunction((n) => document.getElementById('room-title').textContent === `# ${n}`
    && document.getElementById('join-input').value === ''
    && document.querySelector(`#member-list li[data-user="${document.getElementById('me').textContent}"]`) !== null,
  { timeout: 10000 }, name);
}

/** Waits until `fn` (run in the page) returns something truthy; `what` names it in the failure. */
export async function waitInPage(page, what, fn, ...args) {
  try {
    return await page.waitForFunction(fn, { timeout: 10000 }, ...args);
  } catch (err) {
    throw new Error(`timed out waiting for ${what}: ${err.message}`);
  }
}

/** Writes a screenshot of `page` to artifacts/<name>.png. */
export async function screenshot(page, name) {
  mkdirSync(ARTIFACTS, { recursive: true });
  const path = join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}
