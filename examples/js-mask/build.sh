#!/usr/bin/env bash
# build.sh: builds the JavaScript `mask` example into target/examples/js-mask.wasm
# (installing componentize-js into the toolchain cache first if needed).
#   examples/js-mask/build.sh
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
# shellcheck source=../../scripts/toolchains/js.sh
source "$repo/scripts/toolchains/js.sh"
cd "$repo"
# The root is the repository, so that mask.js can import ../../guest-sdk/js/sluice.js.
node guest-sdk/js/componentize.mjs --wit wit --world interceptor --root . \
  -o target/examples/js-mask.wasm examples/js-mask/mask.js
