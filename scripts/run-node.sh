#!/usr/bin/env bash
# Builds commonsd and starts a node on the built-in regtest network, with its data in
# ./regtest-node (or $COMMONS_DATADIR). Extra arguments go to commonsd.
set -euo pipefail
cd "$(dirname "$0")/.."
COMMONS_SKIP_PROMETHEUS=1 scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${HOME:-/root}/.cache/commons-signal/target}"
cargo build --locked --bin commonsd --bin commons-cli
datadir="${COMMONS_DATADIR:-$PWD/regtest-node}"
mkdir -p "$datadir"
echo "Starting commonsd on regtest, data in $datadir. Stop it with Ctrl-C." >&2
echo "In another terminal: $CARGO_TARGET_DIR/debug/commons-cli --datadir $datadir getinfo" >&2
exec "$CARGO_TARGET_DIR/debug/commonsd" --network regtest --datadir "$datadir" "$@"
