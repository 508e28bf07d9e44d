// A TCP proxy in front of Herald that tests can make lossy: stop relaying one
// direction (bytes are dropped, as on a dead link), or cut every connection.
//
// Owns only sockets; it knows nothing of WebSocket framing, which is the point:
// the client must cope with a link that goes silent or vanishes.

import net from 'node:net';

export async function startProxy(targetPort) {
  const pairs = new Set();
  const state = { dropDown: false, dropUp: false };
  const server = net.createServer((down) => {
    const up = net.connect(targetPort, '127.0.0.1');
    const pair = { down, up };
    pairs.add(pair);
    down.on('data', (b) => state.dropUp || up.write(b));
    up.on('data', (b) => state.dropDown || down.write(b));
    const end = () => {
      pairs.delete(pair);
      down.destroy();
      up.destroy();
    };
    down.on('close', end).on('error', end);
    up.on('close', end).on('error', end);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const port = server.address().port;
  return {
    url: `ws://127.0.0.1:${port}/v1/ws`,
    /** Drop server -> client bytes (acks and messages are lost) on live connections. */
    dropDownstream(on = true) {
      state.dropDown = on;
    },
    /** Drop both directions: the link is silent but not closed. */
    blackhole(on = true) {
      state.dropDown = on;
      state.dropUp = on;
    },
    /** Destroy every live connection; new ones relay normally. */
    cutAll() {
      state.dropDown = state.dropUp = false;
      for (const { down, up } of pairs) {
        down.destroy();
        up.destroy();
      }
      pairs.clear();
    },
    get connections() {
      return pairs.size;
    },
    async stop() {
      this.cutAll();
      await new Promise((r) => server.close(r));
    },
  };
}
