#!/usr/bin/env bash
# Follow-graph load on the social API: for each size, a fresh `zerocast social` (embedded fjall
# store and graph, in-process follower cache, token secret created in its data dir) and
# `zerocast-load graph`, which builds USERS users with profiles and EDGES power-law follow edges
# through the API, then runs the read/follow mix for SECONDS with the server's CPU and RSS
# sampled from /proc and its cache counters scraped from /metrics.
# Usage: benches/scripts/graph-load.sh [users:edges:seconds...=10000:100000:20 100000:1000000:30]
# Environment:
#   ZEROCAST_BIN       server binary (default target/release/zerocast)
#   ZEROCAST_LOAD_BIN  load generator (default target/release/zerocast-load)
#   NO_BUILD=1         skip `cargo build`
#   GRAPH_LOAD_ARGS    more zerocast-load graph flags, e.g. "--warm" (steady-state cache) or
#                      "--rate 4000,8000" (after the closed-loop run, an open-loop run at each
#                      offered rate, requests/s, latency measured from each request's due time)
#   CONCURRENCY        concurrent requests, build and run (default 32)
#   API_PORT           first listen port (default 18400; run k uses API_PORT + k, up to 18410)
#   SERVER_LOG         server stderr, run k appended as .k (default /tmp/zerocast-graph-server.log)
#   SERVER_CORE=0, CLIENT_CORE=1
#                      with two or more cores, the server is pinned to SERVER_CORE and the load
#                      generator (one worker thread unless GRAPH_LOAD_ARGS says --workers) to
#                      CLIENT_CORE with `taskset`, as compare-nginx.sh does: neither preempts
#                      the other, so latencies are the server's, not the scheduler's
#   PIN=0              do not pin (both share every core)
# Exit status: 1 if any run saw errors, 2 on setup failures.
set -euo pipefail
cd "$(dirname "$0")/../.."
sizes=("$@"); [[ ${#sizes[@]} -gt 0 ]] || sizes=(10000:100000:20 100000:1000000:30)
port0="${API_PORT:-18400}"
concurrency="${CONCURRENCY:-32}"
server_bin="${ZEROCAST_BIN:-target/release/zerocast}"
load_bin="${ZEROCAST_LOAD_BIN:-target/release/zerocast-load}"
log="${SERVER_LOG:-/tmp/zerocast-graph-server.log}"
server_pin=(); load_pin=(); load_workers=()
if [[ "${PIN:-1}" != 0 ]] && (( $(nproc) >= 2 )) && command -v taskset > /dev/null; then
  server_pin=(taskset -c "${SERVER_CORE:-0}"); load_pin=(taskset -c "${CLIENT_CORE:-1}")
  [[ " ${GRAPH_LOAD_ARGS:-} " == *" --workers "* ]] || load_workers=(--workers 1)
fi
(( ${#sizes[@]} <= 11 )) || { echo "at most 11 sizes (ports $port0..$((port0 + 10)))" >&2; exit 2; }
if [[ -z "${NO_BUILD:-}" ]]; then
  cargo build --release -q -p zerocast-benches -p zerocast-edge
fi

server=; data=
stop_server() {
  if [[ -n "$server" ]]; then
    kill "$server" 2>/dev/null || true
    # SIGTERM: the server drains for about a second; then make sure.
    for _ in $(seq 50); do kill -0 "$server" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    server=
  fi
  [[ -n "$data" ]] && rm -rf "$data"
  data=
}
trap stop_server EXIT

status=0
k=0
for size in "${sizes[@]}"; do
  IFS=: read -r users edges seconds <<< "$size"
  [[ -n "$users" && -n "$edges" && -n "$seconds" ]] || { echo "bad size $size" >&2; exit 2; }
  port=$((port0 + k))
  data=$(mktemp -d /tmp/graph-load-data.XXXXXX)
  # Only the flags configure the server: no config file, no ZEROCAST_* secret. Every client
  # comes from 127.0.0.1, so the per-address connection cap is off.
  env -u ZEROCAST_CONFIG -u ZEROCAST_JWT_SECRET ZEROCAST_API_MAX_CONNECTIONS_PER_IP=0 \
    "${server_pin[@]}" "$server_bin" social --api 127.0.0.1:"$port" --data-dir "$data" 2> "$log.$k" &
  server=$!
  for _ in $(seq 100); do
    [[ -s "$data/jwt-secret" ]] && (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break
    kill -0 "$server" 2>/dev/null || { echo "server exited; see $log.$k" >&2; exit 2; }
    sleep 0.1
  done
  echo "# zerocast social on 127.0.0.1:$port; $users users, $edges edges, $seconds s"
  echo "# load average at start: $(cat /proc/loadavg)"
  if (( ${#server_pin[@]} )); then
    echo "# server pinned to core ${SERVER_CORE:-0}, load generator to core ${CLIENT_CORE:-1}"
  else
    echo "# not pinned"
  fi
  "${load_pin[@]}" "$load_bin" graph --api http://127.0.0.1:"$port" --secret-file "$data/jwt-secret" \
    --users "$users" --edges "$edges" --duration "$seconds" --concurrency "$concurrency" \
    --server-pid "$server" "${load_workers[@]}" ${GRAPH_LOAD_ARGS:-} || { rc=$?; (( rc > status )) && status=$rc; }
  if grep -qiE 'warn|error|panick' "$log.$k"; then
    echo "server log ($log.$k), warnings and errors:"
    grep -iE 'warn|error|panick' "$log.$k" | head -20 | sed 's/^/  /'
  fi
  echo "# load average at end: $(cat /proc/loadavg)"
  du -sh "$data" | sed 's/^/# data dir /'
  stop_server
  echo
  k=$((k + 1))
done
exit "$status"
