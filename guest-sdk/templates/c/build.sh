#!/usr/bin/env bash
# Builds the {{name}} plugin (C) into {{name}}.wasm, a component for the `interceptor` world.
#
# Tools: clang-19 with wasi-libc (Debian: clang-19 lld-19 libclang-rt-19-dev-wasm32
# wasi-libc), wit-bindgen (with the C generator) and wasm-tools. If
# SLUICE_TOOLCHAINS_SCRIPTS is set (the scripts/toolchains directory of a Sluice
# checkout), its c.sh installs whatever is missing and puts them on PATH; otherwise
# they must already be on PATH.
set -euo pipefail
cd "$(dirname "$0")"
if [ -n "${SLUICE_TOOLCHAINS_SCRIPTS:-}" ]; then
  # shellcheck disable=SC1091
  source "$SLUICE_TOOLCHAINS_SCRIPTS/c.sh" >/dev/null
fi
cc="${SLUICE_WASM_CC:-clang-19}"

rm -rf build
mkdir -p build
# Canonical-ABI glue for the world: build/interceptor.{h,c} and the component type object.
wit-bindgen c --world interceptor --out-dir build wit >/dev/null 2>&1 ||
  wit-bindgen c --world interceptor --out-dir build wit

"$cc" --target=wasm32-wasi --sysroot=/usr -mexec-model=reactor -O2 -Wall \
  -Isdk -Ibuild \
  plugin.c sdk/sluice.c build/interceptor.c build/interceptor_component_type.o \
  -Wl,--strip-debug -o build/core.wasm

# This plugin imports no WASI, so no adapter is needed. If you use stdio (printf,
# ...), pass the WASI preview1 reactor adapter:
#   --adapt wasi_snapshot_preview1=$SLUICE_WASI_ADAPTER_REACTOR   (set by c.sh)
adapt=()
if [ -n "${SLUICE_WASI_ADAPTER_REACTOR:-}" ]; then
  adapt=(--adapt "wasi_snapshot_preview1=$SLUICE_WASI_ADAPTER_REACTOR")
fi
wasm-tools component new build/core.wasm "${adapt[@]}" -o {{name}}.wasm
echo "built {{name}}.wasm ($(wc -c <{{name}}.wasm) bytes)"
