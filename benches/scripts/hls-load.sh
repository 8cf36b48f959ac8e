#!/usr/bin/env bash
# Reproduces docs/performance.md: one 2.5 Mb/s 720p30 stream published by ffmpeg, N viewers
# from zerocast-load (LL-HLS, low-latency DASH, or each in turn against the same server and
# stream), the server's CPU and RSS sampled from /proc, and the server-added latency from its
# /metrics histograms.
# Usage: benches/scripts/hls-load.sh [viewers=1000] [seconds=20] [driver=auto] [proto=http1]
#                                    [modes=hls]
#   proto: http1 (HTTP/1.1, plain TCP), https (HTTP/1.1 over TLS), h2 (HTTP/2 over TLS), h3
#   (HTTP/3 over QUIC). The TLS ones serve a self-signed certificate made by `zerocast cert`
#   in a temporary directory (removed on exit); the viewers accept it with --insecure.
#   modes: `zerocast-load` commands run one after the other against the same server and
#   stream, e.g. "hls dash"; with more than one, a summary table (server CPU, latency p50/p99,
#   errors per mode) ends the output. hls: part latency; dash: segment lateness.
# Environment:
#   ZEROCAST_BIN       server binary (default target/release/zerocast)
#   ZEROCAST_LOAD_BIN  load generator (default target/release/zerocast-load)
#   NO_BUILD=1         skip `cargo build` (e.g. when both binaries are given)
#   RTMP_PORT, HTTP_PORT  listen ports (default 19361, 18091)
#   HTTPS_PORT, RTMPS_PORT  TLS listen ports (default 18443, 19362; HTTP/3 on UDP HTTPS_PORT)
#   SERVER_LOG         server stderr (default /tmp/zerocast-load-server.log)
#   DASH_FLAGS         more zerocast-load flags for the dash runs (e.g. "--min-update-period 2000")
#   QUIET=1            first wait (up to 10 min) until the machine is idle: on a shared machine
#                      other processes' CPU is the largest source of noise
set -euo pipefail
# Media only: without the social API the server binds no API port; it still writes its token
# secret into its data directory, a temporary one here (removed on exit).
cd "$(dirname "$0")/../.."
viewers="${1:-1000}"; seconds="${2:-20}"; driver="${3:-auto}"; proto="${4:-http1}"
modes="${5:-hls}"
for m in $modes; do
  case "$m" in hls|dash) ;; *) echo "modes are hls and dash, not $m" >&2; exit 2 ;; esac
done
rtmp="${RTMP_PORT:-19361}"; http="${HTTP_PORT:-18091}"
https="${HTTPS_PORT:-18443}"; rtmps="${RTMPS_PORT:-19362}"
case "$proto" in
  http1) base="http://127.0.0.1:$http/live/demo"; proto_flags=() ;;
  https) base="https://127.0.0.1:$https/live/demo"; proto_flags=(--insecure) ;;
  h2) base="https://127.0.0.1:$https/live/demo"; proto_flags=(--insecure --http2) ;;
  h3) base="https://127.0.0.1:$https/live/demo"; proto_flags=(--insecure --http3) ;;
  *) echo "proto must be http1, https, h2 or h3, not $proto" >&2; exit 2 ;;
esac
server_bin="${ZEROCAST_BIN:-target/release/zerocast}"
load_bin="${ZEROCAST_LOAD_BIN:-target/release/zerocast-load}"
if [[ -z "${NO_BUILD:-}" ]]; then
  cargo build --release -q -p zerocast-edge
  cargo build --release -q -p zerocast-benches
fi
ulimit -n 16384 || true

# Busy and steal jiffies summed over all cores, from /proc/stat.
machine() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8, $9}' /proc/stat; }
ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
if [[ -n "${QUIET:-}" ]]; then
  for _ in $(seq 120); do
    read -r b0 _ < <(machine); sleep 3; read -r b1 _ < <(machine)
    if (( (b1 - b0) * 100 / (3 * $(getconf CLK_TCK)) < 10 )); then break; fi
  done
fi
server=; ff=; certdir=; datadir=$(mktemp -d)
trap 'kill $ff 2>/dev/null || true; wait $ff 2>/dev/null || true; kill $server 2>/dev/null || true; wait 2>/dev/null || true; [[ -z "$certdir" ]] || rm -rf "$certdir"; rm -rf "$datadir"' EXIT
tls_flags=()
if [[ "$proto" != http1 ]]; then
  certdir=$(mktemp -d)
  "$server_bin" cert --self-signed --out "$certdir" > /dev/null
  tls_flags=(--tls-cert "$certdir/cert.pem" --tls-key "$certdir/key.pem"
    --https 127.0.0.1:"$https" --rtmps 127.0.0.1:"$rtmps")
fi
# Every viewer connects from 127.0.0.1: no per-address cap.
ZEROCAST_SOCIAL=false ZEROCAST_MAX_CONNECTIONS_PER_IP=0 "$server_bin" serve --rtmp 127.0.0.1:"$rtmp" --http 127.0.0.1:"$http" --driver "$driver" \
  --data-dir "$datadir" "${tls_flags[@]}" 2> "${SERVER_LOG:-/tmp/zerocast-load-server.log}" &
server=$!
sleep 0.5
ffmpeg -hide_banner -loglevel error -nostdin -re -f lavfi -i testsrc2=size=1280x720:rate=30 \
  -f lavfi -i sine=frequency=440:sample_rate=48000 -c:v libx264 -preset veryfast \
  -tune zerolatency -g 60 -b:v 2300k -maxrate 2500k -bufsize 2500k -c:a aac -b:a 128k \
  -f flv rtmp://127.0.0.1:"$rtmp"/live/demo &
