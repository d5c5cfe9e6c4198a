#!/usr/bin/env bash
# build.sh: builds {{name}}.wasm from plugin.js with componentize-js.
#
# Tools: node (>= 20) and npm package @bytecodealliance/componentize-js 0.23.
# If SLUICE_TOOLCHAINS_SCRIPTS is set (a Sluice checkout's scripts/toolchains),
# js.sh there installs componentize-js into the toolchain cache if needed and
# sets SLUICE_COMPONENTIZE_JS. Otherwise set SLUICE_COMPONENTIZE_JS yourself, or
# run `npm install @bytecodealliance/componentize-js@0.23` in this directory.
set -euo pipefail
cd "$(dirname "$0")"
if [[ -n "${SLUICE_TOOLCHAINS_SCRIPTS:-}" ]]; then
  # shellcheck source=/dev/null
  source "$SLUICE_TOOLCHAINS_SCRIPTS/js.sh"
fi
node sdk/componentize.mjs --wit wit --world interceptor -o {{name}}.wasm plugin.js
