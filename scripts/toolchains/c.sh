#!/usr/bin/env bash
# Toolchain: C plugins (clang 19 for wasm32-wasi + wasi-libc, plus wasm-tools / wit-bindgen /
# the WASI reactor adapter from wasm-tools.sh).
#
#   scripts/toolchains/c.sh          # install what is missing, print the env to use
#   source scripts/toolchains/c.sh   # same, and export it into this shell
#
# Debian packages clang-19 lld-19 libclang-rt-19-dev-wasm32 wasi-libc are installed with
# apt-get (needs root) only when missing; Debian's default clang (14) is too old.
# Exports: SLUICE_WASM_CC (the compiler), SLUICE_WASM_CFLAGS (target, sysroot, reactor model),
# and everything wasm-tools.sh exports. Warm (everything present) this takes well under a second.

_sluice_c_install() (
  set -euo pipefail
  missing=()
  command -v clang-19 >/dev/null 2>&1 || missing+=(clang-19)
  command -v wasm-ld-19 >/dev/null 2>&1 || missing+=(lld-19)
  compgen -G '/usr/lib/llvm-19/lib/clang/19/lib/wasi/libclang_rt.builtins-wasm32.a' >/dev/null ||
    missing+=(libclang-rt-19-dev-wasm32)
  [ -f /usr/lib/wasm32-wasi/libc.a ] || missing+=(wasi-libc)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "[c.sh] apt-get install ${missing[*]}" >&2
    sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  fi
)

if ! _sluice_c_install; then
  echo "[c.sh] install failed" >&2
  unset -f _sluice_c_install
  return 1 2>/dev/null || exit 1
fi
unset -f _sluice_c_install
# shellcheck source=wasm-tools.sh
if ! source "$(dirname "${BASH_SOURCE[0]}")/wasm-tools.sh" >/dev/null; then
  return 1 2>/dev/null || exit 1
fi
export SLUICE_WASM_CC=clang-19
export SLUICE_WASM_CFLAGS="--target=wasm32-wasi --sysroot=/usr -mexec-model=reactor"
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  echo "export PATH=\"$PATH\""
  echo "export SLUICE_WASI_ADAPTER_REACTOR=\"$SLUICE_WASI_ADAPTER_REACTOR\""
  echo "export SLUICE_WASM_CC=\"$SLUICE_WASM_CC\""
  echo "export SLUICE_WASM_CFLAGS=\"$SLUICE_WASM_CFLAGS\""
fi
