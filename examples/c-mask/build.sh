#!/usr/bin/env bash
# Builds the C `mask` example plugin: target/examples/c-mask.wasm (a component for the
# `interceptor` world). Installs the toolchain on first use (scripts/toolchains/c.sh).
# Usage: examples/c-mask/build.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
# shellcheck source=../../scripts/toolchains/c.sh
source "$root/scripts/toolchains/c.sh" >/dev/null

out="$root/target/examples"
build="$out/c-mask.build"
rm -rf "$build"
mkdir -p "$build"

# Canonical-ABI glue for the world (types, host imports, the export shim, cabi_realloc).
wit-bindgen c --world interceptor --out-dir "$build" "$root/wit" >/dev/null 2>&1 ||
  wit-bindgen c --world interceptor --out-dir "$build" "$root/wit"

# POSIX regex (regcomp/regexec) comes from wasi-libc.
"$SLUICE_WASM_CC" $SLUICE_WASM_CFLAGS -O2 -Wall -Wextra -Wno-unused-parameter \
  -I"$root/guest-sdk/c" -I"$build" \
  "$here/mask.c" "$here/json.c" "$root/guest-sdk/c/sluice.c" \
  "$build/interceptor.c" "$build/interceptor_component_type.o" \
  -Wl,--strip-debug -o "$build/core.wasm"

# The core module imports no WASI today; the adapter is passed in case libc pulls some in.
wasm-tools component new "$build/core.wasm" \
  --adapt "wasi_snapshot_preview1=$SLUICE_WASI_ADAPTER_REACTOR" \
  -o "$out/c-mask.wasm"
wasm-tools validate --features all "$out/c-mask.wasm"
ls -l "$out/c-mask.wasm" | awk '{print $5 " bytes  " $9}'
