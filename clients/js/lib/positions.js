// Resume positions: per room, the last seq this client holds.
//
// Owns the continuity bookkeeping of docs/protocol.md "Continuity and resume":
// where each room's stream stands, the `since=<room>:<seq>,...` query of the next
// connection, and the defensive drop of a `message` frame the client already
// holds (the server promises no duplicates; this makes the promise cheap to keep
// across reconnects). The client's own messages reach it as `send` acks, not as
// frames, and the server's stream moves past them; an acked seq just above the
// position is absorbed, one further ahead waits until the frames before it came.

export class Positions {
  /** @param {Record<string, number>} [initial] Positions saved by the app from an earlier run. */
  constructor(initial = {}) {
    /** @type {Map<string, number>} room -> last seq held */
    this.seq = new Map();
    /** @type {Map<string, Set<number>>} room -> own acked seqs above the position */
    this.ownAhead = new Map();
    for (const [room, seq] of Object.entries(initial)) {
      if (Number.isInteger(seq) && seq >= 0) this.seq.set(room, seq);
    }
  }

  /** Last seq held in `room`, or undefined when the room is unknown. */
  get(room) {
    return this.seq.get(room);
  }

  /** A plain object room -> seq, for the app to persist. */
  toJSON() {
    return Object.fromEntries(this.seq);
  }

  /** The `since` query value, or '' when nothing is known. */
  sinceParam() {
    return [...this.seq].map(([room, seq]) => `${room}:${seq}`).join(',');
  }

  /**
   * A `message` frame arrived. Returns false for one already held (drop it).
   * @param {string} room
   * @param {number} seq
   */
  accept(room, seq) {
    const held = this.seq.get(room);
    if (held !== undefined && seq <= held) return false;
    // A replay of our own acked message (the app has it from the ack): held, not new.
    const own = this.ownAhead.get(room)?.has(seq) ?? false;
    this.seq.set(room, seq);
    this.absorbOwn(room);
    return !own;
  }

  /** The server's stream of `room` continues after `seq` (sync `position`, join ack, replay_truncated). */
  startAt(room, seq) {
    this.seq.set(room, seq);
    const own = this.ownAhead.get(room);
    if (own) for (const s of own) if (s <= seq) own.delete(s);
    this.absorbOwn(room);
  }

  /** Like `startAt`, but only for a room not known yet. */
  startIfUnknown(room, seq) {
    if (!this.seq.has(room)) this.startAt(room, seq);
  }

  /** One of this client's sends was acked with `seq` in `room`. */
  ownAcked(room, seq) {
    const held = this.seq.get(room);
    // A room first seen through our own send (a new direct room) gets no position yet:
    // frames of others with lower seqs may still be on their way, and must not be dropped.
    if (held !== undefined && seq <= held) return;
    let own = this.ownAhead.get(room);
    if (!own) this.ownAhead.set(room, (own = new Set()));
    own.add(seq);
    this.absorbOwn(room);
  }

  /** Forget rooms the user is no longer a member of. @param {Iterable<string>} rooms rooms to keep */
  retain(rooms) {
    const keep = new Set(rooms);
    for (const room of [...this.seq.keys()]) {
      if (!keep.has(room)) this.forget(room);
    }
  }

  forget(room) {
    this.seq.delete(room);
    this.ownAhead.delete(room);
  }

  /** @private Move the position over own acked seqs that now follow it. */
  absorbOwn(room) {
    const own = this.ownAhead.get(room);
    if (!own || !this.seq.has(room)) return;
    let held = this.seq.get(room);
    for (const s of own) if (s <= held) own.delete(s);
    while (own.delete(held + 1)) held += 1;
    this.seq.set(room, held);
    if (own.size === 0) this.ownAhead.delete(room);
  }
}
