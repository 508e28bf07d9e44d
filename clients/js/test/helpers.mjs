// Test harness: a real Herald server per test file, tokens, REST calls, clients.
//
// Owns the server process (the binary from HERALD_BIN, default the debug build
// under CARGO_TARGET_DIR or the repository's target/), its temporary SQLite
// database, HS256 tokens minted with node:crypto, and waiting helpers with
// deadlines, so a test fails instead of hanging.

import { spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { HeraldClient } from '../herald-client.js';

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = resolve(here, '../../..');

export const SECRET = 'herald-js-client-tests-secret-0123456789';

/** Path of the server binary the tests run. */
export function heraldBin() {
  if (process.env.HERALD_BIN) return process.env.HERALD_BIN;
  const target = process.env.CARGO_TARGET_DIR ?? join(repoRoot, 'target');
  return join(target, 'debug', 'herald');
}

/**
 * Start Herald on a free port with a fresh database. `env` adds HERALD_* settings.
 * @returns {Promise<{port: number, url: string, http: string, stop: () => Promise<void>, logs: () => string}>}
 */
export async function startServer(env = {}) {
  const bin = heraldBin();
  if (!existsSync(bin)) throw new Error(`no Herald binary at ${bin}: run \`cargo build --bin herald\` or set HERALD_BIN`);
  const dir = mkdtempSync(join(tmpdir(), 'herald-js-'));
  const child = spawn(bin, [], {
    env: {
      PATH: process.env.PATH,
      RUST_LOG: 'info',
      HERALD_BIND: '127.0.0.1:0',
      HERALD_DATABASE_URL: `sqlite://${join(dir, 'herald.db')}`,
      HERALD_JWT_SECRET: SECRET,
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
    port,
    url: `ws://127.0.0.1:${port}/v1/ws`,
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

const b64url = (v) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');

/** An HS256 JWT for `user`, valid `ttlSec` seconds, with optional roles. */
export function mintToken(user, { ttlSec = 3600, roles } = {}) {
  const now = Math.floor(Date.now() / 1000);
  const claims = { sub: user, exp: now + ttlSec, iat: now };
  if (roles) claims.roles = roles;
  const head = `${b64url({ alg: 'HS256', typ: 'JWT' })}.${b64url(claims)}`;
  return `${head}.${createHmac('sha256', SECRET).update(head).digest('base64url')}`;
}

/** A REST call with a bearer token; returns {status, body}. */
export async function rest(server, method, path, token, body) {
  const res = await fetch(server.http + path, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}

/** A HeraldClient for `user` against `server` (the `ws` package as WebSocket). Not connected yet. */
export function makeClient(server, user, options = {}) {
  return new HeraldClient({
    url: server.url,
    WebSocket,
    getToken: () => mintToken(user),
    backoff: { initialMs: 50, maxMs: 500 },
    ...options,
  });
}

/** Resolve once `predicate()` is true (polled every 10 ms), or fail after `timeoutMs`. */
export async function waitFor(predicate, what, timeoutMs = 10000) {
  const start = Date.now();
  while (!predicate()) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** The next `type` event of `client` whose data passes `filter`, or fail after `timeoutMs`. */
export function nextEvent(client, type, filter = () => true, timeoutMs = 10000) {
  return new Promise((resolveEvent, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`timed out after ${timeoutMs} ms waiting for a ${type} event`));
    }, timeoutMs);
    const off = client.on(type, (data) => {
      if (!filter(data)) return;
      clearTimeout(timer);
      off();
      resolveEvent(data);
    });
  });
}

/** Record every event of `types` on `client` into arrays. */
export function record(client, types) {
  const seen = Object.fromEntries(types.map((t) => [t, []]));
  for (const t of types) client.on(t, (d) => seen[t].push(d));
  return seen;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Every stored message of `room`, oldest first, read over REST as an admin. */
export async function storedMessages(server, room) {
  const admin = mintToken('root', { roles: ['admin'] });
  const all = [];
  let after = 0;
  for (;;) {
    const res = await rest(server, 'GET', `/v1/rooms/${room}/messages?after_seq=${after}&limit=100`, admin);
    if (res.status !== 200) throw new Error(`history of ${room}: ${res.status} ${JSON.stringify(res.body)}`);
    all.push(...res.body.messages);
    if (!res.body.has_more) return all;
    after = res.body.messages.at(-1).seq;
  }
}
