#!/usr/bin/env bash
# Reproduces docs/performance.md: one 2.5 Mb/s 720p30 stream published by ffmpeg, N LL-HLS
# viewers from zerocast-load, the server's CPU and RSS sampled from /proc.
# Usage: benches/scripts/hls-load.sh [viewers=1000] [seconds=20] [driver=auto]
set -euo pipefail
cd "$(dirname "$0")/../.."
viewers="${1:-1000}"; seconds="${2:-20}"; driver="${3:-auto}"
rtmp=19361; http=18091
cargo build --release -q -p zerocast-edge -p zerocast-benches
ulimit -n 16384 || true
"${ZEROCAST_BIN:-target/release/zerocast}" serve --rtmp 127.0.0.1:$rtmp --http 127.0.0.1:$http --driver "$driver" \
  2> /tmp/zerocast-load-server.log &
server=$!
trap 'kill $server $ff 2>/dev/null || true' EXIT
sleep 0.5
ffmpeg -hide_banner -loglevel error -re -f lavfi -i testsrc2=size=1280x720:rate=30 \
  -f lavfi -i sine=frequency=440:sample_rate=48000 -c:v libx264 -preset veryfast \
  -tune zerolatency -g 60 -b:v 2300k -maxrate 2500k -bufsize 2500k -c:a aac -b:a 128k \
  -f flv rtmp://127.0.0.1:$rtmp/live/demo &
ff=$!
sleep 4
target/release/zerocast-load hls --url http://127.0.0.1:$http/live/demo/index.m3u8 \
  --viewers "$viewers" --duration "$seconds" --server-pid $server
echo
echo "server-added latency (from /metrics):"
curl -s http://127.0.0.1:$http/metrics | grep -E '^zerocast_(chunk|part)_latency_seconds_(bucket|count|sum)' \
  | awk '{print "  " $0}'
