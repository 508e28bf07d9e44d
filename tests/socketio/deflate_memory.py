# Server memory per compressed WebSocket connection (docs/benchmarks.md, "Compression"):
# opens N connections to the diagnostic echo endpoint (HERALD_DIAGNOSTICS=1) with the
# given offer, sends one compressible message on each (so any per-connection context is
# allocated), and reports the server's RSS growth per connection from /proc/PID/status.
# Usage: python deflate_memory.py HOST:PORT SERVER_PID N OFFER   (OFFER: none|default|takeover)
import asyncio
import json
import sys

from websockets.asyncio.client import connect
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])


async def main(addr, pid, n, offer):
    kw = {"max_size": None}
    if offer == "none":
        kw["compression"] = None
    elif offer == "takeover":
        # Offer without asking for independence: with HERALD_WS_DEFLATE_CONTEXT_TAKEOVER=true
        # the server keeps a context per connection in each direction.
        kw["extensions"] = [ClientPerMessageDeflateFactory(client_max_window_bits=True)]
        kw["compression"] = None
    conns = []
    before = rss_kib(pid)
    text = json.dumps({"type": "message", "text": "a compressible chat message " * 20})
    for _ in range(n):
        ws = await connect(f"ws://{addr}/v1/ws/echo", **kw)
        await ws.send(text)
        await ws.recv()
        conns.append(ws)
    await asyncio.sleep(1)
    after = rss_kib(pid)
    ext = [e.name for e in conns[0].protocol.extensions]
    for ws in conns:
        await ws.close()
    print(json.dumps({"offer": offer, "extensions": ext, "connections": n,
                      "rss_before_kib": before, "rss_after_kib": after,
                      "kib_per_connection": round((after - before) / n, 2)}))


asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]))
