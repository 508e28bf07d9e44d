// Herald's JavaScript client for the native WebSocket protocol (/v1/ws).
//
// Owns one logical connection to Herald: opening sockets (token from
// `getToken()`, `device_id`, `since`), the first frames (`connection_ack`,
// `sync`), replies matched by `ref`, the heartbeat deadline, the in-band token
// refresh, reconnecting with backoff, and turning server frames into events.
// The pieces with state of their own live in lib/: the backoff arithmetic
// (backoff.js), the outbox of unacked sends (outbox.js), the per-room resume
// positions (positions.js), the heartbeat clocks (heartbeat.js), batched
// `delivered` receipts (delivered.js), the emitter (emitter.js), errors
// (errors.js) and token timing (token.js). Protocol reference: docs/protocol.md; the client's
// guide: docs/client-js.md.
//
// No runtime dependency: it runs in browsers (global `WebSocket`) and in
// Node >= 20 with a WebSocket implementation passed in (`ws`, or Node 22's global).

import { Backoff } from './lib/backoff.js';
import { DeliveredReporter } from './lib/delivered.js';
import { Emitter } from './lib/emitter.js';
import { HeraldError, RETRYABLE_SEND_CODES } from './lib/errors.js';
import { Heartbeat } from './lib/heartbeat.js';
import { Outbox } from './lib/outbox.js';
import { Positions } from './lib/positions.js';
import { refreshDelayMs, tokenExpiryMs } from './lib/token.js';

export { Backoff, HeraldError, Positions };

/** Server frames passed through as events of the same name, `data` as the payload. */
const EVENT_FRAMES = new Set(['receipt', 'typing', 'room_presence', 'presence', 'room_unread', 'notification', 'unread_count', 'event']);

/** The subprotocol the server answers when the token travels as `herald.bearer.<JWT>`. */
const WS_PROTOCOL = 'herald.v1';
const BEARER_PROTOCOL_PREFIX = 'herald.bearer.';

/** Default ping period when the server did not say (its own default, `HERALD_HEARTBEAT_MS`). */
const DEFAULT_HEARTBEAT_MS = 25000;

/** Shortest wait between two token refresh attempts, so a `getToken()` that keeps returning an old token cannot spin. */
const MIN_REFRESH_GAP_MS = 1000;

/** Longest wait between two failed token refresh attempts. */
const MAX_REFRESH_RETRY_MS = 30000;

/** How long `delivered` receipts are collected before one per room is sent. */
const DELIVERED_FLUSH_MS = 200;

export class HeraldClient {
  /** @param {object} options `HeraldClientOptions` in herald-client.d.ts (url, getToken, WebSocket, ...) */
  constructor(options) {
    if (!options || typeof options.url !== 'string') throw new TypeError('HeraldClient needs options.url');
    if (typeof options.getToken !== 'function') throw new TypeError('HeraldClient needs options.getToken');
    this.options = {
      requestTimeoutMs: 10000,
      refreshBeforeMs: 60000,
      autoDelivered: true,
      maxFrameBytes: 1024 * 1024,
      ...options,
    };
    this.WebSocketImpl = options.WebSocket ?? globalThis.WebSocket;
    if (typeof this.WebSocketImpl !== 'function') {
      throw new TypeError('no WebSocket implementation: pass options.WebSocket (e.g. the `ws` package on Node 20)');
    }
    this.events = new Emitter();
    this.backoff = new Backoff(options.backoff);
    this.outbox = new Outbox(options.outboxSize ?? 1000);
    this.positionsTracker = new Positions(options.positions);
    /** Room → the last change seq applied (edits, deletes, reactions), and the rooms fetching changes. */
    this.changeSeqs = new Map();
    this.changeFetches = new Map();
    /** @type {'idle' | 'connecting' | 'open' | 'ready' | 'closed'} */
    this.state = 'idle';
    this.userId = undefined;
    this.sessionId = undefined;
    this.token = undefined;
    /** Failed in-band refreshes in a row (their retries back off). */
    this.refreshFailures = 0;
    this.socket = undefined;
    /** Bumped for every socket; handlers of an older socket do nothing. */
    this.generation = 0;
    this.nextRef = 0;
    /** @type {Map<string, {resolve: Function, reject: Function, timer: any, onAck?: Function, clientMsgId?: string}>} */
    this.pending = new Map();
    this.timers = { reconnect: undefined, refresh: undefined, handshake: undefined };
    /** @type {Heartbeat | undefined} the current socket's */
    this.heartbeat = undefined;
    this.delivered = new DeliveredReporter(DELIVERED_FLUSH_MS, (room, seq) =>
      this.receipt(room, seq, 'delivered').catch((err) => {
        if (err.code !== 'disconnected' && err.code !== 'not_connected') this.events.emit('error', err);
      }),
    );
    /** @type {Array<{resolve: Function, reject: Function}>} */
    this.readyWaiters = [];
    /** The last `sync` data, for `connect()` calls on a ready client. */
    this.lastSync = undefined;
  }