ff=$!
sleep 4
status=0
hz=$(getconf CLK_TCK)
# UDP datagrams dropped for a full receive buffer, machine-wide (HTTP/3 runs).
udp_drops() { awk '/^Udp: [0-9]/ {print $6}' /proc/net/snmp; }
summary=()
field() { grep -m1 "^  $1 " "$2" | sed "s#^  $1 *##"; }
for mode in $modes; do
  case "$mode" in
    hls) url="$base/index.m3u8"; latency="part latency"; mode_flags=() ;;
    # Word splitting wanted: DASH_FLAGS is a list of flags.
    # shellcheck disable=SC2206
    dash) url="$base/index.mpd"; latency="segment lateness"; mode_flags=(${DASH_FLAGS:-}) ;;
  esac
  u0=$(udp_drops)
  read -r m0 st0 < <(machine); s0=$(ticks "$server"); f0=$(ticks "$ff"); w0=$(date +%s.%N)
  # The load generator runs under a shell that reports its CPU (children time) on fd 3.
  lg_ticks=$(mktemp); report=$(mktemp)
  bash -c '"$0" "$@"; rc=$?; awk "{print \$16 + \$17}" /proc/$$/stat >&3; exit $rc' \
    "$load_bin" "$mode" --url "$url" "${proto_flags[@]}" "${mode_flags[@]}" \
    --viewers "$viewers" --duration "$seconds" --server-pid "$server" 3> "$lg_ticks" > "$report" \
    || status=$?
  read -r m1 st1 < <(machine); s1=$(ticks "$server"); f1=$(ticks "$ff"); w1=$(date +%s.%N)
  l=$(cat "$lg_ticks"); rm -f "$lg_ticks"
  cat "$report"
  pct() { awk -v t="$1" -v hz="$hz" -v w="$(echo "$w1 - $w0" | bc -l)" 'BEGIN {printf "%.1f", t * 100 / hz / w}'; }
  echo "  machine busy          $(pct $((m1 - m0))) % of one core over $(nproc) cores (steal $(pct $((st1 - st0)))):" \
    "server $(pct $((s1 - s0))), ffmpeg encoder $(pct $((f1 - f0))), load generator $(pct "${l:-0}")," \
    "other processes and unattributed kernel work $(pct $((m1 - m0 - s1 + s0 - f1 + f0 - ${l:-0})))"
  if [[ "$proto" == h3 ]]; then
    # The server's socket is still open: its own drop count is the last field of its line.
    port_hex=$(printf '%04X' "$https")
    server_drops=$(awk -v p=":$port_hex" '$2 ~ p"$" {print $NF}' /proc/net/udp | head -1)
    echo "  UDP receive-buffer drops  $(( $(udp_drops) - u0 )) on the machine during the run," \
      "${server_drops:-?} on the server's socket since it opened"
  fi
  summary+=("$(printf '| %s | %s | %s | %s | %s / %s | %s | %s %% |' "$mode" \
    "$(field 'requests/s' "$report")" \
    "$(field 'bytes/s' "$report" | sed -E 's/.*\(([0-9.]+) Mb\/s\).*/\1/')" \
    "$(field 'server CPU' "$report" | awk '{print $1}') %" \
    "$(field "$latency p50" "$report" | awk '{print $1}')" \
    "$(field "$latency p99" "$report" | awk '{print $1}')" \
    "$(field 'errors' "$report" | awk '{print $1}')" \
    "$(pct $((m1 - m0 - s1 + s0 - f1 + f0 - ${l:-0})))")")
  rm -f "$report"
  echo
done
if (( ${#summary[@]} > 1 )); then
  echo "$viewers viewers each, $seconds s, $proto, one server and stream ($(date -u +%FT%TZ), $(git rev-parse --short HEAD))"
  echo "latency: hls part latency (announcement → part received), dash segment lateness (last byte − segment end)"
  echo "| mode | req/s | Mb/s | server CPU (of one core) | latency p50 / p99 ms | errors | other CPU |"
  echo "| --- | --- | --- | --- | --- | --- | --- |"
  printf '%s\n' "${summary[@]}"
  echo
fi
metrics=$(curl -s http://127.0.0.1:"$http"/metrics)
echo
echo "server-added latency (from /metrics, whole run including warm-up):"
echo "$metrics" | grep -E '^zerocast_(chunk|part)_latency_seconds_(bucket|count|sum)' \
  | awk '{print "  " $0}'
# p50/p99 from the cumulative buckets: the upper bound of the first bucket holding the quantile.
echo "$metrics" | awk '
  /^zerocast_(chunk|part)_latency_seconds_bucket/ {
    name = $1; sub(/_bucket.*/, "", name)
    le = $1; sub(/.*le="/, "", le); sub(/".*/, "", le)
    n[name]++; les[name, n[name]] = le; cum[name, n[name]] = $2
  }
  /^zerocast_(chunk|part)_latency_seconds_count/ { c = $1; sub(/_count.*/, "", c); total[c] = $2 }
  END {
    for (m in n) {
      line = sprintf("  %s: count %d", m, total[m])
      split("0.5 0.99", qs, " ")
      for (k = 1; k <= 2; k++) {
        q = qs[k]; want = q * total[m]; ans = "-"
        for (i = 1; i <= n[m]; i++) if (cum[m, i] >= want) { ans = les[m, i]; break }
        line = line sprintf(", p%g <= %s s", q * 100, ans)
      }
      print line
    }
  }'
exit "$status"
