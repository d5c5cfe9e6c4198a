#!/usr/bin/env bash
# Builds the Go `mask` example plugin: target/examples/go-mask.wasm (a component for the
# `interceptor` world). Installs the toolchain on first use (scripts/toolchains/go.sh).
# Usage: examples/go-mask/build.sh
#
# Steps: `wit-bindgen go` writes the bindings module (module wit_component) into
# target/examples/go-mask.build/; this example's package export_sluice_plugin_intercept
# is copied in; go.mod gets `replace`s for the two local modules (guest-sdk/go, and the
# wit-bindgen Go runtime package from the toolchain), so no Go module proxy is used;
# `go build -buildmode=c-shared` for wasip1 gives a core module, which wasm-tools turns
# into a component with the WASI preview1 reactor adapter.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
# shellcheck source=../../scripts/toolchains/go.sh
source "$root/scripts/toolchains/go.sh" >/dev/null

out="$root/target/examples"
build="$out/go-mask.build"
rm -rf "$build"
mkdir -p "$build"
cd "$build"
wit-bindgen go --world interceptor "$root/wit" >/dev/null 2>&1 ||
  wit-bindgen go --world interceptor "$root/wit"
cp -r "$here/export_sluice_plugin_intercept" .
go mod edit -require=sluice@v0.0.0 -replace=sluice="$root/guest-sdk/go" \
  -replace=go.bytecodealliance.org/pkg="$SLUICE_GO_PKG"
go mod tidy >/dev/null 2>&1 || go mod tidy
# -checklinkname=0: the wit-bindgen runtime links to runtime.sbrk for cabi_realloc.
GOOS=wasip1 GOARCH=wasm go build -trimpath -buildmode=c-shared -ldflags="-checklinkname=0 -s -w" -o core.wasm .
wasm-tools component embed --world interceptor "$root/wit" core.wasm -o core-wit.wasm
wasm-tools component new core-wit.wasm --adapt "wasi_snapshot_preview1=$SLUICE_WASI_ADAPTER_REACTOR" \
  -o "$out/go-mask.wasm"
wasm-tools validate --features all "$out/go-mask.wasm"
ls -l "$out/go-mask.wasm" | awk '{print $5 " bytes  " $9}'
