#!/usr/bin/env bash
# `make e2e`: the operator as users run it, on a real one-node cluster.
#   1. build the images from the project's Dockerfile (hack/image.sh)
#   2. start the node (hack/node.sh; reused when one is up) and load the images
#   3. kubectl apply --server-side -k deploy/demo/, and wait for the rollouts
#   4. the seed scenario in-cluster: a job calls the mock by its Service's DNS
#      name, retries while it fails, and succeeds after a toggle through a
#      port-forward; the Events, the metrics and the Lease handover
#   5. the Helm chart in place of deploy/: install, the seed scenario and
#      kubectl pj, upgrade to a changed value, uninstall (hack/e2e-helm.sh)
#   6. take the node down if this run started it (one that was up is kept),
#      checking that nothing is left; print "N passed, N failed"; exit 1 if
#      any check failed
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
LOG_TAG=e2e
# shellcheck source=versions.env
source hack/versions.env
# shellcheck source=lib.sh
source hack/lib.sh

NS=pendingjob-system
# The chart's release namespace (hack/e2e-helm.sh): another than deploy/'s,
# so that its Services get new DNS names that no cache still maps elsewhere.
HELM_NS=pendingjob-helm
JOB_NS=default
SEED=examples/hello-in-cluster.yaml
passed=0 failed=0 started_node='' forwards=() mock='' metrics_port=''

step() { printf '\n==> %s\n' "$*" >&2; }
pass() {
	passed=$((passed + 1))
	printf '  PASS  %s\n' "$*" >&2
}
fail() {
	failed=$((failed + 1))
	printf '  FAIL  %s\n' "$*" >&2
}
# check DESCRIPTION COMMAND...: one counted check.
check() {
	local what=$1
	shift
	if "$@"; then pass "$what"; else fail "$what"; fi
}
now_ms() { date +%s%3N; }

cleanup() {
	local pid
	for pid in "${forwards[@]}"; do kill "$pid" 2>/dev/null || true; done
	if ((failed > 0)) && [[ -n ${KUBECONFIG:-} ]]; then
		step "diagnostics"
		kubectl get pods -A -o wide >&2 || true
		kubectl -n "$NS" logs deployment/pendingjob-operator --tail=30 >&2 || true
	fi
	if [[ -n $started_node ]]; then
		step "taking down the node this run started"
		hack/node.sh down || true
	fi
}
trap cleanup EXIT

# port_forward VAR TARGET PORT: forwards a free host port to PORT of TARGET
# in $NS, and sets VAR to it once it answers.
port_forward() {
	local var=$1 target=$2 port=$3 local_port
	local_port=$(free_port)
	kubectl -n "$NS" port-forward "$target" "$local_port:$port" </dev/null >/dev/null 2>&1 &
	forwards+=($!)
	wait_until 30 curl -s -o /dev/null "http://127.0.0.1:$local_port/" ||
		die "kubectl port-forward $target $local_port:$port did not answer within 30s"
	printf -v "$var" %s "$local_port"
}

# wait_until SECONDS COMMAND...: polls COMMAND every 0.2 s until it succeeds.
wait_until() {
	local deadline=$((SECONDS + $1))
	shift
	until "$@" >/dev/null 2>&1; do
		((SECONDS < deadline)) || return 1
		sleep 0.2
	done
}

job_field() { kubectl -n "$JOB_NS" get pendingjob "$1" -o jsonpath="{$2}"; }
attempts_at_least() { (($(job_field hello .status.attempts || echo 0) >= $1)); }
lease_holder() { kubectl -n "$NS" get lease pendingjob-operator -o jsonpath='{.spec.holderIdentity}'; }
holder_is_not() {
	local holder
	holder=$(lease_holder)
	[[ -n $holder && $holder != "$1" ]]
}

# mock_stat PORT PYTHON_EXPR: evaluates EXPR over /api2/stats (as `s`).
mock_stat() {
	curl -fsS "http://127.0.0.1:$1/api2/stats" |
		python3 -c "import json, sys; s = json.load(sys.stdin); print($2)"
}

step "building the images from the Dockerfile, kubectl-pj and the pinned helm"
images=$(hack/image.sh build)
cargo build --locked --bin kubectl-pj
PJ_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/debug
HELM=$(hack/tools.sh helm)

step "the node"
if ! hack/node.sh status; then
	started_node=1
	hack/node.sh up
fi
eval "$(hack/node.sh env)"
hack/node.sh load "$images/operator.tar" "$images/mock-api2.tar"

step "kubectl apply --server-side -k deploy/demo/"
# A kept node may still hold the chart's release from an earlier run.
"$HELM" uninstall pendingjob-operator -n "$HELM_NS" --ignore-not-found --wait >/dev/null
deployments=(pendingjob-operator mock-api2 pendingjob-intake)
deployed_before=$(kubectl -n "$NS" get deployments -o name 2>/dev/null | wc -l)
kubectl apply --server-side -k deploy/demo/ >/dev/null
# A rebuilt image under the same tag reaches running pods only by a restart.
if ((deployed_before > 0)); then
	kubectl -n "$NS" rollout restart "${deployments[@]/#/deployment/}" >/dev/null
fi
# Jobs of an earlier run on a kept node.
kubectl -n "$JOB_NS" delete pendingjob hello hello-after-handover hello-helm hello-upgraded \
	--ignore-not-found --wait=true >/dev/null
rollouts_done() {
	local d
	for d in "${deployments[@]}"; do
		kubectl -n "$NS" rollout status "deployment/$d" --timeout=120s >&2 || return 1
	done
}
check "the rollouts finish" rollouts_done

