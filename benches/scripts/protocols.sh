#!/usr/bin/env bash
# The same viewer load (LL-HLS, or low-latency DASH) over each delivery protocol, one after the
# other in one session, and one summary table: delivered Mb/s, server CPU per delivered Gb/s,
# latency (hls: part latency; dash: segment lateness), errors.
# Usage: benches/scripts/protocols.sh [viewers=1000] [seconds=20] [protos="http1 https h2 h3"]
#                                     [mode=hls]
# Each run is benches/scripts/hls-load.sh (QUIET=1 by default: it first waits for an idle
# machine); full reports go to /tmp/zerocast-proto-PROTO.txt (-MODE.txt for dash).
set -euo pipefail
cd "$(dirname "$0")/../.."
viewers="${1:-1000}"; seconds="${2:-20}"; protos="${3:-http1 https h2 h3}"; mode="${4:-hls}"
case "$mode" in
  hls) latency="part latency"; suffix= ;;
  dash) latency="segment lateness"; suffix=-dash ;;
  *) echo "mode must be hls or dash, not $mode" >&2; exit 2 ;;
esac
if [[ -z "${NO_BUILD:-}" ]]; then
  cargo build --release -q -p zerocast-edge
  cargo build --release -q -p zerocast-benches
fi
export NO_BUILD=1 QUIET="${QUIET-1}"
field() { grep -m1 "^  $1 " "$2" | sed "s#^  $1 *##"; }
rows=()
for p in $protos; do
  out="/tmp/zerocast-proto-$p$suffix.txt"
  benches/scripts/hls-load.sh "$viewers" "$seconds" auto "$p" "$mode" > "$out" 2>&1 || true
  mbps=$(field "bytes/s" "$out" | sed -E 's/.*\(([0-9.]+) Mb\/s\).*/\1/')
  cpu=$(field "server CPU" "$out" | awk '{print $1}')
  per_gbps=$(awk -v c="$cpu" -v m="$mbps" 'BEGIN { if (m > 0) printf "%.1f", c * 1000 / m; else print "-" }')
  rows+=("$(printf '| %s | %s | %s | %s %% | %s %% | %s / %s | %s | %s %% | %s |' "$p" \
    "$(field 'requests/s' "$out")" "$mbps" "$cpu" "$per_gbps" \
    "$(field "$latency p50" "$out" | awk '{print $1}')" \
    "$(field "$latency p99" "$out" | awk '{print $1}')" \
    "$(field 'server RSS max' "$out" | awk '{print $1, $2}')" \
    "$(field 'load generator CPU' "$out" | awk '{print $1}')" \
    "$(field 'errors' "$out" | awk '{print $1}')")")
done
echo "$viewers $mode viewers, $seconds s ($(date -u +%FT%TZ), $(git rev-parse --short HEAD))"
echo "| proto | req/s | Mb/s | server CPU (of one core) | server CPU per Gb/s | $latency p50 / p99 ms | server RSS max | load gen CPU | errors |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
printf '%s\n' "${rows[@]}"
