# Bytes on the wire for typical chat traffic, with and without permessage-deflate
# (docs/benchmarks.md, "Compression"). Talks to a running Herald through a counting TCP
# proxy: two users in a room, a conversation of N messages of everyday lengths, typing
# indicators, read receipts and a history page, once with the `websockets` client's default
# offer (compression) and once with compression=None.
# Usage: python wire_bytes.py HOST:PORT TOKEN_A TOKEN_B [N]
import asyncio
import json
import random
import sys

from websockets.asyncio.client import connect

WORDS = ("ok sure thanks see you tomorrow at the meeting can you send me the link to the "
         "document I will review it tonight great work on the release yes no maybe later "
         "let's talk after lunch the build is green again I pushed a fix for the login bug").split()


def sentence(rng):
    # Lengths of everyday chat: mostly short, some long.
    n = rng.choice([2, 3, 5, 8, 12, 20, 40])
    return " ".join(rng.choice(WORDS) for _ in range(n))


class Counter:
    def __init__(self):
        self.down = 0  # server -> client
        self.up = 0


async def pipe(reader, writer, counter, attr):
    try:
        while data := await reader.read(65536):
            setattr(counter, attr, getattr(counter, attr) + len(data))
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


async def proxy(target_host, target_port, counter):
    async def handle(cr, cw):
        sr, sw = await asyncio.open_connection(target_host, target_port)
        await asyncio.gather(pipe(cr, sw, counter, "up"), pipe(sr, cw, counter, "down"))

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def until(ws, pred):
    while True:
        f = json.loads(await ws.recv())
        if pred(f):
            return f


async def conversation(host, port, tokens, n, compression, room):
    counter = Counter()
    server, pport = await proxy(host, port, counter)
    kw = {} if compression else {"compression": None}
    rng = random.Random(7)
    async with connect(f"ws://127.0.0.1:{pport}/v1/ws?token={tokens[0]}", **kw) as a, \
            connect(f"ws://127.0.0.1:{pport}/v1/ws?token={tokens[1]}", **kw) as b:
        ext = [e.name for e in a.protocol.extensions]
        for i, ws in enumerate((a, b)):
            await ws.send(json.dumps({"type": "join", "ref": f"j{i}", "data": {"room": room}}))
            await until(ws, lambda f, i=i: f.get("ref") == f"j{i}")
        for i in range(n):
            sender, receiver = (a, b) if i % 2 == 0 else (b, a)
            await sender.send(json.dumps({"type": "typing", "data": {"room": room, "state": "start"}}))
            await sender.send(json.dumps({"type": "send", "ref": f"s{i}", "data": {"room": room, "kind": "text", "body": {"text": sentence(rng)}, "client_msg_id": f"{room}-{i}"}}))
            ack = await until(sender, lambda f, i=i: f.get("ref") == f"s{i}")
            assert ack["type"] == "ack", ack
            # Within the default send rate (HERALD_SEND_RATE) of each user.
            await asyncio.sleep(0.06)
            m = await until(receiver, lambda f: f.get("type") == "message")
            await receiver.send(json.dumps({"type": "receipt", "data": {"room": room, "seq": m["data"]["seq"], "status": "read"}}))
        await a.send(json.dumps({"type": "history", "ref": "h", "data": {"room": room, "limit": 50}}))
        await until(a, lambda f: f.get("ref") == "h")
        await asyncio.sleep(0.3)
    server.close()
    return {"compression": ext, "down": counter.down, "up": counter.up}


async def main():
    host, port = sys.argv[1].split(":")
    tokens = sys.argv[2:4]
    n = int(sys.argv[4]) if len(sys.argv) > 4 else 200
    off = await conversation(host, int(port), tokens, n, False, "public:wire-plain")
    on = await conversation(host, int(port), tokens, n, True, "public:wire-deflate")
    print(json.dumps({"messages": n, "plain": off, "deflate": on,
                      "down_ratio": round(on["down"] / off["down"], 3),
                      "up_ratio": round(on["up"] / off["up"], 3)}))


asyncio.run(main())
