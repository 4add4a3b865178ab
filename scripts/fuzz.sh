#!/usr/bin/env bash
# Fuzzes every target in fuzz/fuzz_targets and prints a table of executions, executions per
# second and crashes per target. Each target runs for SECONDS (default 60), or until it has
# made N executions with --runs; --jobs J runs J targets at once (one core each).
# Needs the nightly toolchain and cargo-fuzz (`cargo +nightly install cargo-fuzz --locked`).
#
#   scripts/fuzz.sh [--runs N] [--jobs J] [SECONDS] [TARGET...]
#
# With --runs and SECONDS, a target stops at whichever comes first.
# New inputs go to fuzz/work/<target>/ (not committed), the committed corpus
# fuzz/corpus/<target>/ is read as seeds; a crash is saved under fuzz/artifacts/<target>/.
# To keep a finding as a regression test, copy its input into fuzz/corpus/<target>/: the
# test suite (fuzz/props/tests/corpus.rs) runs every corpus file on stable.
# The fuzz build is its own workspace on the light crates only (no RocksDB, no libp2p); it
# goes to $COMMONS_FUZZ_TARGET_DIR (default: $CARGO_TARGET_DIR-fuzz, or fuzz/target).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

usage() {
  echo "usage: scripts/fuzz.sh [--runs N] [--jobs J] [SECONDS] [TARGET...]  (N, J, SECONDS: whole numbers above 0)" >&2
  exit 2
}
whole() { [[ "$1" =~ ^[0-9]+$ ]] && (($1 > 0)); }
runs=""
parallel=1
seconds=""
while (($#)); do
  case "$1" in
    --runs) (($# >= 2)) && whole "$2" || usage; runs=$2; shift 2 ;;
    --jobs) (($# >= 2)) && whole "$2" || usage; parallel=$2; shift 2 ;;
    -*) usage ;;
    *) break ;;
  esac
done
if (($#)) && [[ "$1" =~ ^[0-9]+$ ]]; then
  whole "$1" || usage
  seconds=$1
  shift
fi
[[ -n "$seconds" || -n "$runs" ]] || seconds=60
limits=()
[[ -z "$seconds" ]] || limits+=(-max_total_time="$seconds")
[[ -z "$runs" ]] || limits+=(-runs="$runs")

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: needs the nightly toolchain and cargo-fuzz (cargo +nightly install cargo-fuzz --locked)" >&2
  exit 2
fi
target_dir="${COMMONS_FUZZ_TARGET_DIR:-${CARGO_TARGET_DIR:+$CARGO_TARGET_DIR-fuzz}}"
target_dir="${target_dir:-$PWD/target}"
# No sanitizer: the code under test is safe Rust (the one unsafe block is the allocation
# meter), and without one each target runs about twice as many inputs. Debug assertions
# stay on, so integer overflow is a crash.
flags=(--sanitizer none --debug-assertions --target-dir "$target_dir")

cargo +nightly fuzz build "${flags[@]}"

targets=("$@")
if ((${#targets[@]} == 0)); then
  mapfile -t targets < <(cargo +nightly fuzz list)
fi

# The largest input worth trying: a little above the decoder's size limit, so that the
# limit itself is exercised.
max_len() {
  case "$1" in
    attestation) echo 600 ;;
    signal | proposal) echo 8300 ;;
    presence) echo 24700 ;;
    release | any_message | sync_request) echo 66000 ;;
    sync_response | fetch_response) echo 70000 ;;
    fetch_request) echo 300 ;;
    chunk_run) echo 600 ;;
    *) echo 16384 ;;
  esac
}

mkdir -p logs
# One target: fuzz it, then write its table row to logs/<target>.row.
fuzz_one() {
  local target=$1 log="logs/$1.log" status=0 started=$SECONDS
  mkdir -p "work/$target" "corpus/$target" "artifacts/$target"
  echo "== $target: ${seconds:+${seconds}s}${seconds:+${runs:+ or }}${runs:+$runs runs}" >&2
  cargo +nightly fuzz run "${flags[@]}" "$target" "work/$target" "corpus/$target" -- \
    "${limits[@]}" -max_len="$(max_len "$target")" -timeout=10 \
    -print_final_stats=1 -artifact_prefix="artifacts/$target/" >"$log" 2>&1 || status=$?
  local executed secs crashes rate
  executed=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
  # A crashed target prints no "Done" line: its own time, then.
  secs=${secs:-$((SECONDS - started))}
  crashes=$(find "artifacts/$target" -type f | wc -l)
  rate=$((${executed:-0} / (secs > 0 ? secs : 1)))
  printf '%-16s %12s %10s %8s %8s %s\n' "$target" "${executed:-?}" "$rate" "$secs" "$crashes" \
    "$([[ $status == 0 && $crashes == 0 ]] && echo ok || echo "FAILED (exit $status, see fuzz/$log)")" \
    >"logs/$target.row"
}

for target in "${targets[@]}"; do
  rm -f "logs/$target.row"
  while (($(jobs -rp | wc -l) >= parallel)); do wait -n || true; done
  fuzz_one "$target" &
done
wait

printf '\n%-16s %12s %10s %8s %8s %s\n' target executions exec/s seconds crashes result
failed=0
for target in "${targets[@]}"; do
  if [[ -f "logs/$target.row" ]]; then
    cat "logs/$target.row"
    grep -q ' ok$' "logs/$target.row" || failed=1
  else
    printf '%-16s did not finish\n' "$target"
    failed=1
  fi
done
exit "$failed"
