#!/usr/bin/env bash
# `make bench`: figures, not assertions (hack/bench.py runs and explains them).
# Builds the release binaries and the tight-client reference, uses the cluster
# in KUBECONFIG or the local plane (started, and stopped after, if none runs).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
CLUSTER=hack/cluster.sh

started_plane=
cleanup() {
	if [[ -n $started_plane ]]; then "$CLUSTER" down; fi
}
trap cleanup EXIT

# shellcheck source=release-plane.sh
source hack/release-plane.sh
cargo build --locked --release --example status_patch_rate --example create_rate --example list_rate
BIN_DIR=$BIN_DIR python3 hack/bench.py
