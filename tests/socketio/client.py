"""Drives the official python-socketio client for Herald's compatibility tests.

Usage: python3 client.py URL TOKEN [websocket|polling|default]
Same line protocol as client.mjs: JSON events on stdout, JSON commands on stdin.
"""
import json
import sys
import threading

import socketio

url, token, mode = sys.argv[1], sys.argv[2], (sys.argv[3] if len(sys.argv) > 3 else "default")
lock = threading.Lock()


def out(obj):
    with lock:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()


sio = socketio.Client(reconnection=False)


@sio.event
def connect():
    out({"event": "connect", "transport": sio.transport()})


@sio.event
def connect_error(data):
    out({"event": "connect_error", "message": data.get("message") if isinstance(data, dict) else str(data)})


@sio.event
def disconnect(*args):
    out({"event": "disconnect", "reason": str(args[0]) if args else "client"})


@sio.on("*")
def any_event(name, data=None):
    out({"event": "server", "name": name, "data": data})


def connect_now():
    transports = {"websocket": ["websocket"], "polling": ["polling"]}.get(mode, ["polling", "websocket"])
    try:
        sio.connect(url, auth={"token": token}, transports=transports, wait_timeout=20)
    except socketio.exceptions.ConnectionError as e:
        out({"event": "connect_error", "message": str(e)})


connect_now()
for line in sys.stdin:
    cmd = json.loads(line)
    if "emit" in cmd:
        try:
            reply = sio.call(cmd["emit"], cmd.get("data", {}), timeout=15)
        except Exception as e:  # noqa: BLE001 - reported to the test as a failure
            reply = {"timeout": str(e)}
        out({"event": "ack", "name": cmd["emit"], "reply": reply})
    elif cmd.get("do") == "disconnect":
        sio.disconnect()
    elif cmd.get("do") == "connect":
        connect_now()
    elif cmd.get("do") == "exit":
        break
sio.disconnect()
