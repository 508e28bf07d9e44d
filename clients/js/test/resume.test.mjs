// Reconnects against a real Herald: the outbox re-sends unacked messages with
// the same client_msg_id (stored once), the resume positions continue every
// room's stream with no gap and no duplicate while messages flow, and a silent
// link is detected by the heartbeat deadline.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { makeClient, mintToken, nextEvent, rest, startServer, storedMessages, waitFor } from './helpers.mjs';
import { startProxy } from './proxy.mjs';

let server;
let proxy;
const clients = [];
const admin = mintToken('root', { roles: ['admin'] });

before(async () => {
  // No per-user connect rate: the tests below reconnect on purpose, often.
  server = await startServer({ HERALD_CONNECT_RATE_PER_USER: '0' });
  proxy = await startProxy(server.port);
});
after(async () => {
  for (const c of clients) c.close();
  await proxy?.stop();
  await server?.stop();
});

async function connected(user, options) {
  const client = makeClient(server, user, options);
  clients.push(client);
  await client.connect();
  return client;
}

const disconnect = (user) => rest(server, 'POST', `/v1/admin/users/${user}/disconnect`, admin);

/** Assert `seqs` is exactly first..last, consecutive, each once. */
function assertConsecutive(seqs, first, last, what) {
  const expected = Array.from({ length: last - first + 1 }, (_, i) => first + i);
  assert.deepEqual(seqs, expected, `${what}: expected seqs ${first}..${last} once each, in order`);
}

test('sends made while disconnected wait in the outbox and are stored once after the reconnect', async () => {
  // Arrange
  const alice = await connected('o-alice');
  const bob = await connected('o-bob');
  await alice.join('public:outbox');
  await bob.join('public:outbox');
  const bobSeqs = [];
  bob.on('message', (m) => m.room === 'public:outbox' && bobSeqs.push(m.seq));
  const down = nextEvent(alice, 'disconnected');

  // Act: the server drops alice; she sends while she is away
  assert.equal((await disconnect('o-alice')).status, 200);
  const closed = await down;
  const sends = Array.from({ length: 20 }, (_, i) => alice.send({ room: 'public:outbox', body: { text: `m${i}` } }));
  assert.equal(alice.outboxSize, 20);
  const acks = await Promise.all(sends);

  // Assert
  assert.equal(closed.code, 4000);
  assertConsecutive(acks.map((a) => a.seq), 1, 20, 'acks');
  await waitFor(() => bobSeqs.length === 20, 'bob to get 20 messages');
  assertConsecutive(bobSeqs, 1, 20, 'bob');
  const stored = await storedMessages(server, 'public:outbox');
  assert.equal(stored.length, 20);
  assert.equal(alice.outboxSize, 0);
});

test('a send whose ack was lost is re-sent with the same client_msg_id and stored once', async () => {
  // Arrange: alice goes through the proxy; bob watches the room directly
  const alice = await connected('l-alice', { url: proxy.url });
  const bob = await connected('l-bob');
  await alice.join('public:lost');
  await bob.join('public:lost');
  const bobGot = [];
  bob.on('message', (m) => m.room === 'public:lost' && bobGot.push(m));
  const bobSaw = nextEvent(bob, 'message', (m) => m.room === 'public:lost');

  // Act: the server stores the message, but its ack never reaches alice; then the link dies
  proxy.dropDownstream();
  const sent = alice.send({ room: 'public:lost', body: { text: 'once' }, clientMsgId: 'lost-ack-1' });
  await bobSaw; // stored and delivered
  proxy.cutAll();
  const ack = await sent;

  // Assert
  assert.equal(ack.duplicate, true, 'the retry is answered with the original ack');
  assert.equal(ack.seq, 1);
  const stored = await storedMessages(server, 'public:lost');
  assert.deepEqual(stored.map((m) => m.client_msg_id), ['lost-ack-1']);
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(bobGot.length, 1, 'bob saw the message once');
});

test('reconnects while messages flow lose nothing and duplicate nothing; seqs stay consecutive', async () => {
  // Arrange: bob sends a steady stream; alice both receives it and sends her own
  const room = 'public:flow';
  const alice = await connected('f-alice', { url: proxy.url });
  const bob = await connected('f-bob');
  await alice.join(room);
  await bob.join(room);
  const aliceSaw = [];
  alice.on('message', (m) => m.room === room && aliceSaw.push(m));
  let reconnects = 0; // syncs after the first one
  alice.on('sync', () => (reconnects += 1));
  const total = 300;
  const aliceSends = [];

  // Act: interleave sends with three kinds of drop: the admin route, a cut link, a client-side kill
  const bobSends = [];
  for (let i = 0; i < total; i += 1) {
    bobSends.push(bob.send({ room, body: { text: `b${i}` } }));
    if (i % 10 === 0) aliceSends.push(alice.send({ room, body: { text: `a${i}` } }));
    // Each drop hits a live connection (the previous reconnect has finished).
    if ([60, 140, 220].includes(i)) await waitFor(() => alice.state === 'ready', 'alice to be back');
    if (i === 60) await disconnect('f-alice');
    if (i === 140) proxy.cutAll();
    if (i === 220) alice.socket.terminate();
    if (i % 10 === 0) await new Promise((r) => setTimeout(r, 15));
  }
  const bobAcks = await Promise.all(bobSends);
  const aliceAcks = await Promise.all(aliceSends);

  // Assert: every message stored once, consecutive
  const stored = await storedMessages(server, room);
  const expectedTotal = total + aliceSends.length;
  assertConsecutive(stored.map((m) => m.seq), 1, expectedTotal, 'stored');
  assert.equal(new Set(stored.map((m) => m.client_msg_id)).size, expectedTotal, 'one row per client_msg_id');
  assert.equal(bobAcks.length + aliceAcks.length, expectedTotal);
  // Alice saw every message but her own, once each, in order
  const own = new Set(aliceAcks.map((a) => a.seq));
  await waitFor(() => aliceSaw.length === total, `alice to see ${total} messages (saw ${aliceSaw.length})`, 20000);
  const expectedSeqs = stored.map((m) => m.seq).filter((s) => !own.has(s));
  assert.deepEqual(aliceSaw.map((m) => m.seq), expectedSeqs);
  assert.equal(reconnects, 3, 'alice reconnected after each of the three drops');
  assert.equal(alice.positions[room], expectedTotal, 'her position covers her own acked messages too');
});

