#!/usr/bin/env bash
# Reproduces the HTTP/1.1 path comparison in docs/performance.md: wrk (keep-alive, one thread,
# pinned to core 1) against
#   zerocast  `serve --workers 1` (pinned to core 0) serving one complete part of a live stream,
#             /live/demo/EPOCH/partN.m4s, while ffmpeg publishes a pre-encoded 2.5 Mb/s 720p30
#             file with -c copy (no encoder on the machine during the runs); the playlist
#             window is raised to 1000 segments so that the same part stays servable all along;
#   hyper     benches/http-compare (hyper 1.x on monoio via monoio-compat, pinned to core 0)
#             serving the same part's bytes, fetched from zerocast, split into PIECES `Bytes`.
# Prints one row per run: requests/s, transfer/s, latency p50/p99 (wrk --latency) and the
# server's CPU over the run from /proc (user+system, % of one core).
# Usage: benches/scripts/http-compare.sh [seconds=15] [connections="100 1000"] [repeats=2]
# Environment:
#   DRIVER=uring|epoll  both servers' IO driver (default uring)
#   PIECES=21           pieces of the hyper body (a 6-frame zerocast part with AAC is ~21 Bytes)
#   ZEROCAST_BIN        server binary (default target/release/zerocast)
#   NO_BUILD=1          skip both cargo builds
#   WORK=DIR            scratch directory (default: a new /tmp/http-compare.XXXXXX)
#   RTMP_PORT, HTTP_PORT, HYPER_PORT  (default 19373, 18103, 18104)
#   QUIET=1             before each run wait (up to 10 min) until the machine is idle
set -euo pipefail
# Media only: without the social API the server opens no store (no zerocast-data/ in the
# working directory) and binds no API port.
cd "$(dirname "$0")/../.."
seconds="${1:-15}"; conns="${2:-100 1000}"; repeats="${3:-2}"
driver="${DRIVER:-uring}"; pieces="${PIECES:-21}"
rtmp="${RTMP_PORT:-19373}"; http="${HTTP_PORT:-18103}"; hport="${HYPER_PORT:-18104}"
zbin="${ZEROCAST_BIN:-target/release/zerocast}"
hbin=benches/http-compare/target/release/hyper-part
work="${WORK:-$(mktemp -d /tmp/http-compare.XXXXXX)}"; mkdir -p "$work"
command -v wrk > /dev/null || { echo "needs wrk (apt-get install -y wrk)" >&2; exit 2; }
if [[ -z "${NO_BUILD:-}" ]]; then
  [[ -n "${ZEROCAST_BIN:-}" ]] || cargo build --release -q -p zerocast-edge
  cargo build --release -q --manifest-path benches/http-compare/Cargo.toml
fi
ulimit -n 16384 || true

# 60 s of the hls-load.sh picture, encoded once; published in a loop with -c copy.
media="$work/src.flv"
[[ -s "$media" ]] || ffmpeg -hide_banner -loglevel error -nostdin \
  -f lavfi -i testsrc2=size=1280x720:rate=30 -f lavfi -i sine=frequency=440:sample_rate=48000 \
  -t 60 -c:v libx264 -preset veryfast -tune zerolatency -g 60 -b:v 2300k -maxrate 2500k \
  -bufsize 2500k -c:a aac -b:a 128k -f flv "$media"

zc=; ff=; hy=
trap 'kill $hy $ff $zc 2>/dev/null || true; wait 2>/dev/null || true' EXIT
# wrk connects from 127.0.0.1 only: no per-address cap.
ZEROCAST_SOCIAL=false ZEROCAST_MAX_CONNECTIONS_PER_IP=0 ZEROCAST_PLAYLIST_WINDOW=1000 "$zbin" serve --rtmp 127.0.0.1:"$rtmp" --http 127.0.0.1:"$http" --workers 1 --driver "$driver" \
  2> "$work/zerocast.log" &
zc=$!
sleep 0.5
taskset -c 1 ffmpeg -hide_banner -loglevel error -nostdin -re -stream_loop -1 -i "$media" \
  -c copy -f flv rtmp://127.0.0.1:"$rtmp"/live/demo 2> "$work/ffmpeg.log" &
ff=$!
sleep 5

