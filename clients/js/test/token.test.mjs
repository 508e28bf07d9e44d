// Token refresh against a real Herald with no leeway and a short grace period:
// the client refreshes short-lived tokens in-band before they expire, answers
// the server's `token_expired` warning in time, and asks `getToken()` again at
// each reconnect.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { makeClient, mintToken, nextEvent, rest, sleep, startServer } from './helpers.mjs';

let server;
const clients = [];
before(async () => {
  server = await startServer({ HERALD_JWT_LEEWAY_SECS: '0', HERALD_TOKEN_GRACE_MS: '1000', HERALD_CONNECT_RATE_PER_USER: '0' });
});
after(async () => {
  for (const c of clients) c.close();
  await server?.stop();
});

function shortLived(user, ttlSec, options = {}) {
  const calls = { n: 0 };
  const client = makeClient(server, user, {
    getToken: () => {
      calls.n += 1;
      return mintToken(user, { ttlSec });
    },
    ...options,
  });
  clients.push(client);
  return { client, calls };
}

test('short-lived tokens are refreshed in-band before they expire: the session stays open', async () => {
  // Arrange: tokens live 2 s; without a refresh the server closes with 4001 about 3 s in
  const { client, calls } = shortLived('t-alice', 2);
  const refreshed = [];
  client.on('token_refreshed', (d) => refreshed.push(d));
  const drops = [];
  client.on('disconnected', (d) => drops.push(d));
  const errors = [];
  client.on('error', (e) => errors.push(e.code));
  await client.connect();
  const session = client.sessionId;

  // Act
  await sleep(4500);

  // Assert
  assert.deepEqual(drops, [], 'never disconnected');
  assert.deepEqual(errors, [], 'never warned that the token expired');
  assert.equal(client.sessionId, session);
  assert.ok(refreshed.length >= 3, `refreshed ${refreshed.length} times`);
  assert.ok(calls.n >= 4, `getToken called ${calls.n} times`);
  assert.ok(Date.parse(refreshed.at(-1).expiresAt) > Date.now());
  await client.join('public:still-open');
});

test("the server's token_expired warning is answered with auth within the grace period", async () => {
  // Arrange: a refresh margin so negative that the client never refreshes ahead of time
  const { client } = shortLived('t-bob', 1, { refreshBeforeMs: -3600_000 });
  const drops = [];
  client.on('disconnected', (d) => drops.push(d));
  const warned = nextEvent(client, 'error', (e) => e.code === 'token_expired', 5000);
  const refreshed = nextEvent(client, 'token_refreshed', () => true, 5000);
  await client.connect();
  const session = client.sessionId;

  // Act
  await warned;
  await refreshed;
  await sleep(1500); // past the grace period

  // Assert
  assert.deepEqual(drops, []);
  assert.equal(client.sessionId, session);
});

test('every reconnect asks getToken() for a token', async () => {
  const { client, calls } = shortLived('t-carol', 3600);
  await client.connect();
  const before = calls.n;
  const back = nextEvent(client, 'sync');

  await rest(server, 'POST', '/v1/admin/users/t-carol/disconnect', mintToken('root', { roles: ['admin'] }));
  await back;

  assert.equal(calls.n, before + 1);
});

test('a token the server refuses at reconnect is retried with backoff until getToken() gives a good one', async () => {
  // Arrange: the second token (the first reconnect) is expired
  let n = 0;
  const client = makeClient(server, 't-dave', {
    getToken: () => mintToken('t-dave', { ttlSec: (n += 1) === 2 ? -60 : 3600 }),
  });
  clients.push(client);
  await client.connect();
  const drops = [];
  client.on('disconnected', (d) => drops.push(d));
  const back = nextEvent(client, 'sync');

  // Act
  await rest(server, 'POST', '/v1/admin/users/t-dave/disconnect', mintToken('root', { roles: ['admin'] }));
  await back;

  // Assert: the admin close, then the refused handshake, then success with the third token
  assert.equal(drops.length, 2);
  assert.equal(drops[0].code, 4000);
  assert.equal(n, 3);
});

test('a failing getToken() during a session is reported and retried; the session survives once it recovers', async () => {
  // Arrange: tokens live 6 s; the first refresh (half-way, 2.5-3 s in) fails, the retry 1 s later works
  let n = 0;
  const client = makeClient(server, 't-erin', {
    getToken: () => {
      n += 1;
      if (n === 2) throw new Error('identity provider down');
      return mintToken('t-erin', { ttlSec: 6 });
    },
  });
  clients.push(client);
  const failures = [];
  client.on('error', (e) => failures.push(e.code));
  const drops = [];
  client.on('disconnected', (d) => drops.push(d));
  await client.connect();
  const refreshed = nextEvent(client, 'token_refreshed', () => true, 8000);

  // Act
  await refreshed;

  // Assert: one reported failure, then a refresh on the same session, before the token expired
  assert.deepEqual(failures, ['token_refresh_failed']);
  assert.equal(n, 3);
  assert.deepEqual(drops, []);
});
