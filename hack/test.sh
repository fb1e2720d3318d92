#!/usr/bin/env bash
# `make test`: static checks, unit tests and integration tests against a real
# kube-apiserver, then make e2e on a real one-node cluster (hack/e2e.sh). Uses the cluster in KUBECONFIG when one is set; otherwise
# reuses a plane started by `make cluster-up`, or starts one and stops it after.
# A plane that cannot start fails the run: Kubernetes tests are never skipped.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
CLUSTER=hack/cluster.sh

step() { printf '\n==> %s\n' "$*" >&2; }

started_here=
cleanup() {
	if [[ -n $started_here ]]; then
		step "stopping the control plane this run started"
		"$CLUSTER" down
	fi
}
trap cleanup EXIT

step "static checks: rustfmt, clippy, hadolint, shellcheck"
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
"$(hack/tools.sh hadolint)" Dockerfile
"$(hack/tools.sh shellcheck)" --external-sources --source-path=SCRIPTDIR --severity=warning hack/*.sh hack/node/*.sh .ci/run

step "building the binaries and the tests"
# The integration tests start the binaries, mock-api2's (another crate) among them.
cargo build --locked --bins
cargo test --locked --no-run

# The pinned kubectl comes first, so black-box tests drive the version we pin.
"$CLUSTER" build
BIN=$("$CLUSTER" bindir)
export PATH=$BIN:$PATH KUBECTL=$BIN/kubectl

if [[ -n ${KUBECONFIG:-} ]]; then
	step "using the cluster in KUBECONFIG=$KUBECONFIG"
elif "$CLUSTER" status; then
	step "using the control plane started by make cluster-up"
	eval "$("$CLUSTER" env)"
else
	step "starting a local control plane"
	started_here=1
	if ! "$CLUSTER" up; then
		echo "make test: the local control plane could not start (see above); Kubernetes tests cannot run" >&2
		exit 1
	fi
	eval "$("$CLUSTER" env)"
fi

step "running unit and integration tests"
cargo test --locked
cleanup
started_here=

step "end to end: the images from the Dockerfile, deploy/demo/ on a real one-node cluster"
hack/e2e.sh
