#!/usr/bin/env bash
# `make demo`: the seed article's "Testing and Use Cases", end to end, on the
# local control plane (or the cluster in KUBECONFIG):
#   1. start API 2 (mock-api2) in failure mode, and the operator;
#   2. apply the seed's { "name": "hello" } job from examples/;
#   3. watch `kubectl get pendingjobs` as the delays grow: 2 s, 4 s, 8 s;
#   4. flip API 2 back on and see the job Succeeded;
#   5. the seed's own flow through API 1 (pendingjob-intake): curl POSTs
#      {"name":"hello"}, the job retries while API 2 is down, API 2 comes
#      back, the job succeeds, and curl GETs its status;
#   6. a target that trusts its caller: a second API 2 that checks Standard
#      Webhooks signatures and the audience of a ServiceAccount token, called
#      through a Destination that signs and mints one; an unsigned call is
#      refused (401);
#   7. clean up what the demo started.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
CLUSTER=hack/cluster.sh
NAMESPACE=${DEMO_NAMESPACE:-pendingjob-demo}
WORK=$(mktemp -d)

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

started_plane='' api2_pid='' operator_pid='' intake_pid='' trusting_pid=''
cleanup() {
	local rc=$?
	say "cleaning up"
	kubectl delete pendingjobs --all --namespace "$NAMESPACE" --ignore-not-found --wait=false >/dev/null 2>&1 || true
	for pid in $trusting_pid $intake_pid $operator_pid $api2_pid; do
		kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
	done
	[[ -n $started_plane ]] && "$CLUSTER" down
	rm -rf "$WORK"
	exit "$rc"
}
trap cleanup EXIT

say "building pendingjob-operator, pendingjob-intake and mock-api2"
cargo build --locked --bins
BIN_DIR=${CARGO_TARGET_DIR:-target}/debug

"$CLUSTER" build
PATH=$("$CLUSTER" bindir):$PATH
export PATH
if [[ -n ${KUBECONFIG:-} ]]; then
	say "using the cluster in KUBECONFIG=$KUBECONFIG"
elif "$CLUSTER" status; then
	eval "$("$CLUSTER" env)"
	say "using the running local control plane"
else
	say "starting a local control plane (kube-apiserver + etcd on 127.0.0.1)"
	started_plane=1
	"$CLUSTER" up
	eval "$("$CLUSTER" env)"
fi

say "kubectl apply -f crds/   (the PendingJob CRD and its payload-size policy)"
kubectl apply --server-side --force-conflicts -f crds/
kubectl wait --for=condition=Established crd/pendingjobs.pendingjob.dev --timeout=30s
kubectl create namespace "$NAMESPACE" --dry-run=client -o yaml | kubectl apply -f - >/dev/null

say "starting API 2 (mock-api2) in failure mode"
"$BIN_DIR/mock-api2" --listen 127.0.0.1:0 --fail >"$WORK/api2.out" 2>"$WORK/api2.log" &
api2_pid=$!
for _ in $(seq 1 100); do
	grep -q 'listening on' "$WORK/api2.out" 2>/dev/null && break
	sleep 0.1
done
API2=$(grep -o 'http://[0-9.:]*' "$WORK/api2.out" | head -n 1)
[[ -n $API2 ]] || {
	echo "mock-api2 did not start: $(cat "$WORK/api2.log")" >&2
	exit 1
}
echo "API 2 listens on $API2 and answers 503 to every call"

say "starting the operator (watching namespace $NAMESPACE)"
"$BIN_DIR/pendingjob-operator" run --namespace "$NAMESPACE" --admin-listen 127.0.0.1:0 >"$WORK/operator.log" 2>&1 &
operator_pid=$!
echo "operator pid $operator_pid; log: kept in $WORK/operator.log while the demo runs"

say "kubectl apply -f examples/hello.yaml   (target set to $API2)"
sed "s#http://127.0.0.1:8080#$API2#" examples/hello.yaml | kubectl apply --namespace "$NAMESPACE" -f -

attempts() { kubectl get pendingjob hello --namespace "$NAMESPACE" -o jsonpath='{.status.attempts}'; }

say "kubectl get pendingjobs, after each attempt: the delays grow 2 s, 4 s, 8 s"
seen=-1
deadline=$((SECONDS + 60))
while :; do
	n=$(attempts)
	if [[ $n != "$seen" ]]; then
		seen=$n
		echo "--- $(date -u +%H:%M:%S)"
		kubectl get pendingjobs --namespace "$NAMESPACE"
	fi
	((n >= 4)) && break
	((SECONDS < deadline)) || {
		echo "the job did not reach 4 attempts in 60 s; operator log:" >&2
		cat "$WORK/operator.log" >&2
		exit 1
	}
	sleep 0.2
done
kubectl get pendingjob hello --namespace "$NAMESPACE" \
	-o jsonpath='last error: {.status.lastError}{"\n"}next retry: {.status.nextRetryTime}{"\n"}'

say "POST $API2/api2/toggle   (API 2 is back)"
curl -fsS -X POST "$API2/api2/toggle"
echo

say "kubectl wait --for=condition=Succeeded pendingjob/hello"
kubectl wait --for=condition=Succeeded pendingjob/hello --namespace "$NAMESPACE" --timeout=60s
kubectl get pendingjobs --namespace "$NAMESPACE"

say "what API 2 saw (one idempotency key: the job's UID)"
curl -fsS "$API2/api2/stats" | head -c 300
echo

