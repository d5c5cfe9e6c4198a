#!/usr/bin/env bash
# README command 2: the whole test suite. Builds the plugins, starts a real
# Kafka broker (tansu) and a real S3 server (moto) on loopback, runs every
# test of the workspace against them, and stops them again.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build-plugins.sh
scripts/services.sh start
trap 'scripts/services.sh stop' EXIT
# shellcheck disable=SC1091
source target/services.env
export SLUICE_REQUIRE_SERVICES=1
cargo test --workspace --no-fail-fast -- --test-threads="${SLUICE_TEST_THREADS:-2}"
