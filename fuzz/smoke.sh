#!/usr/bin/env bash
# Builds every fuzz target and runs each for N seconds (default 15) from its committed seeds.
# Exits non-zero if a target fails to build or finds a crash (the input is left in
# fuzz/artifacts/<target>/). Usage: fuzz/smoke.sh [seconds]
#
# Stable Rust is enough: RUSTC_BOOTSTRAP=1 unlocks the sanitizer flags cargo-fuzz needs.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-15}"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

targets=$(cargo fuzz list)
echo "== build: $(echo $targets)"
cargo fuzz build

status=0
for target in $targets; do
  echo "== fuzz $target (${seconds}s)"
  # A scratch corpus directory: libFuzzer writes new inputs into the first corpus directory,
  # and only the seed-* files are committed.
  scratch="$(mktemp -d)"
  if ! cargo fuzz run "$target" "$scratch" "corpus/$target" -- \
      -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1; then
    echo "== fuzz $target FAILED (see fuzz/artifacts/$target/)" >&2
    status=1
  fi
  rm -rf "$scratch"
done
exit $status
