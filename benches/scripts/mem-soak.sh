#!/usr/bin/env bash
# Memory of a zerocast server over a long run (issue 11's memory goals):
#   1. N streams published with `ffmpeg -c copy` from one pre-encoded 2.5 Mb/s 720p30 file
#      (1 s GOPs, AAC 128k) for M minutes; RSS sampled from /proc every 10 s. Reported: RSS
#      per live stream against the media bytes of its playlist window (segments, the open
#      segment's parts and the init segment, fetched shortly before the end), and growth
#      from minute 2 to the end.
#   2. The publishers stop; sampling goes on for LINGER seconds (reconnect grace + ended
#      linger + margin): how much of the streams' memory came back.
#   3. IDLE HTTP/1.1 keep-alive connections (one request each, then idle): RSS per connection.
# Prints the samples, then a summary table. Goals (from the issue): RSS per live stream
# <= 1.1 x window + 1 MiB; per idle connection <= 8 KiB; no growth.
#
# Usage: benches/scripts/mem-soak.sh [streams=10] [minutes=10] [idle=10000]
# Environment:
#   ZEROCAST_BIN   server binary (default target/release/zerocast, built first unless NO_BUILD=1);
#                  run the script once per binary to compare two builds (different ports to
#                  run them at the same time)
#   LABEL          name for the summary (default: the binary's path)
#   SOURCE         pre-encoded FLV to publish in a loop (default: 60 s made with ffmpeg into
#                  the temporary directory, removed on exit)
#   RTMP_PORT, HTTP_PORT  listen ports (default 19381, 18111)
#   LINGER         seconds sampled after the publishers stop (default 80)
#   IDLE_PATH      what each idle connection requests first (default a 404:
#                  /live/idle-conns/index.m3u8; the response body is read whole)
#   SERVER_FLAGS   more `zerocast serve` flags (e.g. "--driver epoll")
#   SERVER_ENV     more environment for the server only, e.g. another allocator:
#                  "LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 MALLOC_CONF=background_thread:true"
#   SAMPLES        also copy the raw samples to this file
#   SERVER_LOG     also copy the server's log to this file
set -euo pipefail
cd "$(dirname "$0")/../.."
streams="${1:-10}"; minutes="${2:-10}"; idle="${3:-10000}"
rtmp="${RTMP_PORT:-19381}"; http="${HTTP_PORT:-18111}"
linger="${LINGER:-80}"; idle_path="${IDLE_PATH:-/live/idle-conns/index.m3u8}"
bin="${ZEROCAST_BIN:-target/release/zerocast}"
label="${LABEL:-$bin}"
if [[ -z "${ZEROCAST_BIN:-}" && -z "${NO_BUILD:-}" ]]; then
  cargo build --release -q -p zerocast-edge
fi
# Server and idle client each hold `idle` sockets.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if (( $(ulimit -n) < idle + 1000 )); then
  echo "ulimit -n is $(ulimit -n): too low for $idle idle connections" >&2; exit 2
fi