step "the pods"
pods_ready_without_restarts() {
	local out
	out=$(kubectl -n "$NS" get pods --field-selector=status.phase=Running -o \
		jsonpath='{range .items[*]}{.metadata.name} {.status.containerStatuses[0].ready} {.status.containerStatuses[0].restartCount}{"\n"}{end}')
	echo "$out" | sed 's/^/    /' >&2
	[[ $(echo "$out" | grep -c ' true 0$') == 5 && $(echo "$out" | grep -vc ' true 0$') == 0 ]]
}
check "2 operator, 2 intake and 1 mock pod Ready, 0 restarts" wait_until 60 pods_ready_without_restarts

# The operator's running container, as the runtime sees it and as its own
# process does: the uid in /proc/PID/status, and how / is mounted.
operator_container_is_locked_down() {
	local pod id pid uid root_options
	pod=$(kubectl -n "$NS" get pods -l app.kubernetes.io/name=pendingjob-operator -o jsonpath='{.items[0].metadata.name}')
	id=$(kubectl -n "$NS" get pod "$pod" -o jsonpath='{.status.containerStatuses[0].containerID}')
	id=${id#containerd://}
	pid=$(hack/node.sh exec ctr --address "$ROOT/.node/run/containerd.sock" -n k8s.io tasks ls |
		awk -v id="$id" '$1 == id { print $2 }')
	uid=$(awk '/^Uid:/ { print $2 "/" $3 }' "/proc/$pid/status")
	root_options=$(awk '$5 == "/" { print $6 }' "/proc/$pid/mountinfo")
	echo "    $pod: pid $pid, uid (real/effective) $uid, / mounted $root_options" >&2
	[[ $uid == 65532/65532 && $root_options == ro,* ]]
}
check "the operator runs as uid 65532 on a read-only root" operator_container_is_locked_down

step "the seed scenario: $SEED, API 2 failing, reached by its Service's DNS name"
port_forward mock service/mock-api2 8080
applied_ms=$(now_ms)
kubectl apply -f "$SEED" >/dev/null
check "the job retries while API 2 fails (2 attempts)" wait_until 60 attempts_at_least 2
uid=$(job_field hello .metadata.uid)
first_call_ms=$(mock_stat "$mock" "min(r['atMs'] for r in s['requests'] if r['key'] == '$uid')")
echo "    first call $((first_call_ms - applied_ms)) ms after kubectl apply" >&2
check "the failures are recorded (last code 503)" test "$(job_field hello .status.lastStatusCode)" = 503
curl -fsS -X POST "http://127.0.0.1:$mock/api2/toggle" >/dev/null
check "after the toggle through the port-forward, the job succeeds" \
	kubectl -n "$JOB_NS" wait --for=condition=Succeeded pendingjob/hello --timeout=60s
attempts=$(job_field hello .status.attempts)
calls=$(mock_stat "$mock" "s['perKey'].get('$uid', 0)")
check "one call per recorded attempt ($calls calls, $attempts attempts)" test "$calls" = "$attempts"
describe=$(kubectl -n "$JOB_NS" describe pendingjob hello)
describe_shows_events() { grep -q 'AttemptFailed' <<<"$describe" && grep -q 'Delivered' <<<"$describe"; }
check "kubectl describe shows the Events (AttemptFailed, Delivered)" describe_shows_events

step "the leader's /metrics, through a port-forward"
leader=$(lease_holder)
port_forward metrics_port "pod/$leader" 9090
metrics=$(curl -fsS "http://127.0.0.1:$metrics_port/metrics")
metric() { awk -v m="$1" '$1 == m { print $2 }' <<<"$metrics"; }
check "pendingjob_attempts_total counts $((attempts - 1)) retryable and 1 delivered" \
	test "$(metric 'pendingjob_attempts_total{outcome="retryable"}')" = "$((attempts - 1))" -a \
	"$(metric 'pendingjob_attempts_total{outcome="delivered"}')" = 1
check "pendingjob_leader is 1 on $leader" test "$(metric pendingjob_leader)" = 1

step "leader handover: delete the leader pod $leader"
lease_seconds=$(kubectl -n "$NS" get lease pendingjob-operator -o jsonpath='{.spec.leaseDurationSeconds}')
deleted_ms=$(now_ms)
kubectl -n "$NS" delete pod "$leader" --wait=false >/dev/null
if wait_until $((lease_seconds + 5)) holder_is_not "$leader"; then
	pass "another replica holds the Lease after $(($(now_ms) - deleted_ms)) ms (bound: lease ${lease_seconds} s + 5 s)"
else
	fail "another replica holds the Lease within ${lease_seconds} s + 5 s (holder: $(lease_holder))"
fi
sed 's/name: hello$/name: hello-after-handover/' "$SEED" | kubectl apply -f - >/dev/null
check "a new job is delivered by the new leader $(lease_holder)" \
	kubectl -n "$JOB_NS" wait --for=condition=Succeeded pendingjob/hello-after-handover --timeout=60s

for pid in "${forwards[@]}"; do kill "$pid" 2>/dev/null || true; done
forwards=()

# shellcheck source=e2e-helm.sh
source hack/e2e-helm.sh

if [[ -n $started_node ]]; then
	step "taking down the node this run started"
	started_node=''
	check "make node-down leaves nothing running, listening, mounted or in cgroups" hack/node.sh down
fi

printf '\n%d passed, %d failed\n' "$passed" "$failed"
((failed == 0))
