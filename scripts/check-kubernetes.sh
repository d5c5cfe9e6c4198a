#!/usr/bin/env bash
# Checks the Kubernetes manifests in deploy/kubernetes without a cluster:
# every document is decoded strictly into the Kubernetes API types (unknown
# or duplicate fields and wrong types fail), then probe ports, volume
# mounts, selectors and the ConfigMap's sluice.toml are checked
# (deploy/kubernetes/check). Needs Go. The Go module cache lives outside the
# clone (under the default GOPATH), so repeated runs skip the download.
set -euo pipefail
cd "$(dirname "$0")/.."
(cd deploy/kubernetes/check && go run . ../sluice.yaml)
