#!/usr/bin/env bash
# Builds the {{name}} plugin (Go) into {{name}}.wasm, a component for the `interceptor` world.
#
# Tools: Go >= 1.25 (GOOS=wasip1), wit-bindgen (with the Go generator, >= 0.50) and
# wasm-tools on PATH, plus the WASI preview1 reactor adapter
# (wasi_snapshot_preview1.reactor.wasm, wasmtime >= 50) named by
# SLUICE_WASI_ADAPTER_REACTOR. If SLUICE_TOOLCHAINS_SCRIPTS is set (the
# scripts/toolchains directory of a Sluice checkout), its go.sh installs all of that
# and sets SLUICE_GO_PKG to a local copy of the Go module go.bytecodealliance.org/pkg;
# without SLUICE_GO_PKG, `go mod tidy` fetches that module from the Go module proxy.
set -euo pipefail
cd "$(dirname "$0")"
if [ -n "${SLUICE_TOOLCHAINS_SCRIPTS:-}" ]; then
  # shellcheck disable=SC1091
  source "$SLUICE_TOOLCHAINS_SCRIPTS/go.sh" >/dev/null
fi
: "${SLUICE_WASI_ADAPTER_REACTOR:?set it to the path of wasi_snapshot_preview1.reactor.wasm (or set SLUICE_TOOLCHAINS_SCRIPTS)}"
here="$(pwd)"

# The bindings module (module wit_component) is generated into build/, and the plugin's
# package is copied next to the generated ones.
rm -rf build
mkdir -p build
cd build
wit-bindgen go --world interceptor ../wit >/dev/null 2>&1 || wit-bindgen go --world interceptor ../wit
cp -r ../export_sluice_plugin_intercept .
go mod edit -require=sluice@v0.0.0 -replace=sluice="$here/sdk"
if [ -n "${SLUICE_GO_PKG:-}" ]; then
  go mod edit -replace=go.bytecodealliance.org/pkg="$SLUICE_GO_PKG"
fi
go mod tidy >/dev/null 2>&1 || go mod tidy
# -checklinkname=0: the bindings' runtime links to runtime.sbrk.
GOOS=wasip1 GOARCH=wasm go build -trimpath -buildmode=c-shared -ldflags="-checklinkname=0 -s -w" -o core.wasm .
wasm-tools component embed --world interceptor ../wit core.wasm -o core-wit.wasm
wasm-tools component new core-wit.wasm --adapt "wasi_snapshot_preview1=$SLUICE_WASI_ADAPTER_REACTOR" \
  -o "../{{name}}.wasm"
cd ..
echo "built {{name}}.wasm ($(wc -c <{{name}}.wasm) bytes)"
