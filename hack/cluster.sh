#!/usr/bin/env bash
# A local Kubernetes control plane for development, tests and the demo:
# etcd + kube-apiserver on 127.0.0.1, no nodes (the envtest pattern).
#
# The binaries are built from the official Go modules at the versions pinned in
# hack/versions.env, into a versioned cache outside the repository, and reused.
#
#   hack/cluster.sh build    build (or reuse) etcd, kube-apiserver, kubectl
#   hack/cluster.sh up       build if needed, then start the plane (idempotent)
#   hack/cluster.sh down     stop the processes this script started, by PID; remove state
#   hack/cluster.sh status   exit 0 when a plane started here is running and ready
#   hack/cluster.sh env      print export lines for KUBECONFIG and PATH
#   hack/cluster.sh bindir   print the directory holding the pinned binaries
#
# Environment: PENDINGJOB_CACHE (cache root), CLUSTER_DIR (state, default .cluster),
# K8S_VERSION (a Kubernetes of the supported window; default the pinned KUBE_VERSION),
# CLUSTER_FEATURE_GATES (kube-apiserver --feature-gates, e.g. WatchList=false).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=versions.env
source "$ROOT/hack/versions.env"
# K8S_VERSION picks another Kubernetes of the supported window (versions.env).
if [[ -n ${K8S_VERSION:-} && $K8S_VERSION != "$KUBE_VERSION" ]]; then
	ETCD_VERSION=$(etcd_for "$K8S_VERSION") || {
		echo "[cluster] error: K8S_VERSION=$K8S_VERSION is not in hack/versions.env (supported: $KUBE_OLDEST, $KUBE_VERSION, $KUBE_NEWEST)" >&2
		exit 2
	}
	KUBE_VERSION=$K8S_VERSION
fi

LOG_TAG=cluster
# shellcheck source=lib.sh
source "$ROOT/hack/lib.sh"
K8S_DIR=$CACHE_ROOT/k8s-$KUBE_VERSION-etcd-$ETCD_VERSION
BIN=$K8S_DIR/bin
STATE=${CLUSTER_DIR:-$ROOT/.cluster}
PKI=$STATE/pki
READY_TIMEOUT=${CLUSTER_READY_TIMEOUT:-120}

have_binaries() {
	[[ -x $BIN/etcd && -x $BIN/kube-apiserver && -x $BIN/kubectl ]]
}

build() {
	if have_binaries; then
		log "reusing Kubernetes $KUBE_VERSION and etcd $ETCD_VERSION binaries in $BIN"
		return 0
	fi
	log "building Kubernetes $KUBE_VERSION (kube-apiserver, kubectl) and etcd $ETCD_VERSION into $BIN"
	log "a cold build downloads the modules and compiles ~2000 packages; about 5 minutes on 2 cores"
	local src=$K8S_DIR/src staging=$K8S_DIR/bin.partial
	rm -rf "$staging"
	mkdir -p "$staging"
	write_build_module "$src" go.etcd.io/etcd/server/v3 k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl
	export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
	(cd "$src" && run_with_heartbeat "resolving modules" "$K8S_DIR/tidy.log" go mod tidy)

	local ldflags
	ldflags=$(kube_ldflags)
	(cd "$src" && run_with_heartbeat "compiling etcd" "$K8S_DIR/build-etcd.log" \
		go build -v -trimpath -ldflags "-s -w" -o "$staging/etcd" go.etcd.io/etcd/server/v3)
	(cd "$src" && run_with_heartbeat "compiling kube-apiserver and kubectl" "$K8S_DIR/build-kube.log" \
		go build -v -trimpath -ldflags "$ldflags" -o "$staging/" \
		k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl)
	# Publish atomically: a half-finished build never looks like a cached one.
	rm -rf "$BIN"
	mv "$staging" "$BIN"
	log "built: $("$BIN/kubectl" version --client 2>/dev/null | head -n 1), $("$BIN/etcd" --version | head -n 1)"
}

pid_alive() {
	local f=$STATE/$1.pid
	[[ -f $f ]] && kill -0 "$(cat "$f")" 2>/dev/null
}

kubectl_admin() {
	"$BIN/kubectl" --kubeconfig "$STATE/kubeconfig" "$@"
}

is_ready() {
	pid_alive etcd && pid_alive kube-apiserver && [[ -f $STATE/kubeconfig ]] &&
		[[ $(kubectl_admin get --raw /readyz 2>/dev/null) == ok ]]
}