# The newest complete part: the last EXT-X-PART of the media playlist.
part_url() {
  local pl epoch part
  pl=$(curl -sf http://127.0.0.1:"$http"/live/demo/index.m3u8 | grep -v '^#' | head -1)
  epoch=${pl%/stream.m3u8}
  part=$(curl -sf http://127.0.0.1:"$http"/live/demo/"$pl" | grep -o 'URI="part[0-9]*\.m4s"' \
    | tail -1 | cut -d'"' -f2)
  echo "http://127.0.0.1:$http/live/demo/$epoch/$part"
}
url=$(part_url)
curl -sf -o "$work/part.m4s" "$url"
"$hbin" --part "$work/part.m4s" --pieces "$pieces" --addr 127.0.0.1:"$hport" --driver "$driver" \
  --core 0 > "$work/hyper.log" 2>&1 &
hy=$!
sleep 0.5
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r)"
echo "driver $driver; part $(stat -c %s "$work/part.m4s") bytes ($url); hyper body in $pieces pieces"
echo "wrk -t1 -cN -d${seconds}s --latency, wrk pinned to core 1, servers to core 0"
echo

hz=$(getconf CLK_TCK)
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# Busy jiffies summed over all cores (steal excluded), from /proc/stat.
machine() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8}' /proc/stat; }
quiet() { # wait up to 10 min for the machine to be idle (other processes are the main noise)
  local b0 b1
  for _ in $(seq 120); do
    b0=$(machine); sleep 3; b1=$(machine)
    if (( (b1 - b0) * 100 / (3 * hz) < 10 )); then return 0; fi
  done
  echo "(the machine did not become idle within 10 min; running anyway)" >&2
}
run() { # name pid url connections
  local name=$1 pid=$2 u=$3 c=$4 t0 t1 f0 f1 m0 m1 w0 w1 out wrk_ticks
  [[ -z "${QUIET:-}" ]] || quiet
  t0=$(ticks "$pid"); f0=$(ticks "$ff"); m0=$(machine); w0=$(date +%s.%N)
  # wrk's own CPU: the children time of the shell that waited for it.
  out=$(taskset -c 1 bash -c 'wrk "$@"; echo "wrk-ticks $(awk "{print \$16 + \$17}" /proc/$$/stat)"' \
    _ -t1 -c"$c" -d"${seconds}s" --latency "$u")
  w1=$(date +%s.%N); m1=$(machine); f1=$(ticks "$ff"); t1=$(ticks "$pid")
  echo "$out" > "$work/wrk-$name-$c-$rep.txt"
  echo "$out" | awk -v name="$name" -v c="$c" -v hz="$hz" -v wall="$(echo "$w1 - $w0" | bc -l)" \
      -v t="$((t1 - t0))" -v f="$((f1 - f0))" -v m="$((m1 - m0))" '
    /^ +50%/ { p50 = $2 } /^ +99%/ { p99 = $2 }
    /^Requests\/sec/ { rps = $2 } /^Transfer\/sec/ { tps = $2 } /^wrk-ticks/ { w = $2 }
    /Non-2xx|Socket errors/ { err = err " " $0 }
    END {
      pct = 100 / hz / wall; cpu = t * pct; other = (m - t - f - w) * pct
      if (other > 15) err = err " (noisy: other processes were busy)"
      printf "| %-8s | %5d | %10s | %9s/s | %8s | %8s | %5.1f %% | %6.1f | %5.1f %% | %5.1f %% |%s\n", \
        name, c, rps, tps, p50, p99, cpu, cpu / 100 * 1e6 / rps, w * pct, other, err
    }'
}
echo "server CPU: user+system of the server process, % of one core; us/req: server CPU per"
echo "request; wrk: its CPU; other: all cores' busy time minus server, wrk and ffmpeg (-c copy),"
echo "i.e. kernel softirq work not charged to a process plus other processes on the machine."
echo
echo "| server   | conns | requests/s | transfer/s  | p50      | p99      | server  | us/req | wrk     | other   |"
echo "| -------- | ----- | ---------- | ----------- | -------- | -------- | ------- | ------ | ------- | ------- |"
for rep in $(seq 1 "$repeats"); do
  for c in $conns; do
    run zerocast "$zc" "$url" "$c"; sleep 1
    run hyper "$hy" http://127.0.0.1:"$hport"/part "$c"; sleep 1
  done
done
