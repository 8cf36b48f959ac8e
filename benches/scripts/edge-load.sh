#!/usr/bin/env bash
# What an edge costs and what it saves (docs/deployment.md, "Capacity"): an origin, one edge
# (`--origin`), one 2.5 Mb/s 720p30 stream published to the origin by ffmpeg, and in turn:
#   idle   the edge follows the stream with no viewer of its own
#   edge   N LL-HLS viewers (zerocast-load hls) on the edge
#   origin the same N viewers on the origin directly
# For each: CPU of the origin and of the edge (from /proc, % of one core), the requests that
# reached the origin per part it made (from its /metrics), the viewers' part latency and errors.
# Usage: benches/scripts/edge-load.sh [viewers=1000] [seconds=20]
# Environment: ZEROCAST_BIN, ZEROCAST_LOAD_BIN, NO_BUILD=1 (as hls-load.sh); ports 19371-19374.
set -euo pipefail
cd "$(dirname "$0")/../.."
viewers="${1:-1000}"; seconds="${2:-20}"
server_bin="${ZEROCAST_BIN:-target/release/zerocast}"
load_bin="${ZEROCAST_LOAD_BIN:-target/release/zerocast-load}"
if [[ -z "${NO_BUILD:-}" ]]; then
  cargo build --release -q -p zerocast-edge -p zerocast-benches
fi
ulimit -n 16384 || true
o_rtmp=19371; o_http=19372; e_rtmp=19373; e_http=19374
odata=$(mktemp -d); edata=$(mktemp -d); origin=; edge=; ff=
trap 'kill $ff $edge $origin 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$odata" "$edata"' EXIT
export ZEROCAST_SOCIAL=false ZEROCAST_MAX_CONNECTIONS_PER_IP=0
"$server_bin" serve --rtmp 127.0.0.1:$o_rtmp --http 127.0.0.1:$o_http --data-dir "$odata" \
  2> /tmp/zerocast-edge-load-origin.log &
origin=$!
"$server_bin" serve --rtmp 127.0.0.1:$e_rtmp --http 127.0.0.1:$e_http --data-dir "$edata" \
  --origin http://127.0.0.1:$o_http --edge-linger 600000 2> /tmp/zerocast-edge-load-edge.log &
edge=$!
sleep 0.5
ffmpeg -hide_banner -loglevel error -nostdin -re -f lavfi -i testsrc2=size=1280x720:rate=30 \
  -f lavfi -i sine=frequency=440:sample_rate=48000 -c:v libx264 -preset veryfast \
  -tune zerolatency -g 60 -b:v 2300k -maxrate 2500k -bufsize 2500k -c:a aac -b:a 128k \
  -f flv rtmp://127.0.0.1:$o_rtmp/live/demo &
ff=$!
sleep 4
# The edge starts following on its first request.
curl -sf -o /dev/null --max-time 15 http://127.0.0.1:$e_http/live/demo/index.m3u8
sleep 2
hz=$(getconf CLK_TCK)
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
metric() { curl -s "http://127.0.0.1:$1/metrics" | awk -v s="$2" 'index($1, s) == 1 {t += $2} END {print t + 0}'; }
counts() {
  echo "$(metric $o_http 'zerocast_http_request_duration_seconds_count{kind="part"}')" \
    "$(metric $o_http 'zerocast_http_request_duration_seconds_count{kind="playlist"}')" \
    "$(metric $o_http 'zerocast_parts_total')"
}
rows=()
run() { # label, url or "", seconds
  local label=$1 url=$2 secs=$3 report
  report=$(mktemp)
  read -r p0 l0 m0 < <(counts); o0=$(ticks $origin); e0=$(ticks $edge); w0=$(date +%s.%N)
  if [[ -n "$url" ]]; then
    "$load_bin" hls --url "$url" --viewers "$viewers" --duration "$secs" > "$report" || true
  else
    sleep "$secs"
  fi
  read -r p1 l1 m1 < <(counts); o1=$(ticks $origin); e1=$(ticks $edge); w1=$(date +%s.%N)
  local w; w=$(echo "$w1 - $w0" | bc -l)
  pct() { awk -v t="$1" -v hz="$hz" -v w="$w" 'BEGIN {printf "%.1f", t * 100 / hz / w}'; }
  field() { grep -m1 "^  $1 " "$report" | sed "s#^  $1 *##" | awk '{print $1}'; }
  local made=$((m1 - m0))
  rows+=("$(printf '| %s | %s %% | %s %% | %s | %s / %s | %s / %s | %s |' "$label" \
    "$(pct $((o1 - o0)))" "$(pct $((e1 - e0)))" "$made" "$((p1 - p0))" "$((l1 - l0))" \
    "$(field 'part latency p50' || true)" "$(field 'part latency p99' || true)" \
    "$(field 'errors' || true)")")
  [[ -n "$url" ]] && { echo "== $label"; cat "$report"; }
  rm -f "$report"
}
run "edge following, no viewers" "" "$seconds"
run "$viewers viewers on the edge" "http://127.0.0.1:$e_http/live/demo/index.m3u8" "$seconds"
run "$viewers viewers on the origin" "http://127.0.0.1:$o_http/live/demo/index.m3u8" "$seconds"
echo
echo "one 2.5 Mb/s stream, $seconds s per row, $(nproc) cores ($(date -u +%FT%TZ), $(git rev-parse --short HEAD))"
echo "| load | origin CPU | edge CPU | parts made | origin part / playlist requests | part latency p50 / p99 ms | errors |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
printf '%s\n' "${rows[@]}"