  // ---- public API ---------------------------------------------------------

  /** Add a listener; returns a function that removes it. */
  on(type, fn) {
    return this.events.on(type, fn);
  }

  once(type, fn) {
    return this.events.once(type, fn);
  }

  off(type, fn) {
    this.events.off(type, fn);
  }

  /** The last seq held per room: persist it and pass it back as `options.positions` to resume after a restart. */
  get positions() {
    return this.positionsTracker.toJSON();
  }

  /** Sends not acknowledged yet. */
  get outboxSize() {
    return this.outbox.size;
  }

  /**
   * Start connecting (and reconnecting until `close()`). Resolves with the first
   * `sync` data; rejects only if the client is closed before that.
   */
  connect() {
    if (this.state === 'closed') return Promise.reject(new HeraldError('closed', 'the client was closed'));
    const ready = this.state === 'ready' ? Promise.resolve(this.lastSync) : new Promise((resolve, reject) => this.readyWaiters.push({ resolve, reject }));
    if (this.state === 'idle') this.openSocket();
    return ready;
  }

  /** Close for good: no reconnect; pending requests and the outbox are rejected with `closed`. */
  close() {
    if (this.state === 'closed') return;
    const err = new HeraldError('closed', 'the client was closed');
    this.teardownSocket(1000, 'client closed', err);
    clearTimeout(this.timers.reconnect);
    this.setState('closed');
    this.outbox.rejectAll(err);
    for (const w of this.readyWaiters.splice(0)) w.reject(err);
  }

  /**
   * Drop the current connection and open a new one at once (resuming every room
   * where it stands, the outbox kept). For example after a room `unavailable`
   * error, which unsubscribes the connection from that room until it reconnects.
   */
  reconnect() {
    if (this.state === 'closed' || this.state === 'idle') return;
    this.teardownSocket(1000, 'reconnect requested');
    clearTimeout(this.timers.reconnect);
    this.backoff.reset();
    this.events.emit('disconnected', { code: undefined, reason: 'reconnect requested', willReconnect: true, delayMs: 0 });
    this.openSocket();
  }

  /**
   * Send a message. It is kept in the outbox and (re)sent with the same
   * `client_msg_id` until the server acks it, across reconnects.
   * @returns {Promise<object>} the ack data (`message_id`, `room`, `seq`, `created_at`, `status`, `duplicate`?)
   */
  send({ room, to, kind = 'text', body, priority, clientMsgId } = {}) {
    if (this.state === 'closed') return Promise.reject(new HeraldError('closed', 'the client was closed'));
    if (this.outbox.isFull()) return Promise.reject(new HeraldError('outbox_full', `the outbox holds ${this.outbox.maxSize} unacked sends, its limit`));
    const id = clientMsgId ?? newClientMsgId();
    const data = { kind, body, client_msg_id: id };
    if (room !== undefined) data.room = room;
    if (to !== undefined) data.to = to;
    if (priority !== undefined) data.priority = priority;
    const size = new TextEncoder().encode(JSON.stringify({ type: 'send', ref: 'o0000000000', data })).length;
    if (size > this.options.maxFrameBytes) return Promise.reject(new HeraldError('too_large', `the send frame is ${size} bytes, over maxFrameBytes`));
    if (this.outbox.get(id)) return Promise.reject(new HeraldError('invalid_data', `client_msg_id ${id} is already waiting in the outbox`));
    const { entry, promise } = this.outbox.add(id, data);
    if (this.state === 'ready') this.transmit(entry);
    return promise;
  }

  /** Join a room; its `missed` messages are also emitted as `message` events (once each). */
  join(room, { sinceSeq } = {}) {
    // Handled as the ack arrives, before any later frame of the room (an await would run too late).
    const onAck = (ack) => {
      this.positionsTracker.startIfUnknown(ack.room, sinceSeq ?? ack.seq);
      for (const message of ack.missed ?? []) this.acceptMessage(message);
    };
    return this.request('join', sinceSeq === undefined ? { room } : { room, since_seq: sinceSeq }, { onAck });
  }

