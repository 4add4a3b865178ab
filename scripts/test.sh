#!/usr/bin/env bash
# Runs the whole test suite: unit, property, integration and end-to-end tests (real commonsd
# processes on loopback). This is the command CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

# The set-up checks first: they need no build.
scripts/tests/libclang-detection.sh

# Reuse a build directory outside the clone, so a fresh clone does not rebuild libp2p and
# RocksDB from nothing (about 9 minutes on 2 cores).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${HOME:-/root}/.cache/commons-signal/target}"
mkdir -p "$CARGO_TARGET_DIR"

# End-to-end tests start the daemon and the CLI as real processes: build them first.
cargo build --workspace --bins --tests --locked
cargo test --workspace --locked "$@"