test('a client restarted with saved positions resumes after them', async () => {
  // Arrange: a first client reads part of a room, then goes away
  const room = 'public:saved';
  const bob = await connected('s-bob');
  await bob.join(room);
  const first = await connected('s-alice');
  await first.join(room);
  for (let i = 1; i <= 5; i += 1) await bob.send({ room, body: { text: `${i}` } });
  await waitFor(() => first.positions[room] === 5, 'the first client to hold seq 5');
  const saved = first.positions;
  first.close();
  for (let i = 6; i <= 8; i += 1) await bob.send({ room, body: { text: `${i}` } });

  // Act: a new client (a new page load) starts from the saved positions
  const second = makeClient(server, 's-alice', { positions: saved });
  clients.push(second);
  const seen = [];
  second.on('message', (m) => m.room === room && seen.push(m.seq));
  const sync = await second.connect();

  // Assert
  assert.equal(sync.rooms.find((r) => r.room === room).recovered, true);
  await waitFor(() => seen.length === 3, 'messages 6..8');
  assert.deepEqual(seen, [6, 7, 8]);
});

test('a silent link is detected by the heartbeat deadline and the client reconnects', async () => {
  // Arrange
  const alice = await connected('h-alice', { url: proxy.url, heartbeatIntervalMs: 100, heartbeatTimeoutMs: 400 });
  const bob = await connected('h-bob');
  await alice.join('public:hb');
  await bob.join('public:hb');
  const lost = nextEvent(alice, 'disconnected');
  const back = nextEvent(alice, 'sync', () => true, 5000);

  // Act: the link goes silent without closing
  const t0 = Date.now();
  proxy.blackhole();
  const event = await lost;
  const detectedAfter = Date.now() - t0;
  proxy.blackhole(false);
  await back;
  const got = nextEvent(alice, 'message', (m) => m.room === 'public:hb');
  await bob.send({ room: 'public:hb', body: { text: 'still there?' } });

  // Assert
  assert.match(event.reason, /heartbeat timeout/);
  assert.ok(detectedAfter >= 300 && detectedAfter < 2000, `detected after ${detectedAfter} ms`);
  assert.equal((await got).body.text, 'still there?');
});

test('reconnect() opens a new session at once and resumes where the old one stood', async () => {
  // Arrange
  const room = 'public:manual';
  const alice = await connected('m-alice');
  const bob = await connected('m-bob');
  await alice.join(room);
  await bob.join(room);
  const seqs = [];
  alice.on('message', (m) => m.room === room && seqs.push(m.seq));
  await bob.send({ room, body: { text: '1' } });
  await waitFor(() => seqs.length === 1, 'message 1');
  const before = alice.sessionId;
  const back = nextEvent(alice, 'sync');

  // Act: messages sent around the reconnect
  alice.reconnect();
  const sends = [bob.send({ room, body: { text: '2' } }), bob.send({ room, body: { text: '3' } })];
  await back;
  await Promise.all(sends);

  // Assert
  assert.notEqual(alice.sessionId, before);
  await waitFor(() => seqs.length === 3, 'messages 2 and 3');
  assert.deepEqual(seqs, [1, 2, 3]);
});

test('edits, deletes and reactions made while away arrive after the reconnect, once each, in change order', async () => {
  // Arrange: bob holds the room and one live change
  const alice = await connected('c-alice');
  const bob = await connected('c-bob', { backoff: { initialMs: 800, jitter: 0 } });
  await alice.join('public:changes');
  await bob.join('public:changes');
  for (const t of ['one', 'two', 'three']) await alice.send({ room: 'public:changes', body: { text: t } });
  const changes = [];
  for (const type of ['message_edited', 'message_deleted', 'reaction']) {
    bob.on(type, (d) => d.room === 'public:changes' && changes.push([type, d.change_seq, d.seq]));
  }
  await alice.edit('public:changes', 1, { text: 'uno' });
  await waitFor(() => changes.length === 1, 'the live edit');

  // Act: bob is dropped; three changes happen before he is back
  const down = nextEvent(bob, 'disconnected');
  assert.equal((await disconnect('c-bob')).status, 200);
  await down;
  await alice.react('public:changes', 2, '👍');
  await alice.edit('public:changes', 2, { text: 'dos' });
  await alice.deleteMessage('public:changes', 3);
  await nextEvent(bob, 'sync');

  // Assert: the missed ones, fetched from the change log, in order and once
  await waitFor(() => changes.length === 4, 'the changes made while away');
  assert.deepEqual(changes, [
    ['message_edited', 1, 1],
    ['reaction', 2, 2],
    ['message_edited', 3, 2],
    ['message_deleted', 4, 3],
  ]);
  // A live change after that follows on directly.
  await alice.react('public:changes', 1, '🎉');
  await waitFor(() => changes.length === 5, 'the next live change');
  assert.deepEqual(changes[4], ['reaction', 5, 1]);
});
