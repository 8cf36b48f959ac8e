#!/usr/bin/env bash
# Line coverage per crate, measured with cargo-tarpaulin (ptrace engine: no llvm-tools needed).
#
#   scripts/coverage.sh                    # core ingest packager social edge
#   scripts/coverage.sh core packager      # only these crates (directory names)
#
# Needs `cargo install cargo-tarpaulin --locked` and the tools of scripts/setup.sh (the
# packager's fMP4 round-trip tests run ffmpeg/ffprobe; edge tests also run chromium and
# redis-server). Not run in CI: it rebuilds the workspace with tarpaulin's flags and runs the
# tests under ptrace, which is several times slower than `cargo test`.
#
# Each crate is measured by its own tests only (its unit tests and its tests/*.rs; doctests need
# nightly under tarpaulin and are not run), and only the lines of its own src/ count: a crate's
# coverage does not go up because another crate's tests happen to call it. For edge,
# --follow-exec traces the workspace binaries its tests start (the `zerocast` server as a child
# process via CARGO_BIN_EXE_zerocast); it is off for the other crates, because tarpaulin follows
# every exec and a traced redis-server (started by social's cache tests) crashes.
#
# Builds go to $CARGO_TARGET_DIR/tarpaulin (default target/tarpaulin), apart from the normal
# build so that neither invalidates the other; it is kept between runs like any cargo target
# dir. The reports and logs go to a temporary directory that is removed on exit.
#
# Timing: tarpaulin stops a test binary that says nothing for --timeout seconds (default 60).
# Under ptrace every traced line costs a trap, and the edge end-to-end tests (ffmpeg publishers
# replayed in real time, a browser, redis) can stay silent longer than that, so the timeout is
# ZEROCAST_COVERAGE_TIMEOUT seconds (default 600). No test is excluded. core, ingest and packager
# pass under ptrace as they are; social and edge were not measured when this was written: if one
# of their tests fails only under tarpaulin, exclude it here with its reason.
#
# Steadier numbers: the proptest cases are drawn from a fixed seed (PROPTEST_RNG_SEED,
# overridable), and the tests of a binary run one at a time (ZEROCAST_COVERAGE_TEST_THREADS,
# default 1). With two test threads under ptrace, four runs of the same ingest code counted
# 823, 825, 827 and 828 lines; with one thread, seven runs counted 827 six times and 828 once.
# Expect a line or two of noise. On core, ingest and packager one thread costs no measurable
# time; on edge, whose end-to-end tests wait in real time, it runs them back to back.
#
# ZEROCAST_COVERAGE_LINES=1 also prints, per crate, tarpaulin's list of uncovered lines and
# per-file counts (on stderr), to find what a new test should reach.
#
# Output: one row per crate, then the total. Exit status 1 if any crate's tests failed (its row
# says so and shows no number).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo tarpaulin --version >/dev/null 2>&1; then
  echo "coverage: cargo-tarpaulin is missing: cargo install cargo-tarpaulin --locked" >&2
  exit 2
fi

crates=("$@")
if [ ${#crates[@]} -eq 0 ]; then
  crates=(core ingest packager social edge)
fi

target="${CARGO_TARGET_DIR:-$PWD/target}/tarpaulin"
timeout="${ZEROCAST_COVERAGE_TIMEOUT:-600}"
threads="${ZEROCAST_COVERAGE_TEST_THREADS:-1}"
export PROPTEST_RNG_SEED="${PROPTEST_RNG_SEED:-1}"
work="$(mktemp -d "${TMPDIR:-/tmp}/zerocast-coverage.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# crate, lines covered, lines total, percent
row() {
  awk -v n="$1" -v c="$2" -v t="$3" 'BEGIN { printf "%-10s %9d %7d %7.2f%%\n", n, c, t, 100 * c / t }'
}

rows=()
failed=0
sum_covered=0
sum_total=0
for crate in "${crates[@]}"; do
  manifest="$crate/Cargo.toml"
  if [ ! -f "$manifest" ]; then
    echo "coverage: no crate at $crate/" >&2
    exit 2
  fi
  package="$(sed -n 's/^name *= *"\(.*\)"$/\1/p' "$manifest" | head -n 1)"
  log="$work/$crate.log"
  echo "coverage: $crate ($package)..." >&2
  # --follow-exec only where a test starts a workspace binary (edge runs `zerocast`): tarpaulin
  # follows every exec, and a traced redis-server (social's cache tests) dies with SIGSEGV.
  follow=()
  skip=()
  if [ "$crate" = edge ]; then
    follow=(--follow-exec)
    # Under ptrace these two fail for the tracer's sake, not the server's: Chromium traced
    # through --follow-exec does not start its renderer in time, and the child killed with
    # SIGKILL mid-trace makes tarpaulin report a segfault. Both run in `cargo test`; the code
    # they reach (HLS serving, the social API) is covered by the other edge tests.
    skip=(--skip hlsjs_plays_low_latency_without_stalls
      --skip kill_9_during_a_burst_loses_no_acknowledged_message)
  fi
  # --include-files: only this crate's src/ is counted (tests/ and other crates are not).
  if cargo tarpaulin \
    --engine ptrace \
    --packages "$package" \
    --lib --tests \
    "${follow[@]}" \
    --locked \
    --include-files "$crate/src/*" \
    --target-dir "$target" \
    --skip-clean \
    --timeout "$timeout" \
    --out Stdout \
    --output-dir "$work/$crate" \
    -- --test-threads="$threads" "${skip[@]}" \
    >"$log" 2>&1; then
    # Summary line: "87.50% coverage, 350/400 lines covered"
    summary="$(grep -E '^[0-9.]+% coverage, [0-9]+/[0-9]+ lines covered' "$log" | tail -n 1 || true)"
    covered="$(sed -E 's/.* ([0-9]+)\/([0-9]+) lines covered.*/\1/' <<<"$summary")"
    total="$(sed -E 's/.* ([0-9]+)\/([0-9]+) lines covered.*/\2/' <<<"$summary")"
    if [ -z "$summary" ] || [ "$total" -eq 0 ]; then
      echo "coverage: $crate: no coverage summary; tarpaulin said:" >&2
      tail -n 30 "$log" >&2
      rows+=("$(printf '%-10s %9s %7s %8s' "$crate" - - "no data")")
      failed=1
      continue
    fi
    if [ -n "${ZEROCAST_COVERAGE_LINES:-}" ]; then
      sed -n '/^|| Uncovered Lines:/,/lines covered/p' "$log" >&2
    fi
    sum_covered=$((sum_covered + covered))
    sum_total=$((sum_total + total))
    rows+=("$(row "$crate" "$covered" "$total")")
  else
    echo "coverage: $crate: tests failed under tarpaulin; last lines of its log:" >&2
    tail -n 40 "$log" >&2
    rows+=("$(printf '%-10s %9s %7s %8s' "$crate" - - "FAILED")")
    failed=1
  fi
done

printf '%-10s %9s %7s %8s\n' crate covered total percent
printf '%s\n' "${rows[@]}"
if [ "$sum_total" -gt 0 ]; then
  row total "$sum_covered" "$sum_total"
fi
exit "$failed"
