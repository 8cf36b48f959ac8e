#!/usr/bin/env python3
"""A real HTTP/3 client (aioquic) for the zerocast tests.

    python3 tests/h3/get.py --connect 127.0.0.1:8443 [--insecure] PATH [PATH ...]
    python3 tests/h3/get.py --connect 127.0.0.1:8443 --insecure --flood N [--hold S] PATH

Opens ONE QUIC connection, sends GET for each PATH in turn (the next after the previous
response completes, so a path may depend on nothing but the server's state) and prints one
line of JSON per request:

    {"path": ..., "status": 200, "headers": {...}, "length": N, "body": "text or null",
     "data_frames": N, "ms": elapsed, "alpn": "h3"}

`body` is the body as text for playlists, MPDs and JSON, null for media. Exit 0 when every request
got a response (whatever its status), 2 on a connection or protocol failure (message on stderr).

`--flood N` opens N connections at once instead (a flood of new QUIC connections), each
sending one GET of the first PATH and then holding the connection for `--hold` seconds, and
prints {"flood": N, "connected": K, "answered": A, "failed": F}.
"""

import argparse
import asyncio
import json
import ssl
import sys
import time

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration


class Client(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.http = H3Connection(self._quic)
        self.pending = {}

    def quic_event_received(self, event):
        for ev in self.http.handle_event(event):
            r = self.pending.get(getattr(ev, "stream_id", None))
            if r is None:
                continue
            if isinstance(ev, HeadersReceived):
                if r["headers"] is None:
                    r["headers"] = ev.headers
            elif isinstance(ev, DataReceived):
                r["data"] += ev.data
                r["frames"] += 1
            if getattr(ev, "stream_ended", False) and not r["done"].done():
                r["done"].set_result(None)

    async def get(self, authority, path, timeout):
        sid = self._quic.get_next_available_stream_id()
        r = {"headers": None, "data": b"", "frames": 0,
             "done": asyncio.get_running_loop().create_future()}
        self.pending[sid] = r
        self.http.send_headers(
            sid,
            [(b":method", b"GET"), (b":scheme", b"https"),
             (b":authority", authority.encode()), (b":path", path.encode()),
             (b"user-agent", b"zerocast-tests-aioquic")],
            end_stream=True,
        )
        self.transmit()
        start = time.monotonic()
        await asyncio.wait_for(r["done"], timeout)
        del self.pending[sid]
        headers = {}
        status = None
        for k, v in r["headers"] or []:
            k, v = k.decode(), v.decode(errors="replace")
            if k == ":status":
                status = int(v)
            else:
                headers[k] = v
        ctype = headers.get("content-type", "")
        text = None
        if "mpegurl" in ctype or "json" in ctype or "xml" in ctype or ctype.startswith("text/"):
            text = r["data"].decode(errors="replace")
        return {"path": path, "status": status, "headers": headers, "length": len(r["data"]),
                "body": text, "head_hex": r["data"][:16].hex(), "data_frames": r["frames"],
                "ms": round((time.monotonic() - start) * 1000, 1)}


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--connect", required=True, help="HOST:PORT (UDP)")
    ap.add_argument("--insecure", action="store_true", help="do not verify the certificate")
    ap.add_argument("--cafile", help="trust this certificate (PEM)")
    ap.add_argument("--timeout", type=float, default=15.0, help="seconds per request")
    ap.add_argument("--flood", type=int, default=0, help="open this many connections at once")
    ap.add_argument("--hold", type=float, default=2.0, help="seconds each flood connection stays")
    ap.add_argument("paths", nargs="+")
    a = ap.parse_args()
    host, port = a.connect.rsplit(":", 1)

    def config():
        cfg = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, server_name="localhost")
        if a.insecure:
            cfg.verify_mode = ssl.CERT_NONE
        if a.cafile:
            cfg.load_verify_locations(a.cafile)
        return cfg

    if a.flood:
        counts = {"connected": 0, "answered": 0, "failed": 0}

        async def one():
            try:
                async with connect(host, int(port), configuration=config(), create_protocol=Client,
                                   wait_connected=True) as client:
                    counts["connected"] += 1
                    res = await client.get(f"{host}:{port}", a.paths[0], a.timeout)
                    if res["status"] == 200:
                        counts["answered"] += 1
                    await asyncio.sleep(a.hold)
            except Exception:  # noqa: BLE001 - a refused or failed connection is counted
                counts["failed"] += 1

        await asyncio.gather(*(one() for _ in range(a.flood)))
        print(json.dumps({"flood": a.flood, **counts}), flush=True)
        return
    cfg = config()
    try:
        async with connect(host, int(port), configuration=cfg, create_protocol=Client,
                           wait_connected=True) as client:
            alpn = client._quic.tls.alpn_negotiated
            for p in a.paths:
                res = await client.get(f"{host}:{port}", p, a.timeout)
                res["alpn"] = alpn
                print(json.dumps(res), flush=True)
    except Exception as e:  # noqa: BLE001 - any failure is a harness failure
        print(f"get.py: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    asyncio.run(main())
