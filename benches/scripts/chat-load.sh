#!/usr/bin/env bash
# Chat load on the social API: for each client count, a fresh `zerocast social` (embedded fjall
# store, in-process bus, token secret created in its data dir) and `zerocast-load chat` with that
# many WebSocket clients, each its own user, sending RATE direct messages/s in total for SECONDS,
# with the server's CPU and RSS sampled from /proc.
# Usage: benches/scripts/chat-load.sh [rate=500] [seconds=30] [clients...=100 1000]
# Environment:
#   ZEROCAST_BIN       server binary (default target/release/zerocast)
#   ZEROCAST_LOAD_BIN  load generator (default target/release/zerocast-load)
#   NO_BUILD=1         skip `cargo build`
#   API_PORT           first listen port (default 18300; run k uses API_PORT + k, up to 18310)
#   SERVER_LOG         server stderr, run k appended as .k (default /tmp/zerocast-chat-server.log)
# Exit status: 1 if any run saw losses or errors, 2 on setup failures.
set -euo pipefail
cd "$(dirname "$0")/../.."
rate="${1:-500}"; seconds="${2:-30}"; shift $(( $# < 2 ? $# : 2 ))
counts=("$@"); [[ ${#counts[@]} -gt 0 ]] || counts=(100 1000)
port0="${API_PORT:-18300}"
server_bin="${ZEROCAST_BIN:-target/release/zerocast}"
load_bin="${ZEROCAST_LOAD_BIN:-target/release/zerocast-load}"
log="${SERVER_LOG:-/tmp/zerocast-chat-server.log}"
if [[ -z "${NO_BUILD:-}" ]]; then
  cargo build --release -q -p zerocast-benches -p zerocast-edge
fi
# One socket per client on each side; both processes inherit this.
ulimit -n "$(ulimit -Hn)" || true

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
for clients in "${counts[@]}"; do
  port=$((port0 + k))
  data=$(mktemp -d /tmp/chat-load-data.XXXXXX)
  # Only the flags configure the server: no config file, no ZEROCAST_* secret. Every client
  # comes from 127.0.0.1, so the per-address connection cap is off.
  env -u ZEROCAST_CONFIG -u ZEROCAST_JWT_SECRET ZEROCAST_API_MAX_CONNECTIONS_PER_IP=0 \
    "$server_bin" social --api 127.0.0.1:"$port" --data-dir "$data" 2> "$log.$k" &
  server=$!
  for _ in $(seq 100); do
    [[ -s "$data/jwt-secret" ]] && (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break
    kill -0 "$server" 2>/dev/null || { echo "server exited; see $log.$k" >&2; exit 2; }
    sleep 0.1
  done
  echo "# zerocast social on 127.0.0.1:$port; $clients clients, $rate msg/s, $seconds s"
  "$load_bin" chat --url ws://127.0.0.1:"$port"/api/v1/ws --secret-file "$data/jwt-secret" \
    --clients "$clients" --rate "$rate" --duration "$seconds" --server-pid "$server" || {
      rc=$?; (( rc > status )) && status=$rc; }
  if grep -qiE 'warn|error|panick' "$log.$k"; then
    echo "server log ($log.$k), warnings and errors:"
    grep -iE 'warn|error|panick' "$log.$k" | head -20 | sed 's/^/  /'
  fi
  stop_server
  echo
  k=$((k + 1))
done
exit "$status"
