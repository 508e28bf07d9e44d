// Unit tests without a server: backoff bounds and jitter, the reconnect schedule
// under fake timers, resume positions, the outbox bound, token timing.

import assert from 'node:assert/strict';
import { mock, test } from 'node:test';
import { Backoff, HeraldClient, Positions } from '../herald-client.js';
import { Outbox } from '../lib/outbox.js';
import { refreshDelayMs, tokenExpiryMs } from '../lib/token.js';
import { mintToken } from './helpers.mjs';

test('backoff grows by its factor, is capped, and jitter stays within [raw * (1 - jitter), raw]', () => {
  // random() = 0 gives the top of the range, random() -> 1 the bottom
  const top = new Backoff({ initialMs: 100, maxMs: 1000, factor: 2, jitter: 0.5, random: () => 0 });
  assert.deepEqual(Array.from({ length: 6 }, () => top.next()), [100, 200, 400, 800, 1000, 1000]);
  const bottom = new Backoff({ initialMs: 100, maxMs: 1000, factor: 2, jitter: 0.5, random: () => 0.999999 });
  assert.deepEqual(Array.from({ length: 6 }, () => bottom.next()), [50, 100, 200, 400, 500, 500]);
  // With real randomness every delay falls in the announced bounds, and they differ
  const real = new Backoff({ initialMs: 100, maxMs: 1000, jitter: 0.5 });
  const drawn = new Set();
  for (let i = 0; i < 200; i += 1) {
    if (i % 8 === 0) real.reset();
    const [lo, hi] = real.bounds();
    const d = real.next();
    assert.ok(d >= lo && d <= hi, `${d} outside [${lo}, ${hi}]`);
    drawn.add(d);
  }
  assert.ok(drawn.size > 20, 'jitter spreads the delays');
});

test('backoff reset starts again from initialMs; bad options are refused', () => {
  const b = new Backoff({ initialMs: 100, maxMs: 1000, jitter: 0 });
  b.next();
  b.next();
  b.reset();
  assert.equal(b.next(), 100);
  assert.throws(() => new Backoff({ initialMs: 0 }), RangeError);
  assert.throws(() => new Backoff({ initialMs: 10, maxMs: 5 }), RangeError);
  assert.throws(() => new Backoff({ jitter: 2 }), RangeError);
});

/** A WebSocket stand-in whose every connection fails at once (the server is down). */
class RefusedSocket {
  static opened = [];
  constructor(url) {
    RefusedSocket.opened.push({ url, at: Date.now() });
    setTimeout(() => this.onclose?.({ code: 1006, reason: '' }), 0);
  }
  send() {}
  close() {}
}

test('the client reconnects on the backoff schedule, with jitter, under fake timers', async () => {
  // Arrange
  mock.timers.enable({ apis: ['setTimeout', 'setInterval', 'Date'] });
  try {
    RefusedSocket.opened = [];
    const client = new HeraldClient({
      url: 'ws://herald.invalid/v1/ws',
      WebSocket: RefusedSocket,
      getToken: () => 'not-a-jwt',
      backoff: { initialMs: 1000, maxMs: 8000, factor: 2, jitter: 0.5 },
    });
    const delays = [];
    client.on('disconnected', (d) => delays.push(d.delayMs));

    // Act: let seven attempts fail
    client.connect().catch(() => {});
    for (let i = 0; i < 7; i += 1) {
      await flush();
      mock.timers.tick(0); // the refused socket closes
      await flush();
      mock.timers.tick(delays.at(-1)); // the reconnect timer fires
    }
    await flush();
    client.close();

    // Assert: each delay lies in its jitter window, attempts are spaced by them
    const windows = [[500, 1000], [1000, 2000], [2000, 4000], [4000, 8000], [4000, 8000], [4000, 8000], [4000, 8000]];
    assert.equal(delays.length, 7);
    delays.forEach((d, i) => assert.ok(d >= windows[i][0] && d <= windows[i][1], `delay ${i} = ${d} not in ${windows[i]}`));
    const gaps = RefusedSocket.opened.slice(1).map((o, i) => o.at - RefusedSocket.opened[i].at);
    assert.deepEqual(gaps, delays.slice(0, gaps.length));
    assert.equal(RefusedSocket.opened.length, 8);
  } finally {
    mock.timers.reset();
  }
});

