// A minimal typed event emitter (no dependency on Node's `events` or the DOM's
// EventTarget, so it runs the same in browsers and Node).
//
// Owns listener lists only. A listener that throws does not stop the others or
// the client: the exception is reported on the `error` event (or, for a failing
// `error` listener, rethrown asynchronously so it is not lost).

export class Emitter {
  constructor() {
    /** @type {Map<string, Set<Function>>} */
    this.listeners = new Map();
  }

  /** Add a listener; returns a function that removes it. */
  on(type, fn) {
    let set = this.listeners.get(type);
    if (!set) this.listeners.set(type, (set = new Set()));
    set.add(fn);
    return () => this.off(type, fn);
  }

  /** Add a listener called at most once. */
  once(type, fn) {
    const off = this.on(type, (data) => {
      off();
      fn(data);
    });
    return off;
  }

  off(type, fn) {
    this.listeners.get(type)?.delete(fn);
  }

  emit(type, data) {
    const set = this.listeners.get(type);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn(data);
      } catch (err) {
        if (type === 'error' || !this.listeners.get('error')?.size) {
          setTimeout(() => {
            throw err;
          });
        } else {
          this.emit('error', err);
        }
      }
    }
  }
}