say "the seed's API 1: pendingjob-intake, with API 2 down again"
curl -fsS -X POST "$API2/api2/toggle"
echo
kubectl apply --namespace "$NAMESPACE" -f - <<YAML
apiVersion: pendingjob.dev/v1alpha1
kind: Destination
metadata: {name: api2}
spec: {url: "$API2/api2/simulate"}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: ui}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: pendingjob-writer}
rules: [{apiGroups: [pendingjob.dev], resources: [pendingjobs], verbs: [create, get]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: ui-writes-pendingjobs}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: pendingjob-writer}
subjects: [{kind: ServiceAccount, name: ui, namespace: "$NAMESPACE"}]
YAML
"$BIN_DIR/pendingjob-intake" --listen 127.0.0.1:0 --seed-namespace "$NAMESPACE" --seed-destination api2 \
	>/dev/null 2>"$WORK/intake.log" &
intake_pid=$!
INTAKE=
for _ in $(seq 1 100); do
	INTAKE=$(grep -o 'address=127.0.0.1:[0-9]*' "$WORK/intake.log" 2>/dev/null | head -n 1 | cut -d= -f2) && [[ -n $INTAKE ]] && break
	sleep 0.1
done
[[ -n $INTAKE ]] || {
	echo "pendingjob-intake did not start: $(cat "$WORK/intake.log")" >&2
	exit 1
}
TOKEN=$(kubectl create token ui --namespace "$NAMESPACE" --duration 10m --audience pendingjob-intake)

say "curl -X POST http://$INTAKE/api1/process -d '{\"name\":\"hello\"}'   (token of ServiceAccount ui)"
answer=$(curl -fsS -X POST "http://$INTAKE/api1/process" -H "Authorization: Bearer $TOKEN" \
	-H 'Content-Type: application/json' -d '{"name":"hello"}')
echo "$answer"
JOB=$(echo "$answer" | grep -o '"name":"[^"]*"' | cut -d'"' -f4)
STATUS=$(echo "$answer" | grep -o '"status":"[^"]*"' | cut -d'"' -f4)

say "kubectl get pendingjob $JOB, while API 2 is down"
deadline=$((SECONDS + 30))
until [[ $(kubectl get pendingjob "$JOB" --namespace "$NAMESPACE" -o jsonpath='{.status.attempts}') -ge 2 ]]; do
	((SECONDS < deadline)) || {
		echo "the intake's job did not retry in 30 s" >&2
		exit 1
	}
	sleep 0.2
done
kubectl get pendingjob "$JOB" --namespace "$NAMESPACE"

say "POST $API2/api2/toggle   (API 2 is back)"
curl -fsS -X POST "$API2/api2/toggle"
echo
kubectl wait --for=condition=Succeeded "pendingjob/$JOB" --namespace "$NAMESPACE" --timeout=60s

say "curl http://$INTAKE$STATUS"
curl -fsS "http://$INTAKE$STATUS" -H "Authorization: Bearer $TOKEN"
echo

say "a target that trusts its caller: signed calls and a ServiceAccount token"
KEY="whsec_$(head -c 32 /dev/urandom | base64)"
MOCK_API2_STANDARD_WEBHOOKS_SECRET=$KEY "$BIN_DIR/mock-api2" --listen 127.0.0.1:0 --jwt-audience api2.demo \
	>"$WORK/trusting.out" 2>"$WORK/trusting.log" &
trusting_pid=$!
TRUSTING=
for _ in $(seq 1 100); do
	TRUSTING=$(grep -o 'http://[0-9.:]*' "$WORK/trusting.out" 2>/dev/null | head -n 1) && [[ -n $TRUSTING ]] && break
	sleep 0.1
done
[[ -n $TRUSTING ]] || {
	echo "the second mock-api2 did not start: $(cat "$WORK/trusting.log")" >&2
	exit 1
}
echo "this API 2 ($TRUSTING) answers 401 unless a call is signed with its key and carries a token for audience api2.demo"
kubectl apply --namespace "$NAMESPACE" -f - <<YAML
apiVersion: v1
kind: Secret
metadata: {name: api2-signing}
stringData: {keys: "$KEY"}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: api2-caller}
---
apiVersion: pendingjob.dev/v1alpha1
kind: Destination
metadata: {name: trusted}
spec:
  url: "$TRUSTING"
  signing: {standardWebhooks: {secretKeyRef: {name: api2-signing, key: keys}}}
  auth: {serviceAccountToken: {serviceAccountName: api2-caller, audience: api2.demo}}
---
apiVersion: pendingjob.dev/v1alpha1
kind: Destination
metadata: {name: unsigned}
spec:
  url: "$TRUSTING"
  auth: {serviceAccountToken: {serviceAccountName: api2-caller, audience: api2.demo}}
---
apiVersion: pendingjob.dev/v1alpha1
kind: PendingJob
metadata: {name: signed-hello}
spec: {destinationRef: {name: trusted}, target: {path: /api2/simulate}, payload: {name: hello}}
---
apiVersion: pendingjob.dev/v1alpha1
kind: PendingJob
metadata: {name: unsigned-hello}
spec: {destinationRef: {name: unsigned}, target: {path: /api2/simulate}, payload: {name: hello}}
YAML
kubectl wait --for=condition=Succeeded pendingjob/signed-hello --namespace "$NAMESPACE" --timeout=60s
kubectl wait --for=jsonpath='{.status.phase}'=Failed pendingjob/unsigned-hello --namespace "$NAMESPACE" --timeout=60s
kubectl get pendingjobs signed-hello unsigned-hello --namespace "$NAMESPACE" \
	-o custom-columns='NAME:.metadata.name,PHASE:.status.phase,CODE:.status.lastStatusCode'
echo "what this API 2 saw: $(curl -fsS "$TRUSTING/api2/stats" | grep -o '"totalRequests":[0-9]*,\|"unauthorized":[0-9]*,"badSignatures":[0-9]*' | tr -d '\n')"
say "demo complete"
