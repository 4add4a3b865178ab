#!/usr/bin/env bash
# Checks scripts/lib/libclang.sh against fake directory trees: a fresh Debian machine carries
# libclang-cpp.so.14 and may carry libclang.so.1, neither of which clang-sys links against, so
# both must read as "missing" (a glob like libclang*.so* once decided "present" here and
# libclang-dev was never installed). Run by scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib/libclang.sh

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0
failed=0

# expect NAME present|missing FILE...: builds a tree holding FILE... and checks the verdict.
expect() {
  local name=$1 want=$2
  shift 2
  local root="$tmp/$name" f got
  mkdir -p "$root"
  for f in "$@"; do
    mkdir -p "$root/$(dirname "$f")"
    if [[ $f == *"->"* ]]; then
      ln -s "${f#*->}" "$root/${f%->*}"
    else
      : >"$root/$f"
    fi
  done
  if libclang_found "$root"; then got=present; else got=missing; fi
  if [[ $got == "$want" ]]; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    echo "FAIL libclang detection, $name: decided $got, expected $want (tree: $*)" >&2
  fi
}

expect fresh-debian missing \
  usr/lib/llvm-14/lib/libclang-cpp.so.14 \
  usr/lib/x86_64-linux-gnu/libclang-cpp.so.14 \
  usr/lib/llvm-14/lib/libclang.so.1 \
  usr/lib/x86_64-linux-gnu/libclang-14.so.1
expect cpp-dev-only missing \
  usr/lib/llvm-14/lib/libclang-cpp.so \
  usr/lib/llvm-14/lib/libclang-cpp.so.14
expect dangling-link missing \
  "usr/lib/llvm-14/lib/libclang.so->libclang-14.so.1"
expect empty missing
expect libclang-dev present \
  usr/lib/llvm-14/lib/libclang.so \
  usr/lib/llvm-14/lib/libclang-cpp.so.14
expect libclang-dev-link present \
  usr/lib/llvm-14/lib/libclang-14.so.1 \
  "usr/lib/llvm-14/lib/libclang.so->libclang-14.so.1"
expect versioned-name present \
  usr/lib/x86_64-linux-gnu/libclang-16.so
expect local-build present \
  usr/local/llvm-18/lib/libclang.so

echo "libclang detection: $passed passed, $failed failed"
((failed == 0))
