#!/usr/bin/env bash
# `make chaos`: the delivery promise under faults, as figures (never part of
# `make test`). On the local control plane, with release builds:
#   1. SIGKILL: CHAOS_JOBS (2000) jobs against an API 2 that flaps (healthy,
#      then failing, every CHAOS_FLAP_MS); the operator is SIGKILLed
#      CHAOS_KILLS (5) times at random moments and restarted each time.
#   2. API server outage: CHAOS_OUTAGE_JOBS (50) jobs retrying every second
#      while kube-apiserver is frozen (SIGSTOP) for CHAOS_OUTAGE_SECONDS (30).
# Each phase then waits for every job to succeed and reports: jobs lost (must
# be 0), calls, recorded attempts, and repeated calls (calls beyond the
# attempts recorded, which only a kill or an outage may cause).
# Bounded in count and time; everything binds 127.0.0.1 and is stopped by PID.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
CLUSTER=hack/cluster.sh
JOBS=${CHAOS_JOBS:-2000}
KILLS=${CHAOS_KILLS:-5}
FLAP_MS=${CHAOS_FLAP_MS:-2000}
OUTAGE_JOBS=${CHAOS_OUTAGE_JOBS:-50}
OUTAGE_SECONDS=${CHAOS_OUTAGE_SECONDS:-30}
DEADLINE=${CHAOS_DEADLINE_SECONDS:-900}
RUN=chaos-$$
WORK=$(mktemp -d)

started_plane='' api2_pid='' operator_pid='' frozen_pid=''
cleanup() {
	[[ -n $frozen_pid ]] && kill -CONT "$frozen_pid" 2>/dev/null
	for pid in $operator_pid $api2_pid; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true; done
	[[ -n $started_plane ]] && "$CLUSTER" down
	rm -rf "$WORK"
}
trap cleanup EXIT

# shellcheck source=release-plane.sh
source hack/release-plane.sh

# start_api2 ARGS...: a fresh API 2; sets API2 to its base URL.
start_api2() {
	[[ -n $api2_pid ]] && { kill "$api2_pid" && wait "$api2_pid" 2>/dev/null || true; }
	"$BIN_DIR/mock-api2" --listen 127.0.0.1:0 "$@" >"$WORK/api2.out" 2>/dev/null &
	api2_pid=$!
	until grep -q listening "$WORK/api2.out" 2>/dev/null; do sleep 0.05; done
	API2=$(grep -o 'http://[0-9.:]*' "$WORK/api2.out")
}

# start_operator NAMESPACE IDENTITY: one replica, with leader election as in
# production (a short Lease, so that a restarted process leads again within
# seconds); returns once it leads.
start_operator() {
	"$BIN_DIR/pendingjob-operator" run --namespace "$1" --admin-listen 127.0.0.1:0 --identity "$2" \
		--lease-name chaos --lease-duration-seconds 4 --lease-renew-deadline-seconds 2 \
		--lease-retry-period-seconds 1 >>"$WORK/operator-$1.log" 2>&1 &
	operator_pid=$!
	local deadline=$((SECONDS + 60))
	until [[ $(kubectl get lease chaos -n "$1" -o jsonpath='{.spec.holderIdentity}' 2>/dev/null) == "$2" ]]; do
		((SECONDS < deadline)) || {
			echo "operator $2 did not lead within 60 s" >&2
			exit 1
		}
		sleep 0.2
	done
}

stop_operator() {
	kill "$operator_pid" 2>/dev/null && wait "$operator_pid" 2>/dev/null || true
	operator_pid=
}

# jobs NAMESPACE COUNT POLICY: COUNT job manifests calling API 2.
jobs() {
	for i in $(seq 1 "$2"); do
		printf 'apiVersion: pendingjob.dev/v1alpha1\nkind: PendingJob\nmetadata:\n  name: job-%s\n  namespace: %s\nspec:\n  target:\n    url: %s/api2/simulate\n  payload:\n    n: %s\n  retryPolicy: %s\n---\n' \
			"$i" "$1" "$API2" "$i" "$3"
	done
}

phases() { kubectl get pendingjobs -n "$1" -o jsonpath='{range .items[*]}{.status.phase}{"\n"}{end}'; }

# wait_all NAMESPACE COUNT: until COUNT jobs are Succeeded, or the deadline.
wait_all() {
	local deadline=$((SECONDS + DEADLINE))
	until [[ $(phases "$1" | grep -c Succeeded) -ge $2 ]]; do
		((SECONDS < deadline)) || {
			echo "  not every job Succeeded within ${DEADLINE}s" >&2
			return 0
		}
		sleep 2
	done
}

