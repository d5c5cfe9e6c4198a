#!/usr/bin/env bash
# JavaScript plugin toolchain: npm `@bytecodealliance/componentize-js` 0.23.x,
# installed into ${SLUICE_TOOLCHAINS:-$HOME/.cache/sluice/toolchains}/js.
#
# Run it (installs what is missing and prints the environment to use) or source
# it (installs what is missing and exports that environment):
#
#   source scripts/toolchains/js.sh
#   node guest-sdk/js/componentize.mjs --wit wit --world interceptor -o out.wasm plugin.js
#
# Needs `node` (>= 20) and `npm` on PATH. Exports:
#   SLUICE_COMPONENTIZE_JS  directory of the componentize-js package (read by
#                           guest-sdk/js/componentize.mjs)
#   PATH                    gains the toolchain's node_modules/.bin
#
# componentize-js is used through its `componentize()` API (see
# guest-sdk/js/componentize.mjs), not through the `jco componentize` CLI, whose
# WASI shim has no preopens here; and 0.23 directly, not the older copy nested
# inside jco (it trapped after ~100 calls). Cold: about 25 s and 385 MB (npm);
# warm (already installed): a few milliseconds.

_sluice_js_install() (
  set -euo pipefail
  version="0.23"
  dir="${SLUICE_TOOLCHAINS:-$HOME/.cache/sluice/toolchains}/js"
  pkg="$dir/node_modules/@bytecodealliance/componentize-js/package.json"
  if [[ -f "$pkg" ]] && grep -q "\"version\": \"$version\." "$pkg"; then
    exit 0
  fi
  for tool in node npm; do
    if ! command -v "$tool" >/dev/null; then
      echo "js toolchain: \`$tool\` is not on PATH; install Node.js 20 or newer" >&2
      exit 1
    fi
  done
  echo "js toolchain: installing @bytecodealliance/componentize-js@$version.x into $dir" >&2
  mkdir -p "$dir"
  if [[ ! -f "$dir/package.json" ]]; then
    printf '{ "name": "sluice-js-toolchain", "private": true }\n' >"$dir/package.json"
  fi
  npm install --prefix "$dir" --no-audit --no-fund --loglevel=error \
    "@bytecodealliance/componentize-js@~$version.0" >&2
)

if _sluice_js_install; then
  SLUICE_COMPONENTIZE_JS="${SLUICE_TOOLCHAINS:-$HOME/.cache/sluice/toolchains}/js/node_modules/@bytecodealliance/componentize-js"
  export SLUICE_COMPONENTIZE_JS
  case ":$PATH:" in
    *":${SLUICE_COMPONENTIZE_JS%/@bytecodealliance/*}/.bin:"*) ;;
    *) export PATH="${SLUICE_COMPONENTIZE_JS%/@bytecodealliance/*}/.bin:$PATH" ;;
  esac
  if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    echo "export SLUICE_COMPONENTIZE_JS=\"$SLUICE_COMPONENTIZE_JS\""
    echo "export PATH=\"${SLUICE_COMPONENTIZE_JS%/@bytecodealliance/*}/.bin:\$PATH\""
  fi
  unset -f _sluice_js_install
else
  unset -f _sluice_js_install
  # `return` when sourced, `exit` when run.
  return 1 2>/dev/null || exit 1
fi