/** Let pending promise callbacks run (getToken is awaited). */
async function flush() {
  for (let i = 0; i < 5; i += 1) await Promise.resolve();
}

test('positions drop frames already held and build the since parameter', () => {
  const p = new Positions({ 'public:a': 3 });
  assert.equal(p.accept('public:a', 3), false);
  assert.equal(p.accept('public:a', 4), true);
  assert.equal(p.accept('public:b', 7), true);
  assert.equal(p.sinceParam(), 'public:a:4,public:b:7');
  p.retain(['public:b']);
  assert.deepEqual(p.toJSON(), { 'public:b': 7 });
});

test('own acked seqs are absorbed only once the frames before them came, and their replays are not new', () => {
  const p = new Positions({ 'public:a': 4 });
  p.ownAcked('public:a', 6); // 5 (someone else's) is still on its way
  assert.equal(p.get('public:a'), 4, 'resuming now must replay 5');
  assert.equal(p.accept('public:a', 5), true);
  assert.equal(p.get('public:a'), 6);
  p.ownAcked('public:a', 8);
  assert.equal(p.accept('public:a', 7), true);
  assert.equal(p.get('public:a'), 8);
  // A replay of an own message above the position is held, not new
  p.ownAcked('public:a', 10);
  assert.equal(p.accept('public:a', 9), true);
  assert.equal(p.get('public:a'), 10);
  p.startAt('public:a', 8);
  p.ownAcked('public:a', 9);
  assert.equal(p.accept('public:a', 9), false);
  // A room first seen through our own send gets no position until a frame arrives
  p.ownAcked('direct:a:b', 2);
  assert.equal(p.get('direct:a:b'), undefined);
  assert.equal(p.accept('direct:a:b', 1), true);
  assert.equal(p.get('direct:a:b'), 2);
});

test('the outbox is bounded and refuses a second entry with the same id', async () => {
  const o = new Outbox(2);
  const a = o.add('a', {});
  o.add('b', {});
  assert.equal(o.isFull(), true);
  assert.throws(() => o.add('a', {}), /already in the outbox/);
  o.settle('a', { seq: 1 });
  assert.deepEqual(await a.promise, { seq: 1 });
  assert.equal(o.size, 1);
  assert.throws(() => new Outbox(0), RangeError);
});

test('client.send refuses beyond outboxSize with outbox_full, and frames over maxFrameBytes', async () => {
  const client = new HeraldClient({ url: 'ws://x/v1/ws', WebSocket: RefusedSocket, getToken: () => 't', outboxSize: 2, maxFrameBytes: 200 });
  const held = [client.send({ room: 'public:a', body: { text: '1' } }), client.send({ room: 'public:a', body: { text: '2' } })];
  await assert.rejects(client.send({ room: 'public:a', body: { text: '3' } }), { code: 'outbox_full' });
  client.close();
  await Promise.allSettled(held);
  const small = new HeraldClient({ url: 'ws://x/v1/ws', WebSocket: RefusedSocket, getToken: () => 't', maxFrameBytes: 200 });
  await assert.rejects(small.send({ room: 'public:a', body: { text: 'x'.repeat(300) } }), { code: 'too_large' });
});

