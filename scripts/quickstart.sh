#!/usr/bin/env bash
# README command 1: builds what the quickstart needs (wasm target, plugins,
# the sluice binary) and runs conf/quickstart.toml — card transactions from an
# embedded broker, decoded, scored against lookup tables (travel-score), masked, routed — writing rolled files under out/quickstart.
# It stops by itself once the demo feed is done and every file is committed.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build-plugins.sh
cargo build -p sluice
export SLUICE_OUT="${SLUICE_OUT:-$PWD/out/quickstart}"
target/debug/sluice validate conf/quickstart.toml
target/debug/sluice run conf/quickstart.toml --exit-when-idle "${SLUICE_IDLE:-3s}"
echo
echo "files written under $SLUICE_OUT:"
find "$SLUICE_OUT" -type f -not -path "*/state/*" -not -path "*/_sluice/*" | sort | head -n 40
echo "exactly-once commit records (lake): $(find "$SLUICE_OUT" -path "*/_sluice/commits/*.json" | wc -l)"
echo "running plugin versions (sluice plugin list):"
target/debug/sluice plugin list conf/quickstart.toml
