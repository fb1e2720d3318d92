# shellcheck shell=bash
# Sourced by hack/e2e.sh after the deploy/demo/ checks, with its helpers
# (step, check, pass, fail, wait_until, port_forward, mock_stat, job_field)
# and NS, HELM_NS, JOB_NS, SEED, HELM and PJ_BIN set: the chart in place of deploy/.
#   1. delete what deploy/demo/ made, except the Namespace, the CRDs and jobs
#   2. helm install into HELM_NS, the seed scenario through it, and kubectl pj
#      on the node
#   3. helm upgrade to a changed value: the operator runs with it and delivers
#   4. helm uninstall: nothing of the release is left but the CRDs and jobs

RELEASE=pendingjob-operator
CHART=charts/pendingjob-operator
CHART_VALUES=(--set image.repository=pendingjob-operator --set image.tag=dev --set demo.mockApi2.enabled=true)
# helm with its report (NOTES and all) kept out of the log; errors still show.
helm_quiet() { "$HELM" "$@" >/dev/null; }
helm_mock=

step "the Helm chart: delete deploy/demo/'s objects but the Namespace, the CRDs and the jobs"
kubectl kustomize deploy/demo/ |
	python3 -c '
import sys
docs = sys.stdin.read().split("\n---\n")
keep = ("kind: Namespace", "kind: CustomResourceDefinition")
print("\n---\n".join(d for d in docs if not any(line in d.splitlines() for line in keep)))
' | kubectl delete --cascade=foreground --wait=true --ignore-not-found -f - >/dev/null
gone() { [[ -z $(kubectl -n "$NS" get deployments,pods -o name 2>/dev/null) ]]; }
check "deploy/demo/'s deployments and pods are gone" wait_until 120 gone
# From here on, the helpers work in the release's namespace.
NS=$HELM_NS
kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl label namespace "$NS" pod-security.kubernetes.io/enforce=restricted --overwrite >/dev/null

step "helm install $RELEASE $CHART -n $NS"
check "helm install --wait" helm_quiet install "$RELEASE" "$CHART" -n "$NS" "${CHART_VALUES[@]}" --wait --timeout 180s
check "2 operator, 2 intake and 1 mock pod Ready, 0 restarts" wait_until 60 pods_ready_without_restarts

step "the seed scenario through the chart's install"
port_forward helm_mock service/mock-api2 8080
in_release_ns() { sed -e "s/name: hello\$/name: $1/" -e "s/\.pendingjob-system\.svc/.$NS.svc/" "$SEED"; }
in_release_ns hello-helm | kubectl apply -f - >/dev/null
helm_attempts_at_least() { (($(job_field hello-helm .status.attempts || echo 0) >= $1)); }
check "the job retries while API 2 fails (2 attempts)" wait_until 60 helm_attempts_at_least 2
# kubectl finds the plugin on PATH, and it reads the job as the operator left it.
why=$(PATH=$PJ_BIN:$PATH kubectl pj -n "$JOB_NS" why hello-helm 2>&1) || true
printf '%s\n' "$why" | sed 's/^/    /' >&2
why_says_backoff() { grep -q '^Waits for:    backoff until ' <<<"$why" && grep -q 'HTTP 503' <<<"$why"; }
check "kubectl pj why names the backoff and the last 503" why_says_backoff
curl -fsS -X POST "http://127.0.0.1:$helm_mock/api2/toggle" >/dev/null
check "after the toggle, the job succeeds" \
	kubectl -n "$JOB_NS" wait --for=condition=Succeeded pendingjob/hello-helm --timeout=60s
helm_uid=$(job_field hello-helm .metadata.uid)
helm_calls=$(mock_stat "$helm_mock" "s['perKey'].get('$helm_uid', 0)")
helm_attempts=$(job_field hello-helm .status.attempts)
check "one call per recorded attempt ($helm_calls calls, $helm_attempts attempts)" test "$helm_calls" = "$helm_attempts"

step "helm upgrade --set operator.maxConcurrentDispatches=8"
check "helm upgrade --wait" helm_quiet upgrade "$RELEASE" "$CHART" -n "$NS" --reuse-values \
	--set operator.maxConcurrentDispatches=8 --wait --timeout 180s
upgraded() {
	kubectl -n "$NS" get deployment pendingjob-operator -o jsonpath='{.spec.template.spec.containers[0].args}' |
		grep -q -- '--max-concurrent-dispatches=8' &&
		kubectl -n "$NS" rollout status deployment/pendingjob-operator --timeout=5s
}
check "the operator runs with --max-concurrent-dispatches=8" wait_until 120 upgraded
in_release_ns hello-upgraded | kubectl apply -f - >/dev/null
check "a new job is delivered after the upgrade" \
	kubectl -n "$JOB_NS" wait --for=condition=Succeeded pendingjob/hello-upgraded --timeout=90s
for pid in "${forwards[@]}"; do kill "$pid" 2>/dev/null || true; done
forwards=()

step "helm uninstall --wait"
check "helm uninstall" helm_quiet uninstall "$RELEASE" -n "$NS" --wait --timeout 120s
release_left() {
	# Every kind the chart renders, namespaced and cluster-wide, but the CRDs;
	# and the leader Lease, which its owner (the operator's ServiceAccount) takes along.
	kubectl -n "$NS" get deployments,services,serviceaccounts,roles,rolebindings,networkpolicies \
		-l app.kubernetes.io/instance="$RELEASE" -o name
	kubectl -n "$NS" get leases -o name
	kubectl get clusterroles,clusterrolebindings,validatingadmissionpolicies,validatingadmissionpolicybindings -o name |
		grep pendingjob || true
}
nothing_left() {
	local left
	left=$(release_left)
	[[ -z $left ]] || {
		echo "    left: $left" >&2
		return 1
	}
}
check "nothing of the release is left but the CRDs, not even the leader Lease" wait_until 60 nothing_left
crds_and_jobs_kept() {
	kubectl get crd pendingjobs.pendingjob.dev destinations.pendingjob.dev >/dev/null &&
		kubectl -n "$JOB_NS" get pendingjob hello-helm hello-upgraded >/dev/null
}
check "the CRDs and the jobs are kept, as documented" crds_and_jobs_kept
kubectl -n "$JOB_NS" delete pendingjob hello-helm hello-upgraded --wait=true >/dev/null
kubectl delete namespace "$NS" --wait=true >/dev/null
NS=pendingjob-system
