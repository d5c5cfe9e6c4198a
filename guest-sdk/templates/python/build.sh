#!/usr/bin/env bash
# build.sh: builds {{name}}.wasm from plugin.py with componentize-py.
#
# Tools: componentize-py 0.25 on PATH. If SLUICE_TOOLCHAINS_SCRIPTS is set (a
# Sluice checkout's scripts/toolchains), python.sh there installs it into the
# toolchain cache if needed and puts it on PATH. Otherwise
# `pip install "componentize-py>=0.25,<0.26"` (in a virtualenv) first.
# Generated bindings and the entry module go to build/ (not to be committed).
set -euo pipefail
cd "$(dirname "$0")"
if [[ -n "${SLUICE_TOOLCHAINS_SCRIPTS:-}" ]]; then
  # shellcheck source=/dev/null
  source "$SLUICE_TOOLCHAINS_SCRIPTS/python.sh"
fi
sdk/componentize.sh --wit wit --world interceptor --build build -o {{name}}.wasm plugin.py
