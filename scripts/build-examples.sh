#!/usr/bin/env bash
# Builds the example plugins of the other languages: runs every
# examples/*/build.sh (each installs its toolchain if missing, through
# scripts/toolchains/, and writes target/examples/<name>.wasm). The Rust
# plugins, `mask` included, are built by scripts/build-plugins.sh.
#
#   scripts/build-examples.sh              # every example
#   scripts/build-examples.sh js-mask c-mask   # only these
set -euo pipefail
cd "$(dirname "$0")/.."
export SLUICE_TOOLCHAINS_SCRIPTS="${SLUICE_TOOLCHAINS_SCRIPTS:-$PWD/scripts/toolchains}"
if [ $# -gt 0 ]; then
  examples=()
  for name in "$@"; do examples+=("examples/$name"); done
else
  examples=(examples/*/)
fi
built=0
for dir in "${examples[@]}"; do
  dir="${dir%/}"
  [ -f "$dir/build.sh" ] || continue
  echo "== $dir" >&2
  started=$(date +%s)
  bash "$dir/build.sh"
  echo "== $dir built in $(($(date +%s) - started)) s" >&2
  built=$((built + 1))
done
if [ "$built" -eq 0 ]; then
  echo "no examples/*/build.sh found" >&2
  exit 1
fi
ls -l target/examples/*.wasm