gen_pki() {
	mkdir -p "$PKI"
	(
		cd "$PKI"
		openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=pendingjob-local-ca" \
			-keyout ca.key -out ca.crt 2>/dev/null
		cat >serving.ext <<-EOF
			subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc
			extendedKeyUsage=serverAuth
			keyUsage=digitalSignature,keyEncipherment
		EOF
		openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" \
			-keyout apiserver.key -out apiserver.csr 2>/dev/null
		openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
			-extfile serving.ext -out apiserver.crt 2>/dev/null
		# The admin identity: group system:masters is bound to cluster-admin.
		printf 'extendedKeyUsage=clientAuth\nkeyUsage=digitalSignature,keyEncipherment\n' >client.ext
		openssl req -newkey rsa:2048 -nodes -subj "/O=system:masters/CN=pendingjob-admin" \
			-keyout admin.key -out admin.csr 2>/dev/null
		openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
			-extfile client.ext -out admin.crt 2>/dev/null
		# Service-account token signing keys, so TokenRequest (`kubectl create token`) works.
		openssl genrsa -out sa.key 2048 2>/dev/null
		openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
		rm -f ./*.csr ./*.ext ./*.srl
		chmod 600 ./*.key
	)
}

write_kubeconfig() {
	local port=$1
	"$BIN/kubectl" config --kubeconfig "$STATE/kubeconfig" set-cluster local \
		--server "https://127.0.0.1:$port" --certificate-authority "$PKI/ca.crt" --embed-certs >/dev/null
	"$BIN/kubectl" config --kubeconfig "$STATE/kubeconfig" set-credentials admin \
		--client-certificate "$PKI/admin.crt" --client-key "$PKI/admin.key" --embed-certs >/dev/null
	"$BIN/kubectl" config --kubeconfig "$STATE/kubeconfig" set-context local \
		--cluster local --user admin --namespace default >/dev/null
	"$BIN/kubectl" config --kubeconfig "$STATE/kubeconfig" use-context local >/dev/null
	chmod 600 "$STATE/kubeconfig"
}

start_bg() {
	local name=$1
	shift
	"$@" >"$STATE/$name.log" 2>&1 &
	echo $! >"$STATE/$name.pid"
}

# Starts etcd and kube-apiserver on fresh ports and waits until they are ready.
# Returns 1 (after stopping both) when a port was taken before it could be bound.
start_once() {
	local etcd_port etcd_peer_port api_port
	etcd_port=$(free_port) etcd_peer_port=$(free_port) api_port=$(free_port)
	start_bg etcd "$BIN/etcd" \
		--name pendingjob-local \
		--data-dir "$STATE/etcd-data" \
		--listen-client-urls "http://127.0.0.1:$etcd_port" \
		--advertise-client-urls "http://127.0.0.1:$etcd_port" \
		--listen-peer-urls "http://127.0.0.1:$etcd_peer_port" \
		--initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer_port" \
		--initial-cluster "pendingjob-local=http://127.0.0.1:$etcd_peer_port" \
		--unsafe-no-fsync \
		--log-level warn
	# Kubernetes 1.37 refuses a loopback advertise address for the endpoint
	# reconciler; a plane without nodes needs no kubernetes Service endpoints.
	local extra=()
	local minor=${KUBE_VERSION#v1.}
	minor=${minor%%.*}
	((minor < 37)) || extra+=(--endpoint-reconciler-type=none)
	[[ -z ${CLUSTER_FEATURE_GATES:-} ]] || extra+=(--feature-gates="$CLUSTER_FEATURE_GATES")
	start_bg kube-apiserver "$BIN/kube-apiserver" \
		"${extra[@]}" \
		--etcd-servers "http://127.0.0.1:$etcd_port" \
		--bind-address 127.0.0.1 \
		--advertise-address 127.0.0.1 \
		--secure-port "$api_port" \
		--tls-cert-file "$PKI/apiserver.crt" \
		--tls-private-key-file "$PKI/apiserver.key" \
		--client-ca-file "$PKI/ca.crt" \
		--authorization-mode RBAC \
		--service-account-issuer https://kubernetes.default.svc.cluster.local \
		--service-account-key-file "$PKI/sa.pub" \
		--service-account-signing-key-file "$PKI/sa.key" \
		--service-cluster-ip-range 10.96.0.0/24 \
		--allow-privileged=true \
		--profiling=false \
		--v=0
	echo "$api_port" >"$STATE/apiserver.port"
	write_kubeconfig "$api_port"

	log "waiting up to ${READY_TIMEOUT}s for kube-apiserver on https://127.0.0.1:$api_port to be ready"
	local deadline=$((SECONDS + READY_TIMEOUT))
	until [[ $(kubectl_admin get --raw /readyz 2>/dev/null) == ok ]]; do
		for p in etcd kube-apiserver; do
			if ! pid_alive "$p"; then
				log "$p exited during start-up; last lines of $STATE/$p.log:"
				tail -n 20 "$STATE/$p.log" >&2
				if grep -q 'address already in use' "$STATE/$p.log"; then
					down
					return 1
				fi
				down
				die "the control plane could not start"
			fi
		done
		if ((SECONDS > deadline)); then
			tail -n 20 "$STATE/kube-apiserver.log" >&2
			down
			die "kube-apiserver was not ready after ${READY_TIMEOUT}s"
		fi
		sleep 0.5
	done
}

up() {
	build
	if is_ready; then
		log "reusing the running control plane: $(sed -n 's/^ *server: //p' "$STATE/kubeconfig")"
		return 0
	fi
	if [[ -d $STATE ]]; then
		log "found a stale or partial control plane in $STATE; stopping it first"
		down
	fi
	command -v openssl >/dev/null || die "openssl is required to generate the control plane's certificates"
	command -v python3 >/dev/null || die "python3 is required to pick free loopback ports"
	mkdir -p "$STATE"
	gen_pki

	local try
	for try in 1 2 3; do
		start_once && break
		((try < 3)) || die "the control plane could not start: its ports were taken three times"
		log "a port was taken before the server could bind it; trying other ports"
		mkdir -p "$STATE"
		gen_pki
	done
	log "control plane ready; kubeconfig: $STATE/kubeconfig"
}

stop_pid() {
	local name=$1 f=$STATE/$1.pid pid
	[[ -f $f ]] || return 0
	pid=$(cat "$f")
	if kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null || true
		await_exit "$name" "$pid"
		log "stopped $name (pid $pid)"
	fi
	rm -f "$f"
}

down() {
	stop_pid kube-apiserver
	stop_pid etcd
	rm -rf "$STATE"
}

case ${1:-} in
build) build ;;
up) up ;;
down) down ;;
status) is_ready ;;
env)
	echo "export KUBECONFIG=$STATE/kubeconfig"
	echo "export PATH=$BIN:\$PATH"
	;;
bindir) echo "$BIN" ;;
*)
	echo "usage: $0 build|up|down|status|env|bindir" >&2
	exit 2
	;;
esac