# report NAMESPACE COUNT FAULTS WHAT: the figures of one phase.
report() {
	kubectl get pendingjobs -n "$1" -o json >"$WORK/jobs.json"
	curl -fsS "$API2/api2/stats" >"$WORK/stats.json"
	python3 - "$WORK/jobs.json" "$WORK/stats.json" "$2" "$3" "$4" <<-'EOF'
		import json, sys
		jobs = json.load(open(sys.argv[1]))["items"]
		calls = json.load(open(sys.argv[2]))["perKey"]
		expected, faults, what = int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
		succeeded = [j for j in jobs if j.get("status", {}).get("phase") == "Succeeded"]
		attempts = {j["metadata"]["uid"]: j.get("status", {}).get("attempts", 0) for j in jobs}
		repeated = sum(max(0, calls.get(uid, 0) - n) for uid, n in attempts.items())
		uncalled = sum(1 for uid, n in attempts.items() if calls.get(uid, 0) < n)
		total_calls = sum(calls.get(uid, 0) for uid in attempts)
		print(f"  jobs: {expected} created, {len(jobs)} exist, {len(succeeded)} Succeeded; lost: {expected - len(succeeded)}")
		print(f"  calls: {total_calls}; attempts recorded: {sum(attempts.values())}; "
		      f"attempts recorded without a call: {uncalled}")
		print(f"  repeated calls: {repeated}, {repeated / max(1, faults):.1f} per {what}")
	EOF
}

echo "phase 1: $JOBS jobs, API 2 flapping every ${FLAP_MS} ms, $KILLS SIGKILLs of the operator"
NS1=$RUN-kill
kubectl create namespace "$NS1" >/dev/null
start_api2 --flap-ms "$FLAP_MS" --latency-ms 50
start_operator "$NS1" chaos-0
# Equal jitter, so that retries do not stay in step with the flapping.
jobs "$NS1" "$JOBS" '{initialDelaySeconds: 1, maxDelaySeconds: 4, jitter: Equal}' >"$WORK/kill.yaml"
started=$SECONDS
kubectl create -f "$WORK/kill.yaml" >/dev/null &
creating=$!
# Each kill lands at a random moment (0.5 to 3 s) after the operator leads.
for k in $(seq 1 "$KILLS"); do
	sleep "$((RANDOM % 6 / 2)).$((RANDOM % 2 * 5))"
	sleep 0.5
	kill -KILL "$operator_pid"
	wait "$operator_pid" 2>/dev/null || true
	echo "  SIGKILL $k at +$((SECONDS - started)) s; $(phases "$NS1" | grep -c Succeeded) of $(phases "$NS1" | wc -l) Succeeded so far"
	start_operator "$NS1" "chaos-$k"
done
wait "$creating"
wait_all "$NS1" "$JOBS"
echo "  all done after $((SECONDS - started)) s"
report "$NS1" "$JOBS" "$KILLS" kill
stop_operator

if [[ $KUBECONFIG != "$ROOT/.cluster/kubeconfig" || ! -f .cluster/kube-apiserver.pid ]]; then
	echo "phase 2 skipped: it freezes the local plane's kube-apiserver, and KUBECONFIG names another cluster"
	exit 0
fi
echo "phase 2: $OUTAGE_JOBS jobs retrying every second; kube-apiserver frozen for ${OUTAGE_SECONDS} s"
NS2=$RUN-outage
kubectl create namespace "$NS2" >/dev/null
start_api2 --fail
start_operator "$NS2" outage
jobs "$NS2" "$OUTAGE_JOBS" '{initialDelaySeconds: 1, multiplier: 1}' | kubectl create -f - >/dev/null
until [[ $(kubectl get pendingjobs -n "$NS2" -o jsonpath='{range .items[*]}{.status.attempts}{"\n"}{end}' |
	awk '$1 >= 2' | wc -l) -ge $OUTAGE_JOBS ]]; do sleep 0.5; done
frozen_pid=$(cat .cluster/kube-apiserver.pid)
kill -STOP "$frozen_pid"
sleep "$OUTAGE_SECONDS"
kill -CONT "$frozen_pid"
frozen_pid=
curl -fsS -X POST "$API2/api2/toggle" >/dev/null
wait_all "$NS2" "$OUTAGE_JOBS"
report "$NS2" "$OUTAGE_JOBS" 1 outage
stop_operator
kubectl delete namespace "$NS1" "$NS2" --wait=false >/dev/null
