#!/usr/bin/env python3
"""Scrapes a zerocast /metrics endpoint repeatedly and checks every histogram of every scrape:
buckets cumulative (never decreasing with `le`), the `+Inf` bucket equal to `_count`, and no
count going backwards between scrapes. Run it beside a load (benches/scripts/hls-load.sh).

Usage: benches/scripts/check-metrics.py URL [SECONDS=20]
Prints one line per scrape problem and a summary; exit status 1 if any scrape was torn.
"""
import re
import sys
import time
import urllib.request

LINE = re.compile(r'^(\w+)_(bucket|count)\{?([^}]*)\}?\s+(\S+)')


def parse(text):
    """{(family, labels without le): {"buckets": [(le, v)], "count": v}}"""
    hist = {}
    for line in text.splitlines():
        m = LINE.match(line)
        if not m:
            continue
        name, kind, labels, value = m.groups()
        le = None
        rest = []
        for kv in filter(None, labels.split(",")):
            k, _, v = kv.partition("=")
            if k == "le":
                le = float(v.strip('"').replace("+Inf", "inf"))
            else:
                rest.append(kv)
        h = hist.setdefault((name, ",".join(sorted(rest))), {"buckets": [], "count": None})
        if kind == "bucket" and le is not None:
            h["buckets"].append((le, float(value)))
        elif kind == "count":
            h["count"] = float(value)
    return hist


def main():
    url = sys.argv[1]
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 20.0
    end = time.time() + seconds
    scrapes, problems, last = 0, 0, {}
    while time.time() < end:
        try:
            text = urllib.request.urlopen(url, timeout=5).read().decode()
        except OSError as e:
            if scrapes:
                print(f"server gone after {scrapes} scrapes ({e})")
                break
            time.sleep(0.2)  # not up yet
            continue
        scrapes += 1
        for key, h in parse(text).items():
            b = sorted(h["buckets"])
            if not b:
                continue
            bad = [(x, y) for x, y in zip(b, b[1:]) if y[1] < x[1]]
            if bad or b[-1][0] != float("inf") or b[-1][1] != h["count"]:
                problems += 1
                print(f"torn {key}: buckets {b[-3:]} count {h['count']}")
            if h["count"] is not None and h["count"] < last.get(key, 0):
                problems += 1
                print(f"count went back {key}: {last[key]} -> {h['count']}")
            last[key] = h["count"] or 0
    print(f"{scrapes} scrapes of {url}, {len(last)} histograms each, {problems} problems")
    return 1 if problems or not scrapes else 0


if __name__ == "__main__":
    sys.exit(main())
