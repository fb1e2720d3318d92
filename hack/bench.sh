#!/usr/bin/env bash
# `make bench`: figures, not assertions. On the local control plane:
#   1. latency: apply one job at a time (BENCH_SINGLE, default 20) against a
#      healthy API 2 and measure kubectl-apply-start -> first call at API 2;
#   2. throughput: apply BENCH_JOBS (default 200) jobs at once and measure the
#      time until API 2 has received every one of them, and until all are
#      Succeeded in status.
# Bounded in count and time; everything binds 127.0.0.1 and is stopped by PID.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
CLUSTER=hack/cluster.sh
SINGLE=${BENCH_SINGLE:-20}
JOBS=${BENCH_JOBS:-200}
NAMESPACE=pendingjob-bench-$$
WORK=$(mktemp -d)

started_plane= api2_pid= operator_pid=
cleanup() {
	for pid in $operator_pid $api2_pid; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true; done
	[[ -n $started_plane ]] && "$CLUSTER" down
	rm -rf "$WORK"
}
trap cleanup EXIT

# shellcheck source=release-plane.sh
source hack/release-plane.sh
kubectl create namespace "$NAMESPACE" >/dev/null

"$BIN_DIR/mock-api2" --listen 127.0.0.1:0 >"$WORK/api2.out" 2>/dev/null &
api2_pid=$!
until grep -q listening "$WORK/api2.out" 2>/dev/null; do sleep 0.05; done
API2=$(grep -o 'http://[0-9.:]*' "$WORK/api2.out")
"$BIN_DIR/pendingjob-operator" run --namespace "$NAMESPACE" --admin-listen 127.0.0.1:0 \
	--leader-election=false >"$WORK/operator.log" 2>&1 &
operator_pid=$!

job() {
	printf 'apiVersion: pendingjob.dev/v1alpha1\nkind: PendingJob\nmetadata:\n  name: %s\nspec:\n  target:\n    url: %s/api2/simulate\n  payload:\n    n: %s\n---\n' "$1" "$API2" "$1"
}
now_ms() { date +%s%3N; }
stats() { curl -fsS "$API2/api2/stats"; }

# Warm-up: the operator is watching once it has delivered one job.
job warm-up | kubectl apply -n "$NAMESPACE" -f - >/dev/null
kubectl wait -n "$NAMESPACE" --for=condition=Succeeded pendingjob/warm-up --timeout=60s >/dev/null

echo "latency: $SINGLE jobs, one at a time"
: >"$WORK/latency"
for i in $(seq 1 "$SINGLE"); do
	before=$(now_ms)
	job "single-$i" | kubectl apply -n "$NAMESPACE" -f - >/dev/null
	kubectl wait -n "$NAMESPACE" --for=condition=Succeeded "pendingjob/single-$i" --timeout=60s >/dev/null
	uid=$(kubectl get -n "$NAMESPACE" pendingjob "single-$i" -o jsonpath='{.metadata.uid}')
	stats | python3 -c "import json,sys; d=json.load(sys.stdin); print(min(r['atMs'] for r in d['requests'] if r['key']=='$uid') - $before)" >>"$WORK/latency"
done
python3 - "$WORK/latency" <<'EOF'
import statistics, sys
ms = sorted(int(l) for l in open(sys.argv[1]))
print(f"  apply -> first call: median {statistics.median(ms):.0f} ms, min {ms[0]} ms, max {ms[-1]} ms (n={len(ms)})")
EOF

echo "throughput: $JOBS jobs applied at once"
for i in $(seq 1 "$JOBS"); do job "bulk-$i"; done >"$WORK/bulk.yaml"
before=$(now_ms)
kubectl apply -n "$NAMESPACE" -f "$WORK/bulk.yaml" >/dev/null
applied=$(now_ms)
expected=$((JOBS + SINGLE + 1))
deadline=$((SECONDS + 120))
until [[ $(stats | python3 -c 'import json,sys; print(json.load(sys.stdin)["uniqueKeys"])') -ge $expected ]]; do
	((SECONDS < deadline)) || { echo "not all jobs called within 120 s" >&2; exit 1; }
	sleep 0.1
done
called=$(now_ms)
until [[ $(kubectl get pendingjobs -n "$NAMESPACE" -o jsonpath='{range .items[*]}{.status.phase}{"\n"}{end}' | grep -c Succeeded) -ge $expected ]]; do
	((SECONDS < deadline)) || { echo "not all jobs Succeeded within 120 s" >&2; exit 1; }
	sleep 0.2
done
done_ms=$(now_ms)
total=$(stats | python3 -c 'import json,sys; print(json.load(sys.stdin)["totalRequests"])')
echo "  kubectl apply of $JOBS jobs: $((applied - before)) ms"
echo "  apply start -> every job called once: $((called - before)) ms ($(python3 -c "print(round($JOBS * 1000 / max(1, $called - $before)))") jobs/s)"
echo "  apply start -> every job Succeeded in status: $((done_ms - before)) ms"
echo "  calls made: $total for $expected jobs (one per job: $([[ $total -eq $expected ]] && echo yes || echo NO))"
kubectl delete namespace "$NAMESPACE" --wait=false >/dev/null
