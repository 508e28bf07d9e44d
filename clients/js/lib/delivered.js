// Automatic `delivered` receipts (docs/protocol.md, Receipts and unread counts).
//
// Owns the batch of rooms whose received messages are still to be reported:
// the highest seq per room, flushed as one `receipt` per room every `flushMs`.
// Reporting moves the user's `delivered_seq` (message status for senders, and
// the replay start of clients that resume without `since`) at a few frames a
// second however busy the room, well inside the server's receipt rate.

export class DeliveredReporter {
  /**
   * @param {number} flushMs How long receipts are collected before they go out.
   * @param {(room: string, seq: number) => void} report Sends one receipt.
   */
  constructor(flushMs, report) {
    this.flushMs = flushMs;
    this.report = report;
    /** @type {Map<string, number>} room -> highest seq to report */
    this.due = new Map();
    this.timer = undefined;
  }

  /** A message of `room` with `seq` was handed to the app. */
  add(room, seq) {
    if (seq > (this.due.get(room) ?? 0)) this.due.set(room, seq);
    if (this.timer !== undefined) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      const due = [...this.due];
      this.due.clear();
      for (const [r, s] of due) this.report(r, s);
    }, this.flushMs);
  }

  /** The socket is gone: nothing to report on it (the next connection resumes by position). */
  clear() {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.due.clear();
  }
}
