// Drives the official socket.io-client for Herald's compatibility tests.
// Usage: node client.mjs URL TOKEN [websocket|default] [AUTH_JSON]
// AUTH_JSON: more fields of the CONNECT auth object (e.g. {"since":{"public:x":12}}).
// Prints one JSON object per line on stdout for every event; reads commands, one JSON object
// per line on stdin: {"emit": NAME, "data": {...}} (with acknowledgement), {"do": "disconnect"},
// {"do": "connect"}, {"do": "exit"}.
import { io } from "socket.io-client";
import readline from "node:readline";

const [url, token, mode, extraAuth] = process.argv.slice(2);
const out = (o) => process.stdout.write(JSON.stringify(o) + "\n");
const socket = io(url, {
  auth: { token, ...(extraAuth ? JSON.parse(extraAuth) : {}) },
  transports: mode === "websocket" ? ["websocket"] : undefined,
  reconnection: false,
  timeout: 20000,
});

// The Engine.IO handshake: which transport opened the session, and any later upgrade.
socket.io.on("open", () => {
  out({ event: "open", transport: socket.io.engine.transport.name });
  socket.io.engine.on("upgrade", (t) => out({ event: "upgrade", transport: t.name, extensions: t.ws?.extensions ?? null }));
});
// `extensions`: what the WebSocket negotiated (the `ws` package offers permessage-deflate).
socket.on("connect", () => out({ event: "connect", transport: socket.io.engine.transport.name, recovered: socket.recovered, extensions: socket.io.engine.transport.ws?.extensions ?? null }));
socket.on("connect_error", (err) => out({ event: "connect_error", message: err.message }));
socket.on("disconnect", (reason) => out({ event: "disconnect", reason }));
socket.onAny((name, data) => out({ event: "server", name, data }));

const rl = readline.createInterface({ input: process.stdin });
rl.on("line", async (line) => {
  const cmd = JSON.parse(line);
  if (cmd.emit) {
    const reply = await socket.timeout(15000).emitWithAck(cmd.emit, cmd.data ?? {}).catch((e) => ({ timeout: String(e) }));
    out({ event: "ack", name: cmd.emit, reply });
  } else if (cmd.do === "disconnect") {
    socket.disconnect();
  } else if (cmd.do === "connect") {
    socket.connect();
  } else if (cmd.do === "exit") {
    process.exit(0);
  }
});
setTimeout(() => process.exit(3), 60000);
