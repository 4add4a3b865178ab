#!/usr/bin/env bash
# Crash safety by the hundred: kills one commonsd with `kill -9` at N random moments (default
# 100) during heavy RPC ingest, and after each restart checks that it holds every message it
# acknowledged, with the tally commons_aggregator recomputes from them
# (tests/tests/crash_loop.rs; the test suite runs 3 iterations of it). Prints the figure.
#
#   scripts/crash-loop.sh [N] [SEED]
#
# A failure names its seed; run it again with that SEED to repeat the same moments.
set -euo pipefail
cd "$(dirname "$0")/.."

iterations="${1:-100}"
if ! [[ "$iterations" =~ ^[0-9]+$ ]] || ((iterations == 0)); then
  echo "usage: scripts/crash-loop.sh [N] [SEED]  (N: a whole number above 0)" >&2
  exit 2
fi
export COMMONS_CRASH_LOOP_ITERATIONS=$iterations
if [[ -n ${2:-} ]]; then
  export COMMONS_CRASH_LOOP_SEED=$2
fi
cargo build --workspace --bins --locked
started=$(date +%s)
cargo test --workspace --locked --test crash_loop -- --nocapture 2>&1 | grep -E "crash loop|crash_loop:|panicked|test result"
echo "crash-loop.sh: $iterations iterations in $(($(date +%s) - started)) s"
