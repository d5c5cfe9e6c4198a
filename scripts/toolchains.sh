#!/usr/bin/env bash
# Installs the toolchains that build plugins in languages other than Rust,
# skipping what is present, into ${SLUICE_TOOLCHAINS:-$HOME/.cache/sluice/toolchains}
# (outside the repository, so a warm machine installs nothing).
#
#   scripts/toolchains.sh all               # rust target, js, python, c, go
#   scripts/toolchains.sh js python         # only these
#   source scripts/toolchains.sh c          # same, and export their PATH/env into this shell
#
# One script per toolchain does the work: scripts/toolchains/<name>.sh (each
# can also be run or sourced on its own); c and go also use wasm-tools.sh
# (wasm-tools, wit-bindgen, the WASI reactor adapter). `rust` adds the
# wasm32-wasip2 target. Run, each script prints the environment it sets.

_sluice_toolchains() {
  local dir sourced=$1
  shift
  dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/toolchains"
  local names=("$@")
  if [ ${#names[@]} -eq 0 ]; then
    echo "usage: scripts/toolchains.sh all|rust|js|python|c|go ..." >&2
    return 2
  fi
  local expanded=()
  local name
  for name in "${names[@]}"; do
    case "$name" in
      all) expanded+=(rust js python c go) ;;
      rust | js | python | c | go) expanded+=("$name") ;;
      *)
        echo "scripts/toolchains.sh: unknown toolchain \`$name\` (all, rust, js, python, c, go)" >&2
        return 2
        ;;
    esac
  done
  local done_wasm_tools=""
  for name in "${expanded[@]}"; do
    if [ "$name" = rust ]; then
      if command -v rustup >/dev/null 2>&1 &&
        ! rustup target list --installed | grep -qx wasm32-wasip2; then
        rustup target add wasm32-wasip2 >&2 || return 1
      fi
      continue
    fi
    local scripts=()
    if { [ "$name" = c ] || [ "$name" = go ]; } && [ -z "$done_wasm_tools" ]; then
      scripts+=(wasm-tools)
      done_wasm_tools=1
    fi
    scripts+=("$name")
    local s
    for s in "${scripts[@]}"; do
      if [ ! -f "$dir/$s.sh" ]; then
        echo "scripts/toolchains.sh: $dir/$s.sh is missing" >&2
        return 1
      fi
      echo "[toolchains] $s" >&2
      if [ -n "$sourced" ]; then
        # shellcheck disable=SC1090
        source "$dir/$s.sh" || {
          echo "[toolchains] $s failed" >&2
          return 1
        }
      else
        bash "$dir/$s.sh" || {
          echo "[toolchains] $s failed" >&2
          return 1
        }
      fi
    done
  done
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  _sluice_toolchains "" "$@"
else
  _sluice_toolchains 1 "$@"
  _sluice_toolchains_status=$?
  unset -f _sluice_toolchains
  return $_sluice_toolchains_status
fi
