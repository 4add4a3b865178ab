#!/usr/bin/env bash
# Builds the release set (commonsd and commons-cli) so that anyone who builds the same
# commit with the same toolchain (rust-toolchain.toml) gets the same bytes, wherever the
# clone, the cargo home and the build directory are. Writes the executables and SHA256SUMS
# to the output directory and prints SHA256SUMS. See docs/RELEASES.md.
#
#   scripts/release-build.sh [--out DIR] [--target-dir DIR] [--package PKG]...
#
#   --out DIR         where the executables and SHA256SUMS go (default: dist/ in the clone)
#   --target-dir DIR  cargo's build directory (default: $HOME/.cache/commons-signal/release-target;
#                     never the debug build's, whose flags differ)
#   --package PKG     build only these packages' executables (default: commons-node and
#                     commons-cli); the reproducibility test builds commons-cli alone
set -euo pipefail
cd "$(dirname "$0")/.."
src=$(pwd -P)

out="$src/dist"
target="${HOME:-/root}/.cache/commons-signal/release-target"
packages=()
while (($#)); do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --target-dir) target=$2; shift 2 ;;
    --package|-p) packages+=("$2"); shift 2 ;;
    *) echo "release-build.sh: unknown argument $1 (see the comment at the top of the script)" >&2; exit 2 ;;
  esac
done
((${#packages[@]})) || packages=(commons-node commons-cli)
mkdir -p "$out" "$target"
out=$(cd "$out" && pwd -P)
target=$(cd "$target" && pwd -P)
cargo_home=$(cd "${CARGO_HOME:-${HOME:-/root}/.cargo}" && pwd -P)

# Nothing from the caller's environment may change the compiler's input: other flags,
# a compiler wrapper, or incremental builds (whose object files differ run to run).
unset RUSTFLAGS CARGO_BUILD_RUSTFLAGS RUSTDOCFLAGS RUSTC_WRAPPER CARGO_BUILD_RUSTC_WRAPPER \
  RUSTC_WORKSPACE_WRAPPER CARGO_PROFILE_RELEASE_INCREMENTAL CARGO_BUILD_TARGET CFLAGS CXXFLAGS
export CARGO_INCREMENTAL=0
export CARGO_TARGET_DIR="$target"

# The time of the commit, for any tool that would otherwise write the time of the build.
if [[ -z "${SOURCE_DATE_EPOCH:-}" ]]; then
  if ! SOURCE_DATE_EPOCH=$(git -C "$src" log -1 --format=%ct 2>/dev/null); then
    echo "release-build.sh: not a git clone; set SOURCE_DATE_EPOCH to the release commit's time (git log -1 --format=%ct)" >&2
    exit 2
  fi
fi
export SOURCE_DATE_EPOCH

# Absolute paths reach a binary through panic locations, debug line tables and file!():
# the clone, the cargo home (dependencies' sources) and the build directory (generated
# sources such as RocksDB's bindings) are written as fixed names instead. Rust code gets
# --remap-path-prefix; the C and C++ of RocksDB, lz4 and zstd the same map through cc.
remaps=("$src=/build/commons-signal" "$cargo_home=/build/cargo" "$target=/build/target")
rustflags=()
cflags=()
for map in "${remaps[@]}"; do
  rustflags+=("--remap-path-prefix=$map")
  cflags+=("-ffile-prefix-map=$map")
done
CARGO_ENCODED_RUSTFLAGS=$(IFS=$'\x1f'; echo "${rustflags[*]}")
export CARGO_ENCODED_RUSTFLAGS
export CFLAGS="${cflags[*]}" CXXFLAGS="${cflags[*]}"

package_args=()
for p in "${packages[@]}"; do package_args+=(-p "$p"); done
# Cargo names each executable it built in its JSON messages.
messages="$target/release-build-messages.json"
cargo build --release --locked --bins "${package_args[@]}" \
  --message-format=json-render-diagnostics > "$messages"
mapfile -t executables < <(sed -n 's/.*"reason":"compiler-artifact".*"executable":"\([^"]*\)".*/\1/p' "$messages")
((${#executables[@]})) || { echo "release-build.sh: cargo built no executable" >&2; exit 1; }
names=()
for exe in "${executables[@]}"; do
  cp "$exe" "$out/"
  names+=("$(basename "$exe")")
done
(cd "$out" && sha256sum "${names[@]}" > SHA256SUMS && cat SHA256SUMS)
