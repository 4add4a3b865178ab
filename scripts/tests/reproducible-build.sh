#!/usr/bin/env bash
# Builds commons-cli for release twice, from two copies of this clone at different paths
# with different build directories, and checks the two executables are the same bytes.
# The daemon is left out to keep the suite short (RocksDB alone takes 20 to 40 minutes):
# scripts/release-build.sh builds it through the same flags, and RELEASES.md gives the
# figures of a whole release set built twice.
set -euo pipefail
cd "$(dirname "$0")/../.."
work=$(mktemp -d "${TMPDIR:-/tmp}/reproducible-build.XXXXXX")
trap 'rm -rf "$work"' EXIT

# The commit's time, so both copies (which are no git clones) agree on it.
SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || echo 1700000000)
export SOURCE_DATE_EPOCH

# Each copy holds the files git knows of, as they are now (committed or not), at paths of
# different lengths, so that an absolute path left in the binary would show.
copy() {
  mkdir -p "$1"
  git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
    [[ -e "$f" ]] && printf '%s\0' "$f"
  done | tar --null -T - -cf - | tar -xf - -C "$1"
}
first="$work/first/commons-signal"
second="$work/second-build-elsewhere/src"
copy "$first"
copy "$second"

"$first/scripts/release-build.sh" --package commons-cli \
  --target-dir "$work/first/target" --out "$work/first/out" > /dev/null
"$second/scripts/release-build.sh" --package commons-cli \
  --target-dir "$work/second-build-elsewhere/build" --out "$work/second-build-elsewhere/out" > /dev/null

if ! cmp -s "$work/first/out/SHA256SUMS" "$work/second-build-elsewhere/out/SHA256SUMS"; then
  echo "reproducible build: two release builds of commons-cli differ:" >&2
  cat "$work/first/out/SHA256SUMS" "$work/second-build-elsewhere/out/SHA256SUMS" >&2
  echo "reproducible build: 0 passed, 1 failed"
  exit 1
fi
echo "reproducible build: both give $(cat "$work/first/out/SHA256SUMS")"
echo "reproducible build: 1 passed, 0 failed"
