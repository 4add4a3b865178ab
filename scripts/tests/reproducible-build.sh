#!/usr/bin/env bash
# Builds commons-cli for release twice, from two copies of this clone at different paths
# with different build directories, and checks the two executables are the same bytes.
# The daemon is left out to keep the suite short (with RocksDB, a release build is about
# 48 CPU-minutes);
# `--whole-set` builds the whole release set (commonsd and commons-cli) twice instead and
# compares the two SHA256SUMS, as a release manager does (figures in docs/RELEASES.md).
#
#   scripts/tests/reproducible-build.sh [--whole-set]
set -euo pipefail
cd "$(dirname "$0")/../.."
packages=(--package commons-cli)
what="commons-cli"
case "${1:-}" in
  "") ;;
  --whole-set) packages=(); what="the release set" ;;
  *) echo "reproducible-build.sh: unknown argument $1 (the only one is --whole-set)" >&2; exit 2 ;;
esac
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

# Both at once: the same CPU time as one after the other, in less wall time where a build
# leaves a core idle (linking, the C++ of RocksDB's last files).
"$first/scripts/release-build.sh" "${packages[@]}" \
  --target-dir "$work/first/target" --out "$work/first/out" > "$work/first.log" 2>&1 &
first_build=$!
"$second/scripts/release-build.sh" "${packages[@]}" \
  --target-dir "$work/second-build-elsewhere/build" --out "$work/second-build-elsewhere/out" \
  > "$work/second.log" 2>&1 &
second_build=$!
for build in "$first_build:first" "$second_build:second"; do
  if ! wait "${build%%:*}"; then
    echo "reproducible build: the ${build#*:} release build failed:" >&2
    tail -30 "$work/${build#*:}.log" >&2
    echo "reproducible build: 0 passed, 1 failed"
    exit 1
  fi
done

if ! cmp -s "$work/first/out/SHA256SUMS" "$work/second-build-elsewhere/out/SHA256SUMS"; then
  echo "reproducible build: two release builds of $what differ:" >&2
  cat "$work/first/out/SHA256SUMS" "$work/second-build-elsewhere/out/SHA256SUMS" >&2
  echo "reproducible build: 0 passed, 1 failed"
  exit 1
fi
echo "reproducible build: both builds of $what give"
sed 's/^/  /' "$work/first/out/SHA256SUMS"
echo "reproducible build: 1 passed, 0 failed"
