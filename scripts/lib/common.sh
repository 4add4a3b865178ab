# Sourced by the scripts under scripts/: where builds go, and the one build every README
# command runs.

# A build directory outside the clone, so a fresh clone reuses what an earlier one built
# (libp2p and RocksDB take 20 to 30 minutes from nothing on two cores).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${HOME:-/root}/.cache/commons-signal/target}"
mkdir -p "$CARGO_TARGET_DIR"

# The binaries of the workspace and its tests, with one set of cargo features. Both README
# commands build exactly this: cargo unifies the features of the packages and targets it
# builds at once, so a narrower build (only the daemon's binaries, say) would compile libp2p
# and its neighbours a second time with other features.
build_workspace() {
  cargo build --workspace --bins --tests --locked
}
