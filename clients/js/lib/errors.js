// HeraldError: the one error type the client rejects promises with and emits.
//
// Owns the vocabulary: the server's error codes (docs/protocol.md, Error codes)
// pass through unchanged, and the client adds its own for what happens on its
// side: `not_connected`, `timeout`, `closed`, `outbox_full`, `too_large`
// (a frame over `maxFrameBytes`), `token_refresh_failed`.

export class HeraldError extends Error {
  /**
   * @param {string} code Machine-readable code.
   * @param {string} message Human-readable text.
   * @param {object} [extra] The error frame's other top-level fields (`retry_after_ms`, `room`, `ref`).
   */
  constructor(code, message, extra = {}) {
    super(message);
    this.name = 'HeraldError';
    this.code = code;
    this.retryAfterMs = extra.retry_after_ms;
    this.room = extra.room;
    this.ref = extra.ref;
  }

  /** From a server `error` frame. */
  static fromFrame(frame) {
    return new HeraldError(frame.code ?? 'internal', frame.error ?? 'unknown error', frame);
  }
}

/** Server codes after which a `send` is retried with the same `client_msg_id`. */
export const RETRYABLE_SEND_CODES = new Set(['unavailable', 'rate_limited']);