  leave(room) {
    return this.request('leave', { room }, { onAck: () => this.positionsTracker.forget(room) });
  }

  typing(room, state = 'start') {
    return this.request('typing', { room, state });
  }

  /** Replace the body of one of your messages (within the server's edit window). */
  edit(room, seq, body) {
    return this.request('edit', { room, seq, body });
  }

  /** Delete a message (yours, or any as the room's owner): it becomes a tombstone. */
  deleteMessage(room, seq) {
    return this.request('delete', { room, seq });
  }

  /** Add (`on`) or take back a reaction. */
  react(room, seq, emoji, on = true) {
    return this.request('react', { room, seq, emoji, on });
  }

  /** A custom event to the room's other members (relayed, never stored). */
  sendEvent(room, name, data = null) {
    return this.request('event', { room, name, data });
  }

  receipt(room, seq, status = 'read') {
    return this.request('receipt', { room, seq, status });
  }

  setPresence(status, { customMessage, customExpiresAt, metadata } = {}) {
    const data = { status };
    if (customMessage !== undefined) data.custom_message = customMessage;
    if (customExpiresAt !== undefined) data.custom_expires_at = customExpiresAt;
    if (metadata !== undefined) data.metadata = metadata;
    return this.request('presence', data);
  }

  history(room, { beforeSeq, afterSeq, limit } = {}) {
    const data = { room };
    if (beforeSeq !== undefined) data.before_seq = beforeSeq;
    if (afterSeq !== undefined) data.after_seq = afterSeq;
    if (limit !== undefined) data.limit = limit;
    return this.request('history', data);
  }

  /**
   * A page of the users connected to a room, in user-id order after `after`: a join ack
   * lists at most the server's HERALD_JOIN_MEMBERS_LIMIT and names the next page's cursor
   * in `members_next`; follow `next` until it is null.
   */
  members(room, { after, limit } = {}) {
    const data = { room };
    if (after !== undefined && after !== null) data.after = after;
    if (limit !== undefined) data.limit = limit;
    return this.request('members', data);
  }

  /** Every connected user of a room a join ack left out: `members` pages from `after` on. */
  async allMembers(room, after = null, { limit } = {}) {
    const out = [];
    let cursor = after;
    do {
      const page = await this.members(room, { after: cursor, limit });
      out.push(...page.members);
      cursor = page.next;
    } while (cursor !== null && cursor !== undefined);
    return out;
  }

  watch(users) {
    return this.request('watch', { users });
  }

  unwatch(users) {
    return this.request('unwatch', { users });
  }

  /** An application ping; resolves when the `pong` arrives. */
  ping() {
    return this.request('ping', undefined);
  }

