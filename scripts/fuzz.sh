#!/usr/bin/env bash
# Fuzzes every target in fuzz/fuzz_targets for SECONDS (default 60) each, one after the
# other on one core, and prints a table of executions, executions per second and crashes.
# Needs the nightly toolchain and cargo-fuzz (`cargo +nightly install cargo-fuzz --locked`).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# New inputs go to fuzz/work/<target>/ (not committed), the committed corpus
# fuzz/corpus/<target>/ is read as seeds; a crash is saved under fuzz/artifacts/<target>/.
# To keep a finding as a regression test, copy its input into fuzz/corpus/<target>/: the
# test suite (fuzz/props/tests/corpus.rs) runs every corpus file on stable.
# The fuzz build is its own workspace on the light crates only (no RocksDB, no libp2p); it
# goes to $COMMONS_FUZZ_TARGET_DIR (default: $CARGO_TARGET_DIR-fuzz, or fuzz/target).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds="${1:-60}"
shift || true
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || ((seconds == 0)); then
  echo "usage: scripts/fuzz.sh [SECONDS] [TARGET...]  (SECONDS: a whole number above 0)" >&2
  exit 2
fi
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
    *) echo 16384 ;;
  esac
}

mkdir -p logs
summary=()
failed=0
for target in "${targets[@]}"; do
  mkdir -p "work/$target" "corpus/$target" "artifacts/$target"
  log="logs/$target.log"
  echo "== $target: ${seconds}s" >&2
  status=0
  cargo +nightly fuzz run "${flags[@]}" "$target" "work/$target" "corpus/$target" -- \
    -max_total_time="$seconds" -max_len="$(max_len "$target")" -timeout=10 \
    -print_final_stats=1 -artifact_prefix="artifacts/$target/" >"$log" 2>&1 || status=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
  crashes=$(find "artifacts/$target" -type f | wc -l)
  rate=$(( ${runs:-0} / (${secs:-$seconds} > 0 ? ${secs:-$seconds} : 1) ))
  summary+=("$(printf '%-16s %12s %10s %8s %s' "$target" "${runs:-?}" "$rate" "$crashes" "$([[ $status == 0 ]] && echo ok || echo "FAILED (exit $status, see fuzz/$log)")")")
  if ((status != 0 || crashes > 0)); then failed=1; fi
done

printf '\n%-16s %12s %10s %8s %s\n' target executions exec/s crashes result
printf '%s\n' "${summary[@]}"
exit "$failed"
