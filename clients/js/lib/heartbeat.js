// The client side of the heartbeat (docs/protocol.md, Heartbeat).
//
// Owns two clocks of one socket: when a frame was last received and last sent.
// The server pings every `heartbeat_interval_ms` and drops a client silent for
// two intervals, but browsers neither expose WebSocket pings nor let a page
// send them; so the client sends an application `ping` frame whenever it has
// sent nothing for an interval (the server answers `pong`), and treats a socket
// that has received nothing for `timeoutMs` as dead: a half-open TCP link or a
// sleeping laptop's network never delivers a close event in time.

export class Heartbeat {
  /**
   * @param {object} options
   * @param {number} options.intervalMs Ping when nothing was sent for this long.
   * @param {number} options.timeoutMs Declare the socket dead after this long without a frame.
   * @param {() => void} options.ping Send an application ping.
   * @param {(silentMs: number) => void} options.dead Called once when the deadline passes.
   */
  constructor({ intervalMs, timeoutMs, ping, dead }) {
    this.intervalMs = intervalMs;
    this.timeoutMs = timeoutMs;
    this.ping = ping;
    this.dead = dead;
    this.lastReceived = Date.now();
    this.lastSent = Date.now();
    // Checked at half the shorter period, so a deadline is noticed at most that late.
    const tick = Math.max(10, Math.min(intervalMs, timeoutMs) / 2);
    this.timer = setInterval(() => this.check(), tick);
  }

  received() {
    this.lastReceived = Date.now();
  }

  sent() {
    this.lastSent = Date.now();
  }

  check() {
    const now = Date.now();
    if (now - this.lastReceived > this.timeoutMs) {
      this.stop();
      this.dead(now - this.lastReceived);
    } else if (now - this.lastSent >= this.intervalMs) {
      this.ping();
    }
  }

  stop() {
    clearInterval(this.timer);
  }
}
