#!/usr/bin/env bash
# `make test`: static checks, unit tests and integration tests against a real
# kube-apiserver (the pinned one, then both ends of the supported window), then make e2e on a real one-node cluster (hack/e2e.sh). Uses the cluster in KUBECONFIG when one is set; otherwise
# reuses a plane started by `make cluster-up`, or starts one and stops it after.
# A plane that cannot start fails the run: Kubernetes tests are never skipped.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=versions.env
source hack/versions.env
CLUSTER=hack/cluster.sh

step() { printf '\n==> %s\n' "$*" >&2; }

started_here=
# A cluster of the user's own: the version window's planes are not started.
users_kubeconfig=${KUBECONFIG:-}
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

step "the pinned helm and helm-docs, which the chart's tests run, and Jaeger, which the tracing tests export to"
hack/tools.sh helm >/dev/null
hack/tools.sh helm-docs >/dev/null
# Built here, not by the first test that needs it: cold, it takes about 8
# minutes of both cores, which would starve the tests running beside it.
hack/tools.sh jaeger >/dev/null

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
PENDINGJOB_TEST_STREAMING_LISTS=served cargo test --locked
cleanup
started_here=

# The supported window's ends (hack/versions.env), each on a plane of its own
# with its own kubectl, run the whole integration suite too; the oldest with
# the WatchList gate off, as some clusters run it, so that
# --initial-list=stream must fall back.
window_plane() {
	local version=$1 gates=$2 expect=$3
	shift 3
	step "Kubernetes $version: integration tests ${*:-(all)}"
	local dir=$ROOT/.cluster-$version status=0
	K8S_VERSION=$version CLUSTER_DIR=$dir hack/cluster.sh down >/dev/null 2>&1 || true
	if ! K8S_VERSION=$version CLUSTER_DIR=$dir CLUSTER_FEATURE_GATES=$gates hack/cluster.sh up; then
		echo "make test: the Kubernetes $version control plane could not start (see above)" >&2
		return 1
	fi
	(
		export KUBECONFIG=$dir/kubeconfig
		KUBECTL=$(K8S_VERSION=$version hack/cluster.sh bindir)/kubectl
		export KUBECTL PATH=${KUBECTL%/kubectl}:$PATH PENDINGJOB_TEST_STREAMING_LISTS=$expect
		cargo test --locked --test it -- "$@"
	) || status=$?
	K8S_VERSION=$version CLUSTER_DIR=$dir hack/cluster.sh down
	return "$status"
}
if [[ -z $users_kubeconfig ]]; then
	window_plane "$KUBE_NEWEST" "" served
	window_plane "$KUBE_OLDEST" WatchList=false refused
else
	step "KUBECONFIG is set: the version window's planes are not started (run make test without it to test them)"
fi

step "end to end: the images from the Dockerfile, deploy/demo/ on a real one-node cluster"
hack/e2e.sh
