#!/usr/bin/env bash
# Live latency as real players report it, in headless Chromium (tests/browser/play.mjs):
# dash.js and Shaka Player on zerocast's low-latency DASH, hls.js on its LL-HLS, and dash.js on
# nginx-rtmp's DASH (Debian nginx-light + libnginx-mod-rtmp) for comparison, one after the
# other in one session, each fed the same ffmpeg encode (720p30, 2 s GOP) over RTMP.
# Prints one table: latency median / mean / max as the player reports it, stalls, dropped
# frames.
# Usage: benches/scripts/player-latency.sh [seconds=20] [runs=1]
# Environment:
#   ZEROCAST_BIN   server binary (default target/release/zerocast; built unless NO_BUILD=1)
#   NGINX=0        skip the nginx-rtmp row (it needs nginx with the rtmp module installed)
#   RTMP_PORT, HTTP_PORT, NGINX_RTMP_PORT, NGINX_HTTP_PORT  loopback ports
#                  (default 19381, 18381, 19382, 18382)
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds="${1:-20}"; runs="${2:-1}"
server_bin="${ZEROCAST_BIN:-target/release/zerocast}"
[[ -n "${NO_BUILD:-}" ]] || cargo build --release -q -p zerocast-edge
[[ -d tests/browser/node_modules/dashjs ]] || { echo "run scripts/setup.sh first (npm packages)" >&2; exit 2; }
rtmp="${RTMP_PORT:-19381}"; http="${HTTP_PORT:-18381}"
nrtmp="${NGINX_RTMP_PORT:-19382}"; nhttp="${NGINX_HTTP_PORT:-18382}"
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [[ -f "$tmp/nginx.pid" ]] && kill "$(cat "$tmp/nginx.pid")" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

# One encode for everyone: x264 veryfast, zerolatency, 2 s GOP, 2.5 Mb/s, AAC.
publish() {
  ffmpeg -hide_banner -loglevel error -nostdin -re -f lavfi -i testsrc2=size=1280x720:rate=30 \
    -f lavfi -i sine=frequency=440:sample_rate=48000 -c:v libx264 -preset veryfast \
    -tune zerolatency -g 60 -b:v 2300k -maxrate 2500k -bufsize 2500k -c:a aac -b:a 128k \
    -f flv "$1" &
  pids+=($!)
}

rows=()
# play NAME PLAYER URL [CONFIG]: runs the harness `runs` times, one table row per run.
play() {
  local name=$1 player=$2 url=$3 config=${4:-"{}"}
  for _ in $(seq "$runs"); do
    local json
    json=$(node tests/browser/play.mjs --player "$player" --url "$url" --seconds "$seconds" \
      --player-config "$config" 2>"$tmp/play.err") || { cat "$tmp/play.err" >&2; json='{}'; }
    rows+=("$(python3 - "$name" "$json" <<'EOF'
import json, sys
name, v = sys.argv[1], json.loads(sys.argv[2] or "{}")
l = v.get("latency") or {}
f = lambda x: "-" if x is None else f"{x:.2f}"
print(f"| {name} | {f(l.get('median'))} | {f(l.get('mean'))} | {f(l.get('max'))} | "
      f"{v.get('stalls', '-')} | {v.get('droppedFrames', '-')}/{v.get('totalFrames', '-')} | "
      f"{v.get('playedSeconds', '-')} | {v.get('latencySource', '-')} |")
EOF
)")
  done
}

datadir="$tmp/data"
ZEROCAST_SOCIAL=false "$server_bin" serve --rtmp 127.0.0.1:"$rtmp" --http 127.0.0.1:"$http" \
  --data-dir "$datadir" 2> "$tmp/zerocast.log" &
pids+=($!)
sleep 0.5
publish "rtmp://127.0.0.1:$rtmp/live/demo"
sleep 5
play "zerocast LL-DASH, dash.js" dashjs "http://127.0.0.1:$http/live/demo/index.mpd"
play "zerocast LL-DASH, Shaka" shaka "http://127.0.0.1:$http/live/demo/index.mpd"
play "zerocast LL-HLS, hls.js" hlsjs "http://127.0.0.1:$http/live/demo/index.m3u8" \
  '{"maxLiveSyncPlaybackRate":1.5}'
# README.md's lowest-latency hls.js settings.
play "zerocast LL-HLS, hls.js lowest" hlsjs "http://127.0.0.1:$http/live/demo/index.m3u8" \
  '{"liveSyncDuration":0.6,"liveMaxLatencyDuration":1.0,"liveSyncMode":"buffered","maxLiveSyncPlaybackRate":1.5}'
for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
wait 2>/dev/null || true
pids=()

if [[ "${NGINX:-1}" != 0 ]]; then
  module=/usr/lib/nginx/modules/ngx_rtmp_module.so
  if [[ ! -f "$module" ]] || ! command -v nginx >/dev/null; then
    echo "nginx-rtmp row skipped: apt-get install nginx-light libnginx-mod-rtmp" >&2
  else
    mkdir -p "$tmp/dash" "$tmp/logs"
    # nginx's workers run as an unprivileged user: they write the fragments and read them.
    chmod 755 "$tmp"; chmod 777 "$tmp/dash"
    # nginx-rtmp's DASH: 1 s fragments (its lowest sensible setting), served with CORS.
    cat > "$tmp/nginx.conf" <<EOF
load_module $module;
pid $tmp/nginx.pid;
error_log $tmp/logs/error.log;
daemon on;
events {}
rtmp { server { listen 127.0.0.1:$nrtmp; application live { live on;
  dash on; dash_path $tmp/dash; dash_fragment 1s; dash_playlist_length 10s; } } }
http { access_log off; client_body_temp_path $tmp/logs; proxy_temp_path $tmp/logs;
  fastcgi_temp_path $tmp/logs; uwsgi_temp_path $tmp/logs; scgi_temp_path $tmp/logs;
  types { application/dash+xml mpd; video/mp4 mp4 m4v; audio/mp4 m4a; }
  server { listen 127.0.0.1:$nhttp; location /dash/ { alias $tmp/dash/;
    add_header Access-Control-Allow-Origin * always; add_header Cache-Control no-cache; } } }
EOF
    nginx -c "$tmp/nginx.conf" -p "$tmp"
    publish "rtmp://127.0.0.1:$nrtmp/live/demo"
    sleep 8
    # Its MPD has no UTCTiming: dash.js would ask time.akamai.com, unreachable here; loopback
    # shares the clock, so the local one is right.
    play "nginx-rtmp DASH (1 s fragments), dash.js" dashjs "http://127.0.0.1:$nhttp/dash/demo.mpd" \
      '{"streaming":{"utcSynchronization":{"enabled":false}}}'
  fi
fi

echo
echo "Live latency over $seconds s per run ($runs run(s) each), loopback, $(date -u +%FT%TZ), $(git rev-parse --short HEAD)"
echo
echo "| server and player | latency median (s) | mean | max | stalls | dropped/frames | played (s) | latency as reported by |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
printf '%s\n' "${rows[@]}"
