// Two clients against a real Herald: connecting, chatting, and every typed event
// (message, room_presence, presence, typing, receipt, room_unread, notification,
// unread_count).

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import WebSocket from 'ws';
import { makeClient, mintToken, nextEvent, rest, startServer } from './helpers.mjs';

let server;
const clients = [];
before(async () => {
  server = await startServer({ HERALD_PRESENCE_COALESCE_MS: '0' });
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

test('connect resolves with sync and reports the session', async () => {
  // Arrange
  const alice = makeClient(server, 'alice');
  clients.push(alice);
  const connectedEvent = nextEvent(alice, 'connected');

  // Act
  const sync = await alice.connect();

  // Assert
  assert.deepEqual(sync.rooms, []);
  assert.equal((await connectedEvent).user_id, 'alice');
  assert.equal(alice.state, 'ready');
  assert.equal(alice.userId, 'alice');
  assert.equal(typeof alice.sessionId, 'string');
});

test("tokenTransport 'protocol' sends the token as a subprotocol, not in the URL", async () => {
  // Arrange: record what the client hands the WebSocket constructor.
  const opened = [];
  const client = makeClient(server, 'proto', {
    tokenTransport: 'protocol',
    WebSocket: class extends WebSocket {
      constructor(url, protocols) {
        opened.push({ url, protocols });
        super(url, protocols);
      }
    },
  });
  clients.push(client);

  // Act
  await client.connect();

  // Assert
  assert.equal(client.userId, 'proto');
  assert.equal(opened.length, 1);
  assert.ok(!opened[0].url.includes('token'), opened[0].url);
  assert.equal(opened[0].protocols[0], 'herald.v1');
  assert.match(opened[0].protocols[1], /^herald\.bearer\.ey/);
});

test('two clients chat in a room: ack with seq, message event on the other side', async () => {
  // Arrange
  const alice = await connected('alice2');
  const bob = await connected('bob2');
  await alice.join('public:chat');
  await bob.join('public:chat');
  const bobGets = nextEvent(bob, 'message', (m) => m.room === 'public:chat');

  // Act
  const ack = await alice.send({ room: 'public:chat', body: { text: 'hi bob' } });
  const message = await bobGets;

  // Assert
  assert.equal(ack.room, 'public:chat');
  assert.equal(ack.seq, 1);
  assert.equal(ack.status, 'sent');
  assert.equal(message.from, 'alice2');
  assert.equal(message.seq, 1);
  assert.deepEqual(message.body, { text: 'hi bob' });
  assert.equal(message.message_id, ack.message_id);
  assert.equal(alice.outboxSize, 0);
  assert.deepEqual(bob.positions, { 'public:chat': 1 });
});

test('a direct message by user id reaches the other user', async () => {
  const carol = await connected('carol');
  const dave = await connected('dave');
  const daveGets = nextEvent(dave, 'message');

  const ack = await carol.send({ to: 'dave', body: { text: 'psst' }, priority: 'high' });

  assert.equal(ack.room, 'direct:carol:dave');
  const message = await daveGets;
  assert.equal(message.room, 'direct:carol:dave');
  assert.equal(message.priority, 'high');
});

test('a server error rejects the send with its code and leaves the outbox empty', async () => {
  const erin = await connected('erin');
  await assert.rejects(erin.send({ room: 'public:x', kind: 'bogus', body: {} }), { name: 'HeraldError', code: 'invalid_data' });
  await assert.rejects(erin.send({ room: 'public:not-joined', body: { text: 'x' } }), { code: 'forbidden' });
  assert.equal(erin.outboxSize, 0);
});

test('typed events: room_presence, typing, event, receipt, room_unread, presence', async () => {
  // Arrange
  const alice = await connected('alice3');
  await alice.join('public:events');
  const joined = nextEvent(alice, 'room_presence', (d) => d.room === 'public:events' && d.joins.some((p) => p.user === 'bob3'));
  const bob = await connected('bob3');
  await bob.join('public:events');

  // Assert: room_presence
  const rp = await joined;
  assert.equal(rp.joins.find((p) => p.user === 'bob3').status, 'online');

  // typing
  const typing = nextEvent(bob, 'typing', (d) => d.user === 'alice3');
  await alice.typing('public:events', 'start');
  assert.deepEqual(await typing, { room: 'public:events', user: 'alice3', state: 'start' });

  // custom event
  const custom = nextEvent(bob, 'event', (d) => d.name === 'cursor');
  assert.deepEqual(await alice.sendEvent('public:events', 'cursor', { x: 1 }), {});
  assert.deepEqual(await custom, { room: 'public:events', from: 'alice3', name: 'cursor', data: { x: 1 } });

  // room_unread: a live message raises bob's unread count
  const unread = nextEvent(bob, 'room_unread', (d) => d.room === 'public:events');
  const ack = await alice.send({ room: 'public:events', body: { text: 'read me' } });
  assert.deepEqual(await unread, { room: 'public:events', unread: 1, unread_total: 1 });

  // receipt: bob reads, alice sees it
  const receipt = nextEvent(alice, 'receipt', (d) => d.user === 'bob3' && d.status === 'read');
  await bob.receipt('public:events', ack.seq, 'read');
  const r = await receipt;
  assert.equal(r.seq, ack.seq);
  assert.equal(r.room, 'public:events');

  // presence of a watched user
  const watchAck = await alice.watch(['bob3']);
  assert.equal(watchAck.presence[0].user, 'bob3');
  const presence = nextEvent(alice, 'presence', (d) => d.user === 'bob3' && d.status === 'busy');
  await bob.setPresence('busy', { customMessage: 'in a meeting' });
  assert.equal((await presence).custom_message, 'in a meeting');
});

test('messages a client receives are reported delivered automatically', async () => {
  const alice = await connected('alice5');
  const bob = await connected('bob5');
  await alice.join('public:deliv');
  await bob.join('public:deliv');
  const delivered = nextEvent(alice, 'receipt', (d) => d.user === 'bob5' && d.status === 'delivered');

  const ack = await alice.send({ room: 'public:deliv', body: { text: 'x' } });

  assert.equal((await delivered).seq, ack.seq);
});

test('a notification from the REST admin route arrives as notification and unread_count events', async () => {
  // Arrange
  const frank = await connected('frank');
  const notification = nextEvent(frank, 'notification');
  const count = nextEvent(frank, 'unread_count', (d) => d.unread_count === 1);
  const service = mintToken('backend', { roles: ['service'] });

  // Act
  const res = await rest(server, 'POST', '/v1/admin/notifications', service, {
    users: ['frank'],
    notification_type: 'assignment',
    title: 'New task',
    message: 'Review PR 42',
  });

  // Assert
  assert.equal(res.status, 201);
  const n = await notification;
  assert.equal(n.title, 'New task');
  assert.equal(n.notification_type, 'assignment');
  assert.equal(n.id, res.body.results[0].id);
  await count;
});

test('history and ping are plain requests', async () => {
  const gina = await connected('gina');
  await gina.join('public:hist');
  for (const text of ['a', 'b', 'c']) await gina.send({ room: 'public:hist', body: { text } });

  const page = await gina.history('public:hist', { afterSeq: 1, limit: 10 });
  assert.deepEqual(page.messages.map((m) => m.body.text), ['b', 'c']);
  assert.deepEqual(await gina.ping(), {});
});

test('a join ack lists the first page of members; members and allMembers page the rest', async () => {
  // Arrange: a server that lists 2 members per join ack, and 5 users online in one room.
  const small = await startServer({ HERALD_JOIN_MEMBERS_LIMIT: '2' });
  const own = [];
  try {
    const acks = [];
    for (const user of ['m1', 'm2', 'm3', 'm4', 'm5']) {
      const c = makeClient(small, user);
      own.push(c);
      await c.connect();
      acks.push(await c.join('public:paged'));
    }
    const last = own[4];
    // Act
    const ack = acks[4];
    const page = await last.members('public:paged', { after: ack.members_next, limit: 2 });
    const rest = await last.allMembers('public:paged', ack.members_next);
    // Assert: the ack's page and its cursor; paging covers everyone else exactly once.
    assert.deepEqual(ack.members.map((p) => p.user), ['m1', 'm2']);
    assert.equal(ack.members_next, 'm2');
    assert.deepEqual(page.members.map((p) => p.user), ['m3', 'm4']);
    assert.equal(page.next, 'm4');
    assert.deepEqual(rest.map((p) => p.user), ['m3', 'm4', 'm5']);
    assert.equal(acks[0].members_next, null, 'a room that fits lists everyone');
    await assert.rejects(own[0].members('public:not-mine'), { code: 'forbidden' });
  } finally {
    for (const c of own) c.close();
    await small.stop();
  }
});

test('requests while not connected are refused at once; close rejects the outbox', async () => {
  const hugo = makeClient(server, 'hugo');
  await assert.rejects(hugo.join('public:x'), { code: 'not_connected' });
  const pending = hugo.send({ room: 'public:x', body: { text: 'never sent' } });
  assert.equal(hugo.outboxSize, 1);
  hugo.close();
  await assert.rejects(pending, { code: 'closed' });
  assert.equal(hugo.state, 'closed');
});
