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

# The tracing section's reference: the operator as it was before tracing
# existed (BENCH_TRACING_BASE, a commit), built once into the cache from `git
# archive`, with the same target directory (its dependencies are shared);
# built first, since it leaves its binary where ours goes.
if [[ ,${BENCH_ONLY:-tracing}, == *,tracing,* ]]; then
	base_rev=$(git rev-parse --short "${BENCH_TRACING_BASE:-1b8ea30}")
	cache=${PENDINGJOB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pendingjob-operator}/bench-base-$base_rev
	if [[ ! -x $cache/pendingjob-operator ]]; then
		echo "[bench] building the operator at $base_rev (before tracing) into $cache" >&2
		rm -rf "$cache.src"
		mkdir -p "$cache.src"
		git archive "$base_rev" | tar -x -C "$cache.src"
		(cd "$cache.src" && cargo build --locked --release --bin pendingjob-operator)
		cp "${CARGO_TARGET_DIR:-$cache.src/target}/release/pendingjob-operator" "$cache.bin"
		rm -rf "$cache.src"
		mkdir -p "$cache"
		mv "$cache.bin" "$cache/pendingjob-operator"
	fi
	export BENCH_BASE_BIN=$cache/pendingjob-operator
fi
# shellcheck source=release-plane.sh
source hack/release-plane.sh
cargo build --locked --release --example status_patch_rate --example create_rate --example list_rate
BIN_DIR=$BIN_DIR python3 hack/bench.py