tmp=$(mktemp -d /tmp/mem-soak.XXXXXX)
server=; sampler=; client=; pubs=()
cleanup() {
  for p in "${pubs[@]}" $client $sampler; do kill "$p" 2>/dev/null || true; done
  [[ -z "$server" ]] || kill "$server" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

src="${SOURCE:-}"
if [[ -z "$src" ]]; then
  src="$tmp/src.flv"
  ffmpeg -hide_banner -loglevel error -nostdin -f lavfi -i testsrc2=size=1280x720:rate=30 \
    -f lavfi -i sine=frequency=440:sample_rate=48000 -t 60 -c:v libx264 -preset veryfast \
    -tune zerolatency -g 30 -keyint_min 30 -sc_threshold 0 -b:v 2300k -maxrate 2500k \
    -bufsize 2500k -pix_fmt yuv420p -c:a aac -b:a 128k -f flv "$src"
fi

mkdir "$tmp/data"
# The trims of the heap thread (if the binary has one) go to the log at debug.
ZEROCAST_SOCIAL=false ZEROCAST_MAX_CONNECTIONS=$((idle + streams + 1000)) \
  ZEROCAST_MAX_CONNECTIONS_PER_IP=0 ZEROCAST_LOG="${ZEROCAST_LOG:-info,zerocast_edge::heap=debug}" \
  env ${SERVER_ENV:-} "$bin" serve --rtmp 127.0.0.1:"$rtmp" --http 127.0.0.1:"$http" --data-dir "$tmp/data" \
  ${SERVER_FLAGS:-} 2> "$tmp/server.log" &
server=$!
for _ in $(seq 50); do
  curl -sf -o /dev/null "http://127.0.0.1:$http/api/streams" && break
  sleep 0.2
done
kill -0 "$server" || { cat "$tmp/server.log" >&2; exit 1; }

# kB fields of /proc/PID/status: VmRSS RssAnon RssFile RssShmem.
mem() { awk '/^(VmRSS|RssAnon|RssFile|RssShmem):/ {printf "%s ", $2} END {print ""}' "/proc/$server/status"; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$server/status"; }
# Mean VmRSS over three readings a second apart.
rss_mean_kb() { local a b c; a=$(rss_kb); sleep 1; b=$(rss_kb); sleep 1; c=$(rss_kb); echo $(( (a + b + c) / 3 )); }
t0=$(date +%s)
echo start > "$tmp/phase"
(
  while kill -0 "$server" 2>/dev/null; do
    echo "$(( $(date +%s) - t0 )) $(cat "$tmp/phase") $(mem)" >> "$tmp/samples"
    sleep 10
  done
) &
sampler=$!

sleep 3
base_kb=$(rss_mean_kb)
echo publishing > "$tmp/phase"
pub_start=$(date +%s)
for i in $(seq "$streams"); do
  ffmpeg -hide_banner -loglevel error -nostdin -re -stream_loop -1 -i "$src" -c copy \
    -t $((minutes * 60)) -f flv "rtmp://127.0.0.1:$rtmp/live/soak$i" 2> "$tmp/ffmpeg$i.log" &
  pubs+=($!)
  sleep 0.3
done

# Media bytes a playlist window references: its segments, the parts after the last segment
# (the open segment's) and its init segment.
window_bytes() {
  local base="http://127.0.0.1:$http/live/$1" media dir pl urls=()
  media=$(curl -s "$base/index.m3u8" | grep -v '^#' | head -1)
  [[ -n "$media" ]] || { echo 0; return; }
  dir=$(dirname "$media")
  pl=$(curl -s "$base/$media")
  while read -r u; do urls+=("$base/$dir/$u"); done < <(echo "$pl" | awk '
    /^#EXT-X-MAP:/ { match($0, /URI="[^"]*"/); print substr($0, RSTART + 5, RLENGTH - 6) }
    /^#EXT-X-PART:/ { match($0, /URI="[^"]*"/); parts[++np] = substr($0, RSTART + 5, RLENGTH - 6) }
    /^[^#]/ { print; np = 0 }
    END { for (i = 1; i <= np; i++) print parts[i] }')
  local total=0 u
  for u in "${urls[@]}"; do
    total=$(( total + $(curl -s -o /dev/null -w '%{size_download}' "$u") ))
  done
  echo "$total"
}

# Until 20 s before the end, then the RSS of the full windows and the windows themselves.
sleep $(( minutes * 60 - 20 - ($(date +%s) - pub_start) ))
end_kb=$(rss_mean_kb)
end_mem=$(mem)
win_total=0; win_n=0
for i in $(seq "$streams"); do
  w=$(window_bytes "soak$i")
  if (( w > 0 )); then win_total=$((win_total + w)); win_n=$((win_n + 1)); fi
done
live=$(curl -s "http://127.0.0.1:$http/api/streams" | grep -c '"state": "live"' || true)
for p in "${pubs[@]}"; do wait "$p" 2>/dev/null || true; done
pubs=()
echo ended > "$tmp/phase"
stop_t=$(( $(date +%s) - t0 ))
sleep "$linger"
after_kb=$(rss_mean_kb)
left=$(curl -s "http://127.0.0.1:$http/api/streams" | grep -c '"name"' || true)

echo idle-conns > "$tmp/phase"
idle_base_kb=$(rss_mean_kb)
python3 benches/scripts/idle-conns.py 127.0.0.1 "$http" "$idle" "$idle_path" > "$tmp/client.out" 2>&1 &
client=$!
for _ in $(seq 240); do grep -q '^ready' "$tmp/client.out" && break; sleep 0.5; done
# Past the server's 10 s park (an idle keep-alive connection gives up its read buffer).
sleep 12
idle_kb=$(rss_mean_kb)
idle_ready=$(grep -m1 '^ready' "$tmp/client.out" || echo "ready 0 (client failed)")
idle_open=$(tail -1 "$tmp/client.out" | awk '{print $2}')
kill "$client" 2>/dev/null || true; wait "$client" 2>/dev/null || true; client=
echo idle-closed > "$tmp/phase"
sleep 20
closed_kb=$(rss_mean_kb)
kill "$sampler" 2>/dev/null || true; wait "$sampler" 2>/dev/null || true; sampler=
[[ -z "${SAMPLES:-}" ]] || cp "$tmp/samples" "$SAMPLES"
[[ -z "${SERVER_LOG:-}" ]] || cp "$tmp/server.log" "$SERVER_LOG"

mb() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }
echo "RSS samples, MB (publishers from t=$(( pub_start - t0 )) s to t=$stop_t s):"
echo "| t (s) | phase | VmRSS | RssAnon | RssFile | RssShmem |"
echo "| --- | --- | --- | --- | --- | --- |"
awk '{printf "| %s | %s | %.1f | %.1f | %.1f | %.1f |\n", $1, $2, $3/1024, $4/1024, $5/1024, $6/1024}' "$tmp/samples"
echo
# Growth: from the first sample 2 minutes into publishing to the last one while publishing.
read -r g0 g1 < <(awk -v s=$(( pub_start - t0 + 120 )) '$2 == "publishing" && $1 >= s { if (first == "") first = $3; last = $3 } END { print first + 0, last + 0 }' "$tmp/samples")
per_stream_kb=$(( (end_kb - base_kb) / streams ))
win_mean=$(( win_n > 0 ? win_total / win_n : 0 ))
goal_kb=$(( win_mean * 11 / 10 / 1024 + 1024 ))
trims=$(grep -c 'heap trimmed' "$tmp/server.log" || true)
trim_max=$(grep -o 'took_us=[0-9]*' "$tmp/server.log" | cut -d= -f2 | sort -n | tail -1 || true)
read -r _ anon _ shmem <<< "$end_mem"
per_conn=$(awk -v a="$idle_kb" -v b="$idle_base_kb" -v n="${idle_open:-0}" 'BEGIN { if (n > 0) printf "%.0f", (a - b) * 1024 / n; else print "-" }')
echo "$label: $streams streams x $minutes min, $idle idle connections ($(date -u +%FT%TZ), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg))"
echo "| measure | value | goal |"
echo "| --- | --- | --- |"
echo "| RSS before publishing | $(mb "$base_kb") MB | |"
echo "| RSS at the end of publishing ($live live) | $(mb "$end_kb") MB (anon $(mb "$anon"), shmem $(mb "$shmem")) | |"
echo "| RSS per live stream | $(mb "$per_stream_kb") MB | <= $(mb "$goal_kb") MB |"
echo "| playlist window per stream (media bytes) | $(mb $(( win_mean / 1024 ))) MB ($win_n streams measured) | |"
echo "| RSS per stream / window | $(awk -v r="$per_stream_kb" -v w="$win_mean" 'BEGIN { if (w > 0) printf "%.2f", r * 1024 / w; else print "-" }') | <= 1.1 (+1 MiB) |"
echo "| growth, minute 2 to the end of publishing | $(mb $(( g1 - g0 ))) MB | 0 |"
echo "| RSS ${linger} s after the publishers stopped ($left streams left) | $(mb "$after_kb") MB ($(mb $(( after_kb - base_kb ))) MB above the start) | back to the start |"
echo "| idle keep-alive connections | $idle_ready, $idle_open open when measured | |"
echo "| RSS with them | $(mb "$idle_base_kb") -> $(mb "$idle_kb") MB | |"
echo "| RSS per idle connection | $per_conn bytes | <= 8192 |"
echo "| RSS 20 s after they closed | $(mb "$closed_kb") MB | |"
echo "| heap trims (zerocast-heap thread) | ${trims:-0}, longest ${trim_max:-0} µs | |"
