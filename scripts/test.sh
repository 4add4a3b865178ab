#!/usr/bin/env bash
# Runs the whole test suite: the set-up checks, then unit, property, integration and
# end-to-end tests (real commonsd processes on loopback). This is the command CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
source scripts/lib/common.sh

# The set-up checks first: they need no build.
scripts/tests/libclang-detection.sh

# End-to-end tests start the daemon and the CLI as real processes: build them first.
build_workspace
cargo test --workspace --locked "$@"

# The Sybil simulator alone, as a researcher without RocksDB and libp2p builds it.
cargo test -p commons-sim --no-default-features --locked --test sybil_only_build --test cli

# Two release builds of commons-cli from copies at different paths must be the same bytes
# (docs/RELEASES.md#reproducible-builds). Last: it builds from nothing, twice.
scripts/tests/reproducible-build.sh
