#!/usr/bin/env python3
"""Opens N HTTP/1.1 keep-alive connections, makes one request on each, reads the whole
response, then keeps every connection open and idle until SIGTERM.

Used by mem-soak.sh to measure a server's memory per idle keep-alive viewer connection.
Usage: idle-conns.py HOST PORT COUNT PATH
Prints "ready OPEN STATUS..." once every response is in (OPEN: connections the server has
not closed), then "open OPEN" every 5 s while holding them.
"""

import selectors
import signal
import socket
import sys
import time

BATCH = 500  # connections in flight at once (the accept backlog is 4096 by default)


def main():
    host, port, count, path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: idle-conns\r\n\r\n".encode()
    sel = selectors.DefaultSelector()
    done = []  # sockets whose response is complete
    statuses = {}
    pending = 0
    started = 0
    deadline = time.monotonic() + 120

    def response_complete(buf):
        head_end = buf.find(b"\r\n\r\n")
        if head_end < 0:
            return None
        head = buf[:head_end].decode("latin-1").split("\r\n")
        status = head[0].split(" ")[1] if " " in head[0] else "?"
        length = 0
        for line in head[1:]:
            k, _, v = line.partition(":")
            if k.strip().lower() == "content-length":
                length = int(v.strip())
        if len(buf) >= head_end + 4 + length:
            return status
        return None

    while len(done) < count and time.monotonic() < deadline:
        while pending < BATCH and started < count:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.connect_ex((host, port))
            sel.register(s, selectors.EVENT_WRITE, {"sent": False, "buf": b""})
            pending += 1
            started += 1
        for key, mask in sel.select(timeout=1):
            s, st = key.fileobj, key.data
            if not st["sent"]:
                if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    sel.unregister(s)
                    s.close()
                    pending -= 1
                    statuses["connect-error"] = statuses.get("connect-error", 0) + 1
                    continue
                s.send(request)
                st["sent"] = True
                sel.modify(s, selectors.EVENT_READ, st)
                continue
            try:
                data = s.recv(65536)
            except OSError:
                data = b""
            if not data:
                sel.unregister(s)
                s.close()
                pending -= 1
                statuses["closed-early"] = statuses.get("closed-early", 0) + 1
                continue
            st["buf"] += data
            status = response_complete(st["buf"])
            if status is not None:
                sel.unregister(s)
                pending -= 1
                statuses[status] = statuses.get(status, 0) + 1
                done.append(s)

    # Watch the idle connections for the server closing them.
    for s in done:
        sel.register(s, selectors.EVENT_READ)
    open_ = len(done)

    def count_closed(timeout):
        nonlocal open_
        for key, _ in sel.select(timeout=timeout):
            s = key.fileobj
            sel.unregister(s)
            s.close()
            open_ -= 1

    count_closed(0)
    summary = " ".join(f"{k}:{v}" for k, v in sorted(statuses.items()))
    print(f"ready {open_} {summary}", flush=True)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    last = time.monotonic()
    while not stop:
        count_closed(1)
        if time.monotonic() - last >= 5:
            print(f"open {open_}", flush=True)
            last = time.monotonic()


if __name__ == "__main__":
    main()
