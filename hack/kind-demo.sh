#!/usr/bin/env bash
# `make kind-demo`: the seed scenario in a kind cluster, for users with kind
# and Docker (`make e2e` runs the same on a node built here, without them).
#   build both images -> kind load -> kubectl apply -k deploy/demo/ -> roll
#   the pods onto the new images -> apply the example -> watch it retry ->
#   toggle API 2 through a port-forward -> Succeeded
# Safe to run again: it rebuilds, restarts the pods and replays the job.
# KIND_CLUSTER names the cluster (default: kind); every kubectl call targets
# its context, whatever the current one is.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CLUSTER=${KIND_CLUSTER:-kind}
NS=pendingjob-system
for tool in docker kind kubectl curl; do
	command -v "$tool" >/dev/null || {
		echo "kind-demo needs $tool in PATH" >&2
		exit 1
	}
done
kind get clusters 2>/dev/null | grep -qxF "$CLUSTER" || {
	echo "no kind cluster named $CLUSTER: create one with 'kind create cluster --name $CLUSTER'" >&2
	exit 1
}
k() { kubectl --context "kind-$CLUSTER" "$@"; }

say() { printf '\n==> %s\n' "$*"; }
forward_pid=''
trap '[[ -n $forward_pid ]] && kill "$forward_pid" 2>/dev/null; true' EXIT

say "docker build: pendingjob-operator:dev and pendingjob-mock-api2:dev"
docker build --target operator -t pendingjob-operator:dev .
docker build --target mock-api2 -t pendingjob-mock-api2:dev .
say "kind load docker-image --name $CLUSTER"
kind load docker-image pendingjob-operator:dev pendingjob-mock-api2:dev --name "$CLUSTER"

say "kubectl apply --server-side -k deploy/demo/"
k apply --server-side -k deploy/demo/
# The tags do not change between builds, so running pods keep the old image
# until they are replaced; this also puts API 2 back in failure mode.
deployments=(deployment/pendingjob-operator deployment/mock-api2 deployment/pendingjob-intake)
k -n "$NS" rollout restart "${deployments[@]}"
for d in "${deployments[@]}"; do
	k -n "$NS" rollout status "$d" --timeout=180s
done

say "kubectl apply -f examples/hello-in-cluster.yaml   (API 2 is failing)"
k delete -f examples/hello-in-cluster.yaml --ignore-not-found --wait=true
k apply -f examples/hello-in-cluster.yaml
for _ in 1 2 3 4; do
	sleep 4
	k get pendingjobs -n default
done

say "toggling API 2 through a port-forward"
k -n "$NS" port-forward svc/mock-api2 18080:8080 >/dev/null &
forward_pid=$!
for _ in $(seq 1 50); do curl -fsS -o /dev/null localhost:18080/api2/stats 2>/dev/null && break; sleep 0.2; done
curl -fsS -X POST localhost:18080/api2/toggle
echo

k wait --for=condition=Succeeded pendingjob/hello -n default --timeout=10m
k get pendingjobs -n default
k describe pendingjob hello -n default | sed -n '/^Events:/,$p'
