// Replays the client does not control: a backlog cut by HERALD_REPLAY_MAX
// (replay_truncated), and a join with since_seq whose `missed` messages join
// the `message` stream once each. Short pages (HERALD_JOIN_MISSED_LIMIT=3) make
// every replay span several pages.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { makeClient, startServer, waitFor } from './helpers.mjs';

let server;
const clients = [];
before(async () => {
  server = await startServer({ HERALD_REPLAY_MAX: '5', HERALD_JOIN_MISSED_LIMIT: '3' });
});
after(async () => {
  for (const c of clients) c.close();
  await server?.stop();
});

async function connected(user, options) {
  const client = makeClient(server, user, options);
  clients.push(client);
  await client.connect();
  return client;
}

test('a backlog over HERALD_REPLAY_MAX is announced by replay_truncated, then the stream continues after it', async () => {
  // Arrange: alice holds seq 1, then 11 more messages are sent while she is away
  const room = 'public:backlog';
  const bob = await connected('r-bob');
  await bob.join(room);
  const first = await connected('r-alice');
  await first.join(room);
  await bob.send({ room, body: { text: '1' } });
  await waitFor(() => first.positions[room] === 1, 'alice to hold seq 1');
  const saved = first.positions;
  first.close();
  for (let i = 2; i <= 12; i += 1) await bob.send({ room, body: { text: `${i}` } });

  // Act
  const alice = makeClient(server, 'r-alice', { positions: saved });
  clients.push(alice);
  const truncated = [];
  const seqs = [];
  alice.on('replay_truncated', (d) => truncated.push(d));
  alice.on('message', (m) => m.room === room && seqs.push(m.seq));
  await alice.connect();

  // Assert: 2..7 left out, 8..12 replayed, the position past them all
  await waitFor(() => seqs.length === 5, 'the last five messages');
  assert.deepEqual(truncated, [{ room, missing_from: 2, missing_to: 7 }]);
  assert.deepEqual(seqs, [8, 9, 10, 11, 12]);
  assert.equal(alice.positions[room], 12);
});

test('join with sinceSeq emits the missed messages once, then live ones, in order', async () => {
  // Arrange
  const room = 'public:catchup';
  const bob = await connected('j-bob');
  await bob.join(room);
  for (let i = 1; i <= 7; i += 1) await bob.send({ room, body: { text: `${i}` } });
  const alice = await connected('j-alice');
  const seqs = [];
  alice.on('message', (m) => m.room === room && seqs.push(m.seq));

  // Act
  const ack = await alice.join(room, { sinceSeq: 2 });
  await bob.send({ room, body: { text: '8' } });

  // Assert
  assert.deepEqual(ack.missed.map((m) => m.seq), [3, 4, 5]);
  assert.equal(ack.has_more, true);
  await waitFor(() => seqs.length === 6, 'messages 3..8');
  await new Promise((r) => setTimeout(r, 100));
  assert.deepEqual(seqs, [3, 4, 5, 6, 7, 8]);
});