  /**
   * Send one request frame and wait for its reply (matched by `ref`). Not
   * queued: rejects with `not_connected` unless the connection has reached
   * `sync`, and with `disconnected` if it drops before the reply.
   */
  request(type, data, { timeoutMs = this.options.requestTimeoutMs, allowBeforeSync = false, onAck } = {}) {
    const usable = this.state === 'ready' || (allowBeforeSync && this.state === 'open');
    if (!usable) return Promise.reject(new HeraldError('not_connected', `cannot send ${type}: the client is ${this.state}`));
    const ref = `r${++this.nextRef}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(ref);
        reject(new HeraldError('timeout', `no reply to ${type} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(ref, { resolve, reject, timer, onAck });
      this.write(data === undefined ? { type, ref } : { type, ref, data });
    });
  }

  // ---- connection lifecycle -----------------------------------------------

  setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.events.emit('state', state);
  }

  async openSocket() {
    this.setState('connecting');
    const generation = ++this.generation;
    let token;
    try {
      token = await this.options.getToken();
    } catch (err) {
      if (generation !== this.generation || this.state === 'closed') return;
      this.events.emit('error', new HeraldError('token_refresh_failed', `getToken() failed: ${err?.message ?? err}`));
      this.scheduleReconnect(undefined, 'getToken failed');
      return;
    }
    if (generation !== this.generation || this.state === 'closed') return;
    this.token = token;
    let socket;
    try {
      socket = this.options.tokenTransport === 'protocol'
        ? new this.WebSocketImpl(this.socketUrl(undefined), [WS_PROTOCOL, `${BEARER_PROTOCOL_PREFIX}${token}`])
        : new this.WebSocketImpl(this.socketUrl(token));
    } catch (err) {
      this.events.emit('error', new HeraldError('not_connected', `cannot open a WebSocket: ${err?.message ?? err}`));
      this.scheduleReconnect(undefined, 'WebSocket constructor failed');
      return;
    }
    this.socket = socket;
    const current = () => generation === this.generation;
    socket.onmessage = (ev) => current() && this.onFrame(ev.data);
    socket.onclose = (ev) => current() && this.onSocketLost(ev.code, ev.reason);
    socket.onerror = () => {}; // a close event follows; it carries what there is to know
    // A socket that never gets to `connection_ack` counts as lost.
    this.timers.handshake = setTimeout(() => {
      if (current() && this.state === 'connecting') {
        this.teardownSocket(1000, 'handshake timeout');
        this.onSocketLost(undefined, 'no connection_ack in time');
      }
    }, this.options.requestTimeoutMs);
  }

  /** The handshake URL: `device_id`, `since`, and `token` unless it travels as a subprotocol. */
  socketUrl(token) {
    const url = new URL(this.options.url);
    if (token !== undefined) url.searchParams.set('token', token);
    if (this.options.deviceId) url.searchParams.set('device_id', this.options.deviceId);
    const since = this.positionsTracker.sinceParam();
    if (since) url.searchParams.set('since', since);
    return url.toString();
  }

  /**
   * Detach from the current socket and close it (best effort: a dead peer will
   * not answer). Pending requests reject with `err`; unacked sends stay queued.
   */
  teardownSocket(code, reason, err = new HeraldError('disconnected', `the connection was lost (${reason})`)) {
    this.generation += 1;
    clearTimeout(this.timers.refresh);
    clearTimeout(this.timers.handshake);
    this.heartbeat?.stop();
    this.heartbeat = undefined;
    this.delivered.clear();
    const socket = this.socket;
    this.socket = undefined;
    if (socket) {
      socket.onmessage = socket.onclose = null;
      try {
        socket.close(code, reason);
      } catch {
        /* already closing */
      }
    }
    for (const [ref, p] of this.pending) {
      clearTimeout(p.timer);
      if (p.clientMsgId === undefined) p.reject(err);
      this.pending.delete(ref);
    }
    this.outbox.requeueAll();
  }

  onSocketLost(code, reason) {
    if (this.state === 'closed') return;
    this.teardownSocket(1000, reason ?? 'lost');
    this.scheduleReconnect(code, reason);
  }

  scheduleReconnect(code, reason) {
    const delayMs = this.backoff.next();
    this.setState('connecting');
    this.events.emit('disconnected', { code, reason, willReconnect: true, delayMs });
    clearTimeout(this.timers.reconnect);
    this.timers.reconnect = setTimeout(() => {
      if (this.state === 'closed') return;
      this.events.emit('reconnecting', { attempt: this.backoff.attempt });
      this.openSocket();
    }, delayMs);
  }

  write(frame) {
    this.heartbeat?.sent();
    this.socket.send(JSON.stringify(frame));
  }

  // ---- heartbeat and token refresh -----------------------------------------

  /** Ping when idle, and drop a socket silent for `heartbeatTimeoutMs` (lib/heartbeat.js). */
  startHeartbeat(serverIntervalMs) {
    const intervalMs = this.options.heartbeatIntervalMs ?? serverIntervalMs ?? DEFAULT_HEARTBEAT_MS;
    this.heartbeat = new Heartbeat({
      intervalMs,
      timeoutMs: this.options.heartbeatTimeoutMs ?? 2 * intervalMs,
      ping: () => this.write({ type: 'ping' }),
      dead: (silentMs) => this.onSocketLost(undefined, `heartbeat timeout: nothing received for ${silentMs} ms`),
    });
  }

  scheduleRefresh(minDelayMs = 0) {
    clearTimeout(this.timers.refresh);
    const expMs = tokenExpiryMs(this.token);
    if (expMs === undefined) return;
    const delay = Math.max(minDelayMs, refreshDelayMs(expMs, Date.now(), this.options.refreshBeforeMs));
    this.timers.refresh = setTimeout(() => this.refreshToken(), delay);
  }

  /** Fetch a fresh token and hand it to the live session with an `auth` frame. */
  async refreshToken() {
    const generation = this.generation;
    clearTimeout(this.timers.refresh);
    try {
      const token = await this.options.getToken();
      if (generation !== this.generation) return;
      const ack = await this.request('auth', { token }, { allowBeforeSync: true });
      this.token = token;
      this.refreshFailures = 0;
      this.events.emit('token_refreshed', { expiresAt: ack.expires_at });
      this.scheduleRefresh(MIN_REFRESH_GAP_MS);
    } catch (err) {
      if (generation !== this.generation) return;
      this.events.emit('error', new HeraldError('token_refresh_failed', `token refresh failed: ${err?.message ?? err}`));
      // 1 s, 2 s, 4 s ... (several tries within the server's 10 s grace), at most every 30 s.
      const delay = Math.min(MAX_REFRESH_RETRY_MS, MIN_REFRESH_GAP_MS * 2 ** this.refreshFailures);
      this.refreshFailures += 1;
      this.timers.refresh = setTimeout(() => this.refreshToken(), delay);
    }
  }

  // ---- incoming frames ------------------------------------------------------

  onFrame(raw) {
    this.heartbeat?.received();
    let frame;
    try {
      frame = JSON.parse(typeof raw === 'string' ? raw : new TextDecoder().decode(raw));
    } catch {
      this.events.emit('error', new HeraldError('invalid_json', 'the server sent a frame that is not JSON'));
      return;
    }
    const data = frame.data ?? {};
    switch (frame.type) {
      case 'connection_ack':
        return this.onConnectionAck(data);
      case 'sync':
        return this.onSync(data);
      case 'ack':
      case 'pong':
        return this.onReply(frame, data, undefined);
      case 'error':
        if (frame.ref !== undefined) return this.onReply(frame, data, HeraldError.fromFrame(frame));
        if (frame.code === 'token_expired') this.refreshToken();
        return this.events.emit('error', HeraldError.fromFrame(frame));
      case 'message':
        return this.acceptMessage(data);
      case 'message_edited':
      case 'message_deleted':
      case 'reaction':
        return this.acceptChange(frame.type, data);
      case 'replay_truncated':
        if (data.missing_to > (this.positionsTracker.get(data.room) ?? 0)) this.positionsTracker.startAt(data.room, data.missing_to);
        return this.events.emit('replay_truncated', data);
      default:
        if (EVENT_FRAMES.has(frame.type)) this.events.emit(frame.type, data);
        else this.events.emit('unknown_frame', frame);
    }
  }

  onConnectionAck(data) {
    clearTimeout(this.timers.handshake);
    this.userId = data.user_id;
    this.sessionId = data.session_id;
    this.setState('open');
    this.startHeartbeat(data.heartbeat_interval_ms);
    this.scheduleRefresh();
    this.events.emit('connected', data);
  }

  onSync(data) {
    const rooms = data.rooms ?? [];
    this.positionsTracker.retain(rooms.map((r) => r.room));
    for (const r of rooms) {
      const start = r.position ?? r.delivered_seq ?? 0;
      const held = this.positionsTracker.get(r.room);
      if (held === undefined || start > held) {
        // Past what we hold: the server could not resume there (see `recovered`); the app may page `history`.
        if (held !== undefined) this.events.emit('gap', { room: r.room, from: held + 1, to: start });
        this.positionsTracker.startAt(r.room, start);
      } else if (start < held && r.recovered === false) {
        // Our point lies past the room's end (saved positions of a server whose data was reset):
        // the server's stream is the truth, or every message up to the stale point would be dropped.
        this.positionsTracker.startAt(r.room, start);
      }
      // Otherwise start <= held: the stream repeats what we hold; those frames are dropped as duplicates.
    }
    const behind = [];
    for (const r of rooms) {
      if (r.change_seq === undefined) continue;
      const held = this.changeSeqs.get(r.room);
      // A room new to this client starts at the server's change log position (its history
      // shows the current state); a known room fetches what changed while it was away.
      if (held === undefined) this.changeSeqs.set(r.room, r.change_seq);
      else if (r.change_seq > held) behind.push(r.room);
    }
    for (const room of [...this.changeSeqs.keys()]) if (!rooms.some((r) => r.room === room)) this.changeSeqs.delete(room);
    this.lastSync = data;
    this.backoff.reset();
    this.setState('ready');
    this.events.emit('sync', data);
    for (const w of this.readyWaiters.splice(0)) w.resolve(data);
    for (const entry of this.outbox.queued()) this.transmit(entry);
    for (const room of behind) this.fetchChanges(room);
  }

  onReply(frame, data, err) {
    const p = this.pending.get(String(frame.ref));
    if (!p) return; // a reply to an attempt given up on (timed out, or sent on an earlier socket)
    this.pending.delete(String(frame.ref));
    clearTimeout(p.timer);
    if (p.clientMsgId !== undefined) return this.onSendReply(p.clientMsgId, data, err);
    if (err) return p.reject(err);
    p.onAck?.(data);
    p.resolve(frame.type === 'pong' ? {} : data);
  }

  acceptMessage(message) {
    if (!this.positionsTracker.accept(message.room, message.seq)) return;
    if (message.from === this.userId && message.client_msg_id && this.outbox.get(message.client_msg_id)) {
      // Our own send, stored although its ack was lost with the socket: the replay brings it back.
      // It settles the send like its ack would (the app learns of it there, not as a `message`).
      const { message_id, room, seq, created_at } = message;
      this.outbox.settle(message.client_msg_id, { message_id, room, seq, created_at, status: 'sent', duplicate: true });
      return;
    }
    this.events.emit('message', message);
    if (this.options.autoDelivered) this.delivered.add(message.room, message.seq);
  }

  /**
   * An edit, delete or reaction: emitted once per room change seq, in order. A change that
   * skips seqs (some were missed while away or dropped) fetches the missing ones first.
   */
  acceptChange(type, data) {
    const held = this.changeSeqs.get(data.room);
    if (held !== undefined && data.change_seq <= held) return;
    if (held !== undefined && data.change_seq > held + 1) return void this.fetchChanges(data.room);
    this.changeSeqs.set(data.room, data.change_seq);
    this.events.emit(type, data);
  }

  /** Pages the room's change log from the last applied change seq (one fetch per room at a time). */
  async fetchChanges(room) {
    if (this.changeFetches.has(room)) return void this.changeFetches.set(room, true);
    this.changeFetches.set(room, false);
    try {
      for (;;) {
        const after = this.changeSeqs.get(room) ?? 0;
        const page = await this.request('changes', { room, after_change_seq: after });
        for (const c of page.changes) this.acceptChange(c.type, c.data);
        // Again when more follow, or when a live gap was seen while this page was in flight.
        if (!page.has_more && !this.changeFetches.get(room)) break;
        this.changeFetches.set(room, false);
      }
    } catch (err) {
      this.events.emit('error', err instanceof HeraldError ? err : new HeraldError('unavailable', String(err)));
    } finally {
      this.changeFetches.delete(room);
    }
  }

  // ---- outbox transmission --------------------------------------------------

  transmit(entry) {
    const ref = `o${++this.nextRef}`;
    entry.state = 'inflight';
    entry.ref = ref;
    entry.attempts += 1;
    // No ack in time on a live socket: send again (same client_msg_id, so never stored twice).
    const timer = setTimeout(() => {
      if (this.pending.get(ref)) {
        this.pending.delete(ref);
        entry.state = 'queued';
        entry.ref = undefined;
        if (this.state === 'ready') this.transmit(entry);
      }
    }, this.options.requestTimeoutMs);
    this.pending.set(ref, { resolve: null, reject: null, timer, clientMsgId: entry.clientMsgId });
    this.write({ type: 'send', ref, data: entry.data });
  }

  onSendReply(clientMsgId, data, err) {
    const entry = this.outbox.get(clientMsgId);
    if (!entry) return;
    if (!err) {
      this.positionsTracker.ownAcked(data.room, data.seq);
      this.outbox.settle(clientMsgId, data);
      return;
    }
    if (!RETRYABLE_SEND_CODES.has(err.code)) {
      this.outbox.settle(clientMsgId, undefined, err);
      return;
    }
    // Nothing stored (or not confirmed): retry the same client_msg_id after the server's hint.
    entry.state = 'queued';
    entry.ref = undefined;
    const delay = err.retryAfterMs ?? Math.min(5000, 100 * 2 ** Math.min(entry.attempts, 6));
    entry.timer = setTimeout(() => {
      entry.timer = undefined;
      if (this.state === 'ready' && entry.state === 'queued' && this.outbox.get(clientMsgId)) this.transmit(entry);
    }, delay);
  }
}

/** A fresh idempotency key. */
function newClientMsgId() {
  if (globalThis.crypto?.randomUUID) return globalThis.crypto.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}-${Math.random().toString(36).slice(2)}`;
}
