#!/usr/bin/env bash
# Runs the Kafka event-bus suites (social/tests/kafka_bus.rs, kafka_two_instances.rs) against a
# real Kafka-protocol broker instead of librdkafka's mock cluster: tansu (crates.io), in
# memory, on a loopback port, started here and stopped at the end. The broker-restart test
# (social/tests/kafka_restart.rs) starts, kills and restarts a second tansu on its own port
# itself, from the command line this script exports in ZEROCAST_KAFKA_RESTART_CMD.
# Install tansu once with `scripts/setup.sh --kafka` (a `cargo install`: 15-40 minutes on 2 cores).
# Usage: scripts/kafka-it.sh [extra cargo test args...]
# Environment:
#   TANSU      the tansu binary (default: `tansu` on PATH, else ~/.cargo/bin/tansu)
#   KAFKA_PORT loopback port for the broker (default 19092); the restart test's broker uses
#              the next port
set -euo pipefail
cd "$(dirname "$0")/.."
port="${KAFKA_PORT:-19092}"
tansu="${TANSU:-$(command -v tansu || echo "$HOME/.cargo/bin/tansu")}"
if [[ ! -x "$tansu" ]]; then
  echo "tansu not found ($tansu): install it with scripts/setup.sh --kafka" >&2
  exit 2
fi
log=$(mktemp /tmp/zerocast-tansu.XXXXXX)
"$tansu" broker --listener-url "tcp://127.0.0.1:$port" \
  --advertised-listener-url "tcp://127.0.0.1:$port" --storage-engine memory://tansu/ \
  > "$log" 2>&1 &
broker=$!
rpid=$(mktemp /tmp/zerocast-tansu-restart.XXXXXX)
cleanup() {
  kill "$broker" 2> /dev/null || true
  wait "$broker" 2> /dev/null || true
  # The restart test's own broker, should that test die before stopping it.
  if [[ -s "$rpid" ]]; then kill "$(cat "$rpid")" 2> /dev/null || true; fi
  rm -f "$log" "$rpid"
}
trap cleanup EXIT
for _ in $(seq 100); do
  grep -q "ready in" "$log" && break
  kill -0 "$broker" 2> /dev/null || { echo "tansu exited:" >&2; cat "$log" >&2; exit 2; }
  sleep 0.1
done
echo "tansu $("$tansu" --version 2> /dev/null | awk '{print $2}') on 127.0.0.1:$port ($(grep storage: "$log"))"
rport=$((port + 1))
export ZEROCAST_KAFKA_RESTART_BROKERS="127.0.0.1:$rport" ZEROCAST_KAFKA_RESTART_PIDFILE="$rpid"
export ZEROCAST_KAFKA_RESTART_CMD="$tansu broker --listener-url tcp://127.0.0.1:$rport \
--advertised-listener-url tcp://127.0.0.1:$rport --storage-engine memory://tansu/"
ZEROCAST_KAFKA_BROKERS="127.0.0.1:$port" cargo test -p zerocast-social \
  --test kafka_bus --test kafka_two_instances --test kafka_restart "$@" \
  -- --test-threads 1 --nocapture