test('token timing: refresh refreshBeforeMs ahead, or half-way for short tokens', () => {
  const exp = tokenExpiryMs(mintToken('alice', { ttlSec: 600 }));
  assert.ok(Math.abs(exp - (Date.now() + 600000)) < 2000);
  assert.equal(tokenExpiryMs('not-a-jwt'), undefined);
  assert.equal(refreshDelayMs(1_000_000, 0, 60_000), 940_000);
  assert.equal(refreshDelayMs(10_000, 0, 60_000), 5_000);
  assert.equal(refreshDelayMs(0, 10, 60_000), 0);
});

/** A WebSocket stand-in that plays a script of server frames and records what the client sends. */
function scriptedSocket(frames) {
  return class ScriptedSocket {
    static last;
    constructor(url) {
      this.url = url;
      this.sent = [];
      ScriptedSocket.last = this;
      setTimeout(() => frames.forEach((f) => this.onmessage?.({ data: JSON.stringify(f) })), 0);
    }
    send(data) {
      this.sent.push(JSON.parse(data));
    }
    close() {}
  };
}

const ack = { type: 'connection_ack', data: { session_id: '1', user_id: 'alice', heartbeat_interval_ms: 25000 } };
const msg = (room, seq) => ({ type: 'message', data: { room, seq, from: 'bob', message_id: `m${seq}`, client_msg_id: null } });

test('sync: a start past the held position is a gap; a stale point past the room end is reset', async () => {
  // Arrange: alice held 3 in public:a and 50 in public:b (whose data the server no longer has)
  const Socket = scriptedSocket([
    ack,
    {
      type: 'sync',
      data: {
        rooms: [
          { room: 'public:a', seq: 9, position: 6, recovered: false },
          { room: 'public:b', seq: 2, position: 0, recovered: false },
        ],
        unread_total: 0,
      },
    },
    msg('public:a', 7),
    msg('public:b', 1),
    msg('public:b', 2),
  ]);
  const client = new HeraldClient({ url: 'ws://x/v1/ws', WebSocket: Socket, getToken: () => 't', positions: { 'public:a': 3, 'public:b': 50 }, autoDelivered: false });
  const gaps = [];
  const seen = [];
  client.on('gap', (g) => gaps.push(g));
  client.on('message', (m) => seen.push(`${m.room}#${m.seq}`));

  // Act
  await client.connect();
  await new Promise((r) => setTimeout(r, 10));
  client.close();

  // Assert
  assert.match(Socket.last.url, /since=public%3Aa%3A3%2Cpublic%3Ab%3A50/);
  assert.deepEqual(gaps, [{ room: 'public:a', from: 4, to: 6 }]);
  assert.deepEqual(seen, ['public:a#7', 'public:b#1', 'public:b#2']);
});

test('frames repeated by the server are dropped, and the send of a lost ack is settled by its replayed copy', async () => {
  // Arrange: the replay repeats seq 2, and brings back alice's own message (seq 3) before any ack
  const own = { type: 'message', data: { room: 'public:a', seq: 3, from: 'alice', message_id: 'm3', client_msg_id: 'c-1', created_at: 't' } };
  const Socket = scriptedSocket([ack, { type: 'sync', data: { rooms: [{ room: 'public:a', seq: 3, position: 1 }], unread_total: 0 } }, msg('public:a', 2), msg('public:a', 2), own]);
  const client = new HeraldClient({ url: 'ws://x/v1/ws', WebSocket: Socket, getToken: () => 't', autoDelivered: false });
  const seen = [];
  client.on('message', (m) => seen.push(m.seq));
  const sent = client.send({ room: 'public:a', body: { text: 'x' }, clientMsgId: 'c-1' });

  // Act
  await client.connect();
  const result = await sent;
  client.close();

  // Assert
  assert.deepEqual(seen, [2]);
  assert.deepEqual(result, { message_id: 'm3', room: 'public:a', seq: 3, created_at: 't', status: 'sent', duplicate: true });
  assert.equal(Socket.last.sent[0].data.client_msg_id, 'c-1', 'the outbox sent it after sync');
  assert.equal(client.positions['public:a'], 3);
});
