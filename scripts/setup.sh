#!/usr/bin/env bash
# Installs what building and testing commons-signal needs on a fresh Debian machine with a
# Rust toolchain: libclang for RocksDB's bindings, and Prometheus (promtool and the server)
# for the metrics tests. Safe to run again: it installs only what is missing.
set -euo pipefail

need=()
if ! compgen -G "/usr/lib/llvm-*/lib/libclang*.so*" >/dev/null \
   && ! compgen -G "/usr/lib/x86_64-linux-gnu/libclang*.so*" >/dev/null; then
  need+=(libclang-dev)
fi
if [[ "${COMMONS_SKIP_PROMETHEUS:-}" != 1 ]] && ! command -v promtool >/dev/null; then
  need+=(prometheus)
fi

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
