# The Python `websockets` client (which offers permessage-deflate by default) on Herald's
# native socket: prints one JSON object with what was negotiated and what came back.
# Usage: python native_ws.py WS_URL ROOM TEXT
import asyncio
import json
import sys

from websockets.asyncio.client import connect


async def reply(ws, ref):
    while True:
        frame = json.loads(await ws.recv())
        if frame.get("ref") == ref:
            return frame


async def main(url, room, text):
    async with connect(url, max_size=None) as ws:
        extensions = [e.name for e in ws.protocol.extensions]
        await ws.send(json.dumps({"type": "join", "ref": "j", "data": {"room": room}}))
        joined = await reply(ws, "j")
        await ws.send(json.dumps({"type": "send", "ref": "s", "data": {"room": room, "kind": "text", "body": {"text": text}}}))
        sent = await reply(ws, "s")
        await ws.send(json.dumps({"type": "history", "ref": "h", "data": {"room": room}}))
        history = await reply(ws, "h")
        print(json.dumps({"extensions": extensions, "joined": joined["type"], "sent": sent, "history": history}))


asyncio.run(asyncio.wait_for(main(*sys.argv[1:4]), 20))
