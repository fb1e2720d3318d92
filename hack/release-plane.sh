# Sourced by the scripts that measure (bench, chaos): builds the release
# binaries, puts the pinned kubectl first in PATH, uses the cluster in
# KUBECONFIG or the local plane (starting one, and setting started_plane=1,
# when none runs), and installs the CRDs. Sets BIN_DIR.
# shellcheck shell=bash disable=SC2034 # sourced: BIN_DIR and started_plane are for its callers
cargo build --locked --release --bins
BIN_DIR=${CARGO_TARGET_DIR:-target}/release
"$CLUSTER" build
PATH=$("$CLUSTER" bindir):$PATH
export PATH
if [[ -z ${KUBECONFIG:-} ]]; then
	"$CLUSTER" status || {
		started_plane=1
		"$CLUSTER" up
	}
	eval "$("$CLUSTER" env)"
fi
kubectl apply --server-side --force-conflicts -f crds/ >/dev/null
