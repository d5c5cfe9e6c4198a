#!/usr/bin/env bash
# README command 2: the whole test suite. Installs the plugin toolchains
# (skipping what is present), builds the Rust plugins and the examples in the
# other languages, starts Apache Kafka (the reference broker, with TLS and
# SASL listeners) and a real S3 server (moto) on loopback, runs every test of the workspace against them, and
# stops them again. Every language and service is required here: a missing
# one fails the run instead of skipping its tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/toolchains.sh all
scripts/build-plugins.sh
# The Rust guest SDK builds and works from its packaged copy alone.
scripts/check-guest-package.sh
scripts/build-examples.sh
scripts/services.sh start
trap 'scripts/services.sh stop' EXIT
# shellcheck disable=SC1091
source target/services.env
export SLUICE_REQUIRE_SERVICES=1
export SLUICE_REQUIRE_LANGS=1
# The exactly-once Kafka tests run against Apache Kafka's transactions and
# fail, rather than skip, without them.
export SLUICE_REQUIRE_TXN=1
export SLUICE_TOOLCHAINS_SCRIPTS="$PWD/scripts/toolchains"
cargo test --workspace --no-fail-fast -- --test-threads="${SLUICE_TEST_THREADS:-2}"
