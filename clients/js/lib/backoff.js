// Reconnect delays: exponential backoff with jitter, capped.
//
// Owns only the arithmetic and the attempt counter; the client decides when to
// wait (after a connection is lost or refused) and when to reset (once a
// connection has reached `sync`). A reconnect storm meets the server's per-user
// and per-address connection rates (docs/protocol.md, Limits), so every client
// backs off and the jitter spreads clients that lost the same server at once.

/**
 * @typedef {object} BackoffOptions
 * @property {number} [initialMs=500] Delay before the first retry, before jitter.
 * @property {number} [maxMs=30000] Cap on any delay, before jitter.
 * @property {number} [factor=2] Growth per failed attempt.
 * @property {number} [jitter=0.5] Fraction of the delay that is random, 0..1:
 *   a delay is drawn uniformly from [raw * (1 - jitter), raw].
 * @property {() => number} [random=Math.random] Source of randomness in [0, 1) (tests pass their own).
 */

export class Backoff {
  /** @param {BackoffOptions} [options] */
  constructor(options = {}) {
    this.initialMs = options.initialMs ?? 500;
    this.maxMs = options.maxMs ?? 30000;
    this.factor = options.factor ?? 2;
    this.jitter = options.jitter ?? 0.5;
    this.random = options.random ?? Math.random;
    if (!(this.initialMs > 0) || !(this.maxMs >= this.initialMs)) {
      throw new RangeError('backoff needs 0 < initialMs <= maxMs');
    }
    if (!(this.factor >= 1)) throw new RangeError('backoff factor must be >= 1');
    if (!(this.jitter >= 0 && this.jitter <= 1)) throw new RangeError('backoff jitter must be in [0, 1]');
    /** Failed attempts since the last reset. */
    this.attempt = 0;
  }

  /** The delay before the next attempt, in ms; counts the attempt. */
  next() {
    const raw = Math.min(this.maxMs, this.initialMs * this.factor ** this.attempt);
    this.attempt += 1;
    return Math.round(raw * (1 - this.jitter * this.random()));
  }

  /** Bounds [min, max] of the delay `next()` would return now (for docs and tests). */
  bounds() {
    const raw = Math.min(this.maxMs, this.initialMs * this.factor ** this.attempt);
    return [Math.round(raw * (1 - this.jitter)), raw];
  }

  /** A connection succeeded: start again from `initialMs`. */
  reset() {
    this.attempt = 0;
  }
}
