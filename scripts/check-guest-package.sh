#!/usr/bin/env bash
# Checks that the Rust guest SDK works as an ordinary, packaged dependency:
#
# 1. `wit` at the root is a link to guest-sdk/wit, the one copy of the contract
#    (the one that goes into the sluice-guest package);
# 2. `cargo package` packages sluice-batch, sluice-guest-macros and
#    sluice-guest together and builds each packaged crate (their dependencies
#    on each other resolve to the packaged copies); sluice-guest's package
#    holds every guest-sdk/wit/*.wit;
# 3. the .crate files are extracted into a temporary directory, and the Rust
#    plugin template (guest-sdk/templates/rust/) is rendered there as
#    `sluice plugin new` would, with its SDK `path` at the extracted sluice-guest
#    and the extracted sluice-batch and sluice-guest-macros patched in: nothing
#    of the checkout is used;
# 4. that plugin passes its native `cargo test` and its own build.sh
#    (`cargo build --target wasm32-wasip2 --release`) writes a component;
#    with SLUICE_BIN set to a `sluice` binary, the component also passes the
#    template's golden test (`sluice plugin test ... --expected`).
#
#   scripts/check-guest-package.sh
#   SLUICE_BIN=target/debug/sluice scripts/check-guest-package.sh
#
# Cargo runs offline after one `cargo fetch` of the workspace's lock file (a
# no-op when everything is cached; on a fresh machine it brings the native-only
# dependencies a wasm build of the plugins did not need), and the plugin
# starts from the workspace's Cargo.lock, so it gets the same versions. Builds
# go to $CARGO_TARGET_DIR (default target/), the plugin's to its
# guest-package-check/, kept so that the next run is warm; the temporary
# directory is removed on exit. Each step is stopped after
# SLUICE_CHECK_STEP_TIMEOUT seconds (default 900). Exits non-zero on any failure.
set -euo pipefail
repo=$(realpath "$(dirname "$0")/..")
# Relative paths are taken from where the script was started, as cargo does.
target=$(realpath -m "${CARGO_TARGET_DIR:-$repo/target}")
sluice_bin="${SLUICE_BIN:+$(realpath "$SLUICE_BIN")}"
step_timeout="${SLUICE_CHECK_STEP_TIMEOUT:-900}"
cd "$repo"
crates=(sluice-batch sluice-guest-macros sluice-guest)
name=package-check
cargo fetch --locked --quiet
export CARGO_NET_OFFLINE=true

say() { echo "[check-guest-package] $*" >&2; }
fail() {
  say "FAILED: $*"
  exit 1
}
# Runs a step with a time limit; a failure or timeout fails the check.
run() {
  local status=0
  timeout --kill-after=10 "$step_timeout" "$@" || status=$?
  if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
    fail "timed out after ${step_timeout}s: $*"
  elif [ "$status" -ne 0 ]; then
    fail "exit status $status: $*"
  fi
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/sluice-guest-package.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
started=$SECONDS

# 1. One copy of the contract.
[ -L wit ] && [ "$(realpath wit)" = "$(realpath guest-sdk/wit)" ] ||
  fail "wit must be a symbolic link to guest-sdk/wit (the contract lives in the sluice-guest crate)"

# 2. Package (and build) the three crates.
version=$(sed -n '/^\[workspace\.package\]/,/^\[/s/^version = "\(.*\)"$/\1/p' Cargo.toml)
[ -n "$version" ] || fail "no version in [workspace.package] of Cargo.toml"
say "cargo package ${crates[*]} ($version)"
package_args=()
for c in "${crates[@]}"; do package_args+=(-p "$c"); done
# --allow-dirty: the check is of the working tree, committed or not.
CARGO_TARGET_DIR="$target" run cargo package --allow-dirty --quiet "${package_args[@]}"
for c in "${crates[@]}"; do
  [ -s "$target/package/$c-$version.crate" ] || fail "cargo package wrote no $target/package/$c-$version.crate"
done
listing=$(tar -tzf "$target/package/sluice-guest-$version.crate")
for f in guest-sdk/wit/*.wit; do
  grep -qx "sluice-guest-$version/wit/${f##*/}" <<<"$listing" ||
    fail "the sluice-guest package lacks wit/${f##*/}"
done

# 3. Extract the packages and render the template against them.
mkdir "$tmp/crates"
for c in "${crates[@]}"; do
  tar -xzf "$target/package/$c-$version.crate" -C "$tmp/crates"
done
plugin="$tmp/$name"
cp -R guest-sdk/templates/rust "$plugin"
find "$plugin" -name '*{{*' | grep -q . && fail "template file names hold placeholders this script does not render"
{ grep -rlZ '{{' "$plugin" || true; } | xargs -0 -r sed -i \
  -e "s|{{name}}|$name|g" -e "s|{{name_snake}}|${name//-/_}|g" \
  -e "s|{{sdk_path}}|$tmp/crates/sluice-guest-$version|g"
if grep -rn '{{' "$plugin"; then fail "the template holds placeholders this script does not render"; fi
cat >>"$plugin/Cargo.toml" <<EOF

# Added by scripts/check-guest-package.sh: the packaged SDK's own dependencies.
[patch.crates-io]
sluice-batch = { path = "$tmp/crates/sluice-batch-$version" }
sluice-guest-macros = { path = "$tmp/crates/sluice-guest-macros-$version" }
EOF
cp Cargo.lock "$plugin/Cargo.lock"
cd "$plugin"
export CARGO_TARGET_DIR="$target/guest-package-check"
tree=$(timeout "$step_timeout" cargo tree --quiet --edges normal --prefix none) ||
  fail "cargo tree of the rendered template"
for c in "${crates[@]}"; do
  grep -F "($tmp/crates/$c-$version)" <<<"$tree" | grep -q "^$c v$version " ||
    fail "the plugin does not build against the packaged $c:"$'\n'"$tree"
done

# 4. Native tests, then the component.
say "cargo test (native) of the template against the packaged SDK"
run cargo test --quiet
say "build.sh (cargo build --target wasm32-wasip2 --release)"
CARGO_TERM_QUIET=true run bash build.sh
[ -s "$name.wasm" ] || fail "build.sh wrote no $name.wasm"
# A component starts with "\0asm", version 0x0d, layer 1 (a core module's
# version is 1, layer 0).
header=$(od -An -tx1 -N8 "$name.wasm" | tr -d ' \n')
[ "$header" = 0061736d0d000100 ] || fail "$name.wasm is not a WebAssembly component (header $header)"
if [ -n "$sluice_bin" ]; then
  say "sluice plugin test $name.wasm --expected test/expected.jsonl"
  run "$sluice_bin" plugin test "$name.wasm" --config test/config.toml --input test/input.jsonl \
    --expected test/expected.jsonl --time-budget 30s
fi

say "ok: ${crates[*]} $version packaged; a plugin built against the packages passed its tests" \
  "and built a component ($(wc -c <"$name.wasm") bytes) in $((SECONDS - started))s"
