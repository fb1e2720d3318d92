#!/usr/bin/env bash
# `make kind-demo`: the seed scenario in a kind cluster, for users with kind
# and Docker (our CI machines have neither; `make demo` runs it without them).
#   build the image -> kind load -> kubectl apply -k deploy/ -> apply the
#   example -> watch it retry -> toggle API 2 through a port-forward -> Succeeded
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CLUSTER=${KIND_CLUSTER:-kind}
IMAGE=pendingjob-operator:dev
NS=pendingjob-system
for tool in docker kind kubectl curl; do
	command -v "$tool" >/dev/null || {
		echo "kind-demo needs $tool in PATH" >&2
		exit 1
	}
done

say() { printf '\n==> %s\n' "$*"; }
forward_pid=
trap '[[ -n $forward_pid ]] && kill "$forward_pid" 2>/dev/null; true' EXIT

say "docker build -t $IMAGE ."
docker build -t "$IMAGE" .
say "kind load docker-image $IMAGE --name $CLUSTER"
kind load docker-image "$IMAGE" --name "$CLUSTER"

say "kubectl apply --server-side -k deploy/"
kubectl apply --server-side -k deploy/
kubectl -n "$NS" rollout status deployment/mock-api2 --timeout=120s
kubectl -n "$NS" rollout status deployment/pendingjob-operator --timeout=120s

say "kubectl apply -f examples/hello-in-cluster.yaml   (API 2 is failing)"
kubectl apply -f examples/hello-in-cluster.yaml
for _ in 1 2 3 4; do
	sleep 4
	kubectl get pendingjobs -n default
done

say "toggling API 2 through a port-forward"
kubectl -n "$NS" port-forward svc/mock-api2 18080:8080 >/dev/null &
forward_pid=$!
for _ in $(seq 1 50); do curl -fsS -o /dev/null localhost:18080/api2/stats 2>/dev/null && break; sleep 0.2; done
curl -fsS -X POST localhost:18080/api2/toggle
echo

kubectl wait --for=condition=Succeeded pendingjob/hello -n default --timeout=10m
kubectl get pendingjobs -n default
kubectl describe pendingjob hello -n default | sed -n '/^Events:/,$p'
