#!/usr/bin/env bash
# build.sh: builds the Python `mask` example into target/examples/python-mask.wasm
# (installing componentize-py into the toolchain cache first if needed).
#   examples/python-mask/build.sh
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
# shellcheck source=../../scripts/toolchains/python.sh
source "$repo/scripts/toolchains/python.sh"
cd "$repo"
# Bindings and the generated entry module go to target/, not into the example.
guest-sdk/python/componentize.sh --wit wit --world interceptor \
  --build target/examples/python-mask.build \
  -o target/examples/python-mask.wasm examples/python-mask/mask.py
