#!/usr/bin/env bash
# Installs what building and testing commons-signal needs on a fresh Debian machine with a
# Rust toolchain: libclang for RocksDB's bindings, Prometheus (promtool and the server)
# for the metrics tests, tmux, the terminal in which a test reads the README's first
# command as a person sees it, and for the network fault tests iproute2 (network
# namespaces), nftables (loss and partitions) and faketime (a skewed clock for one daemon). Safe to run again: it installs only what is missing, and checks
# afterwards that what it installed is really there.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/lib/libclang.sh"

need=()
libclang_found || need+=(libclang-dev)
if [[ "${COMMONS_SKIP_PROMETHEUS:-}" != 1 ]] \
   && ! { command -v promtool >/dev/null && command -v prometheus >/dev/null; }; then
  need+=(prometheus)
fi
command -v tmux >/dev/null || need+=(tmux)
# ip and nft live in /usr/sbin, which is not on every user's PATH.
have() { command -v "$1" >/dev/null || [[ -x /usr/sbin/$1 || -x /sbin/$1 ]]; }
have ip || need+=(iproute2)
have nft || need+=(nftables)
have faketime || need+=(faketime)

if ((${#need[@]})); then
  echo "setup: installing ${need[*]}" >&2
  sudo=()
  if [[ $(id -u) != 0 ]]; then sudo=(sudo); fi
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # The prometheus package starts a server on :9090 for the whole machine; tests start
  # their own on loopback ports, so stop the system one where there is a service manager.
  if [[ " ${need[*]} " == *" prometheus "* ]] && command -v systemctl >/dev/null; then
    "${sudo[@]}" systemctl disable --now prometheus >/dev/null 2>&1 || true
  fi
fi

if ! libclang_found; then
  echo "setup: libclang.so is still missing after installing libclang-dev; set LIBCLANG_PATH to the directory that holds it" >&2
  exit 1
fi
if ! command -v tmux >/dev/null; then
  echo "setup: tmux is still missing after installing it" >&2
  exit 1
fi
for tool in ip:iproute2 nft:nftables faketime:faketime; do
  if ! have "${tool%%:*}"; then
    echo "setup: ${tool%%:*} is still missing after installing ${tool##*:}" >&2
    exit 1
  fi
done

# The toolchain rust-toolchain.toml pins, which every cargo command in the clone then uses.
# Where rustup can download, it installs a missing one by itself; on a machine that cannot,
# but whose stable toolchain is that very version, only the name is missing.
pinned=$(sed -n 's/^channel = "\(.*\)"$/\1/p' "$here/../rust-toolchain.toml")
if command -v rustup >/dev/null && ! rustup toolchain list | grep -q "^$pinned-"; then
  toolchains="${RUSTUP_HOME:-${HOME:-/root}/.rustup}/toolchains"
  host=$(rustup run stable rustc -vV 2>/dev/null | sed -n 's/^host: //p' || true)
  if [[ -n "$host" && "$(rustup run stable rustc -V)" == "rustc $pinned "* ]]; then
    ln -s "$toolchains/stable-$host" "$toolchains/$pinned-$host"
    echo "setup: Rust $pinned (rust-toolchain.toml) is this machine's stable toolchain: named it $pinned" >&2
  else
    echo "setup: rust-toolchain.toml pins Rust $pinned, which is not installed: rustup toolchain install $pinned" >&2
  fi
fi
