#!/usr/bin/env bash
# Installs what building and testing commons-signal needs on a fresh Debian machine with a
# Rust toolchain: libclang for RocksDB's bindings, Prometheus (promtool and the server)
# for the metrics tests, and tmux, the terminal in which a test reads the README's first
# command as a person sees it. Safe to run again: it installs only what is missing, and checks
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
