// The outbox: sends not yet acknowledged by the server.
//
// Owns every `send` from the moment the app calls `client.send()` until its ack
// (or a final error): a bounded, insertion-ordered map keyed by `client_msg_id`,
// each entry holding the promise the app awaits. Entries survive reconnects; the
// client re-sends the unacked ones after each `sync` with the same
// `client_msg_id`, so the server stores each message exactly once and answers a
// repeat with the original ack plus `duplicate: true` (docs/protocol.md,
// Delivery semantics). Transmission and timers belong to the client.

/**
 * @typedef {object} OutboxEntry
 * @property {string} clientMsgId
 * @property {Record<string, unknown>} data The `send` frame's data, `client_msg_id` included.
 * @property {'queued' | 'inflight'} state queued: to be (re)sent; inflight: on the current socket.
 * @property {string | undefined} ref The `ref` of the in-flight attempt.
 * @property {number} attempts Frames sent so far.
 * @property {ReturnType<typeof setTimeout> | undefined} timer Ack deadline or retry delay.
 * @property {(ack: object) => void} resolve
 * @property {(err: Error) => void} reject
 */

export class Outbox {
  /** @param {number} maxSize Most unacked sends kept; `add` beyond it is refused. */
  constructor(maxSize) {
    if (!(Number.isInteger(maxSize) && maxSize > 0)) throw new RangeError('outbox size must be a positive integer');
    this.maxSize = maxSize;
    /** @type {Map<string, OutboxEntry>} */
    this.entries = new Map();
  }

  get size() {
    return this.entries.size;
  }

  isFull() {
    return this.entries.size >= this.maxSize;
  }

  /**
   * Keep a send until it is settled. Throws when the id is already waiting (two
   * app calls with one `clientMsgId` would share one stored message).
   * @returns {{ entry: OutboxEntry, promise: Promise<object> }}
   */
  add(clientMsgId, data) {
    if (this.entries.has(clientMsgId)) throw new Error(`client_msg_id ${clientMsgId} is already in the outbox`);
    /** @type {OutboxEntry} */
    const entry = { clientMsgId, data, state: 'queued', ref: undefined, attempts: 0, timer: undefined, resolve: null, reject: null };
    const promise = new Promise((resolve, reject) => {
      entry.resolve = resolve;
      entry.reject = reject;
    });
    this.entries.set(clientMsgId, entry);
    return { entry, promise };
  }

  get(clientMsgId) {
    return this.entries.get(clientMsgId);
  }

  /** Entries waiting to be (re)sent, oldest first. */
  queued() {
    return [...this.entries.values()].filter((e) => e.state === 'queued' && e.timer === undefined);
  }

  /** The socket is gone: every in-flight attempt has to be sent again. */
  requeueAll() {
    for (const entry of this.entries.values()) {
      if (entry.state === 'inflight') {
        clearTimeout(entry.timer);
        entry.timer = undefined;
        entry.state = 'queued';
        entry.ref = undefined;
      }
    }
  }

  /** Settle an entry: resolve with the ack, or reject with `err`. */
  settle(clientMsgId, ack, err) {
    const entry = this.entries.get(clientMsgId);
    if (!entry) return false;
    clearTimeout(entry.timer);
    this.entries.delete(clientMsgId);
    if (err) entry.reject(err);
    else entry.resolve(ack);
    return true;
  }

  /** Reject everything (the client was closed). */
  rejectAll(err) {
    for (const id of [...this.entries.keys()]) this.settle(id, undefined, err);
  }
}
