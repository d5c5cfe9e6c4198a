#!/usr/bin/env bash
# Builds the first-party plugins as WebAssembly components into
# target/wasm32-wasip2/plugin/*.wasm (installing the wasm32-wasip2 target if needed).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! rustup target list --installed | grep -qx wasm32-wasip2; then
  rustup target add wasm32-wasip2
fi
cargo build --target wasm32-wasip2 --profile plugin \
  -p mask -p delimited -p header-router -p timestamp -p noop -p misbehave \
  -p travel-score -p hostile
# Apart, because it enables regex's `unicode-case` (for `(?i)`), and built
# together cargo would unify that feature into `mask` too (+48 KB).
cargo build --target wasm32-wasip2 --profile plugin -p flume-interceptors
ls -l target/wasm32-wasip2/plugin/*.wasm
