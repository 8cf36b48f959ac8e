#!/usr/bin/env bash
# Social-plane load, two builds side by side in one session: chat-load.sh and graph-load.sh run
# against server A, then B, then A and B again for the graph (the order alternates so a drift of
# the host over the run does not favour one side). Both use the same load generator.
# Usage: benches/scripts/social-compare.sh A_ZEROCAST_BIN B_ZEROCAST_BIN [LOAD_BIN]
#   CHAT="500 30 1000"            chat-load.sh arguments (rate, seconds, clients)
#   GRAPH="100000:1000000:30"     graph-load.sh size; GRAPH_LOAD_ARGS=--warm is set
# Build each side first, e.g. a worktree of the older commit with
# `cargo build --release -p zerocast-edge -p zerocast-benches`.
set -euo pipefail
cd "$(dirname "$0")/../.."
a="$1"; b="$2"; load="${3:-target/release/zerocast-load}"
chat=(${CHAT:-500 30 1000})
graph="${GRAPH:-100000:1000000:30}"
run() { # label server script args...
  local label="$1" bin="$2" script="$3"; shift 3
  echo "=== $label ($bin): $script $*"
  NO_BUILD=1 ZEROCAST_BIN="$bin" ZEROCAST_LOAD_BIN="$load" "benches/scripts/$script" "$@"
}
run A "$a" chat-load.sh "${chat[@]}"
run B "$b" chat-load.sh "${chat[@]}"
export GRAPH_LOAD_ARGS="${GRAPH_LOAD_ARGS:---warm}"
run B "$b" graph-load.sh "$graph"
run A "$a" graph-load.sh "$graph"
