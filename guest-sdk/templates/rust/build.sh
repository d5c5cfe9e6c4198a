#!/usr/bin/env bash
# Builds the Sluice plugin `{{name}}` (Rust) into {{name}}.wasm beside this script.
# Needs cargo and the wasm32-wasip2 target (added with rustup when missing).
# Rust needs no script from $SLUICE_TOOLCHAINS_SCRIPTS (the other languages'
# build.sh source theirs from it); cargo must be on PATH.
set -euo pipefail
cd "$(dirname "$0")"
if command -v rustup >/dev/null 2>&1 \
  && ! rustup target list --installed | grep -qx wasm32-wasip2; then
  rustup target add wasm32-wasip2
fi
cargo build --target wasm32-wasip2 --release
cp "${CARGO_TARGET_DIR:-target}/wasm32-wasip2/release/{{name_snake}}.wasm" "{{name}}.wasm"
echo "built $PWD/{{name}}.wasm ($(wc -c <"{{name}}.wasm") bytes)"
