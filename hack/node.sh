#!/usr/bin/env bash
# A real one-node Kubernetes cluster on this machine, for make e2e:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, containerd 2,
# runc, kubelet, kube-proxy (iptables), a bridge CNI and CoreDNS.
#
# Everything runs inside a private mount + network namespace, held open by a
# sleeping process: the node's addresses (cni0 10.244.0.1/24, Services
# 10.96.0.0/24), its iptables rules, its mounts and the sysctls kubelet insists
# on stay in there. The host sees one loopback port, bridged by socat to the
# API server. Needs root (namespaces, cgroups, mounts).
#
#   hack/node.sh up       build what is missing, start the node (idempotent)
#   hack/node.sh down     stop every process started here, by PID; remove the
#                         namespaces, cgroups and state
#   hack/node.sh status   exit 0 when the node started here is up and Ready
#   hack/node.sh env      print export lines for KUBECONFIG and PATH
#   hack/node.sh exec CMD run CMD inside the node's namespaces
#   hack/node.sh load F.. import image archives into the node's containerd
#
# Environment: NODE_DIR (state, default .node).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=versions.env
source "$ROOT/hack/versions.env"
LOG_TAG=node
# shellcheck source=lib.sh
source "$ROOT/hack/lib.sh"
# shellcheck source=node/config.sh
source "$ROOT/hack/node/config.sh"

STATE=${NODE_DIR:-$ROOT/.node}
NODE_NAME=pendingjob-node
NODE_IP=10.244.0.1
POD_CIDR=10.244.0.0/24
SERVICE_CIDR=10.96.0.0/24
DNS_IP=10.96.0.10
CGROUP_ROOT=pendingjob-node
READY_TIMEOUT=${NODE_READY_TIMEOUT:-180}
# The processes started here, in start order.
PROCESSES=(holder etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy
	api-bridge-inside api-bridge)

K8S_BIN=$("$ROOT/hack/cluster.sh" bindir)
NODE_BIN=$("$ROOT/hack/node/build.sh" bindir)
IMAGES=$("$ROOT/hack/node/build.sh" imagedir)

pid_of() { cat "$STATE/pids/$1" 2>/dev/null || true; }
alive() {
	local pid
	pid=$(pid_of "$1")
	[[ -n $pid ]] && kill -0 "$pid" 2>/dev/null
}

NODE_PATH=$NODE_BIN:$K8S_BIN:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# Runs a command inside the node's mount and network namespaces.
inside() { nsenter --target "$(pid_of holder)" --mount --net -- env PATH="$NODE_PATH" "$@"; }

# Starts NAME in the background inside the namespaces, logging to
# logs/NAME.log. nsenter and env exec, so $! is the process itself.
start() {
	local name=$1
	shift
	nsenter --target "$(pid_of holder)" --mount --net -- env PATH="$NODE_PATH" "$@" \
		</dev/null >"$STATE/logs/$name.log" 2>&1 &
	echo $! >"$STATE/pids/$name"
}

# Imports image archives (OCI or `docker save`) into the node's containerd.
load() {
	local archive
	for archive in "$@"; do
		inside ctr --address "$STATE/run/containerd.sock" -n k8s.io images import "$archive" >/dev/null
	done
}

kubectl_inside() { inside kubectl --kubeconfig "$STATE/admin.kubeconfig" "$@"; }

# Waits until CHECK succeeds, failing with the last lines of LOG if a
# process died or the time ran out: wait_for WHAT SECONDS LOG CHECK...
wait_for() {
	local what=$1 timeout=$2 logname=$3 p
	shift 3
	local deadline=$((SECONDS + timeout))
	until "$@" >/dev/null 2>&1; do
		for p in "${PROCESSES[@]}"; do
			if [[ -f $STATE/pids/$p ]] && ! alive "$p"; then
				log "$p exited; last lines of $STATE/logs/$p.log:"
				tail -n 25 "$STATE/logs/$p.log" >&2
				die "the node could not start ($what); logs in $STATE/logs; make node-down stops the rest"
			fi
		done
		if ((SECONDS > deadline)); then
			tail -n 25 "$STATE/logs/$logname.log" >&2
			die "timed out after ${timeout}s waiting for $what; make node-down stops what started"
		fi
		sleep 0.5
	done
}

cgroup_dirs() {
	local hierarchy
	for hierarchy in /sys/fs/cgroup/*/; do
		[[ -f $hierarchy/cgroup.procs ]] && echo "${hierarchy%/}/$CGROUP_ROOT"
	done
}

# kubelet's own cgroup root, in every v1 hierarchy; cpuset needs its CPUs and
# memory nodes copied from the parent before anything can join it.
make_cgroups() {
	local dir
	for dir in $(cgroup_dirs); do
		mkdir -p "$dir"
		if [[ -f $dir/cpuset.cpus ]]; then
			cat "$(dirname "$dir")/cpuset.cpus" >"$dir/cpuset.cpus"
			cat "$(dirname "$dir")/cpuset.mems" >"$dir/cpuset.mems"
		fi
	done
}

remove_cgroups() {
	local dir
	for dir in $(cgroup_dirs); do
		[[ -d $dir ]] && find "$dir" -depth -type d -exec rmdir {} + 2>/dev/null || true
	done
	return 0
}

holder_ready() {
	[[ $(readlink "/proc/$(pid_of holder)/ns/net") != "$(readlink /proc/self/ns/net)" ]]
}
apiserver_ready() { [[ $(kubectl_inside get --raw /readyz 2>/dev/null) == ok ]]; }

# The namespaces: a sleeping holder, loopback, the cni0 bridge with the node's
# address, a route for Services, and the sysctl values kubelet wants, bound
# read-only over /proc/sys inside the mount namespace only. Fresh tmpfs over
# /run, /var/lib and /var/log catch the paths kubelet, containerd and the CNI
# plugins write without asking (runc state, netns pins, CNI caches, log links),
# so nothing of the node lands on the host's filesystem outside $STATE.
make_namespaces() {
	# Its output goes nowhere: a background process holding our stdout open
	# would keep a pipe (make's, CI's) from ever closing.
	unshare --mount --net --propagation private sleep infinity </dev/null >/dev/null 2>&1 &
	echo $! >"$STATE/pids/holder"
	wait_for "the namespace holder" 10 holder holder_ready
	mkdir -p "$STATE/sysctl"
	echo 1 >"$STATE/sysctl/overcommit_memory"
	echo 10 >"$STATE/sysctl/panic"
	echo 1 >"$STATE/sysctl/panic_on_oops"
	inside sh -euc "
		mount -t tmpfs -o mode=755,size=64m pendingjob-run /run
		mount -t tmpfs -o mode=755,size=64m pendingjob-var-lib /var/lib
		mount -t tmpfs -o mode=755,size=256m pendingjob-var-log /var/log
		mount --bind -o ro '$STATE/sysctl/overcommit_memory' /proc/sys/vm/overcommit_memory
		mount --bind -o ro '$STATE/sysctl/panic' /proc/sys/kernel/panic
		mount --bind -o ro '$STATE/sysctl/panic_on_oops' /proc/sys/kernel/panic_on_oops
		ip link set lo up
		ip link add cni0 type bridge
		ip addr add $NODE_IP/${POD_CIDR#*/} dev cni0
		ip link set cni0 up
		ip route add $SERVICE_CIDR dev cni0 src $NODE_IP
		sysctl -qw net.ipv4.ip_forward=1
	"
}

start_control_plane() {
	local pki=$STATE/pki
	start etcd etcd --name "$NODE_NAME" --data-dir "$STATE/etcd" \
		--listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
		--listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
		--initial-cluster "$NODE_NAME=http://127.0.0.1:2380" --unsafe-no-fsync --log-level warn
	start kube-apiserver kube-apiserver --etcd-servers http://127.0.0.1:2379 \
		--bind-address 0.0.0.0 --secure-port 6443 --advertise-address "$NODE_IP" \
		--tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
		--client-ca-file "$pki/ca.crt" \
		--authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
		--kubelet-client-certificate "$pki/apiserver-kubelet-client.crt" \
		--kubelet-client-key "$pki/apiserver-kubelet-client.key" \
		--kubelet-certificate-authority "$pki/ca.crt" \
		--kubelet-preferred-address-types InternalIP \
		--service-account-issuer https://kubernetes.default.svc.cluster.local \
		--service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
		--service-cluster-ip-range "$SERVICE_CIDR" --profiling=false
	wait_for "kube-apiserver to be ready" 120 kube-apiserver apiserver_ready
	start kube-controller-manager kube-controller-manager \
		--kubeconfig "$STATE/controller-manager.kubeconfig" \
		--authentication-kubeconfig "$STATE/controller-manager.kubeconfig" \
		--authorization-kubeconfig "$STATE/controller-manager.kubeconfig" \
		--service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
		--use-service-account-credentials --leader-elect=false \
		--bind-address 127.0.0.1 --secure-port 10257 --profiling=false
	start kube-scheduler kube-scheduler --kubeconfig "$STATE/scheduler.kubeconfig" \
		--authentication-kubeconfig "$STATE/scheduler.kubeconfig" \
		--authorization-kubeconfig "$STATE/scheduler.kubeconfig" \
		--leader-elect=false --bind-address 127.0.0.1 --secure-port 10259 --profiling=false
}

start_node() {
	start containerd containerd --config "$STATE/containerd/config.toml"
	wait_for "containerd" 30 containerd test -S "$STATE/run/containerd.sock"
	load "$IMAGES"/*.oci.tar
	start kubelet kubelet --config "$STATE/kubelet-config.yaml" --kubeconfig "$STATE/kubelet.kubeconfig" \
		--root-dir "$STATE/kubelet" --node-ip "$NODE_IP" --hostname-override "$NODE_NAME"
	start kube-proxy kube-proxy --config "$STATE/kube-proxy-config.yaml"
	wait_for "node $NODE_NAME to be Ready" "$READY_TIMEOUT" kubelet \
		kubectl_inside wait --for=condition=Ready "node/$NODE_NAME" --timeout=1s
	sed "s/COREDNS_VERSION/$COREDNS_VERSION/" "$ROOT/hack/node/coredns.yaml" |
		kubectl_inside apply --server-side -f - >/dev/null
	wait_for "CoreDNS to roll out" 120 kubelet \
		kubectl_inside -n kube-system rollout status deployment/coredns --timeout=1s
}

# The host's door to the API server: a loopback port, bridged through a Unix
# socket in the state directory (visible on both sides of the namespace).
start_bridge() {
	local port
	port=$(free_port)
	start api-bridge-inside socat "UNIX-LISTEN:$STATE/run/apiserver.sock,fork,mode=600" TCP:127.0.0.1:6443
	wait_for "the API bridge" 10 api-bridge-inside test -S "$STATE/run/apiserver.sock"
	socat "TCP-LISTEN:$port,bind=127.0.0.1,fork,reuseaddr" "UNIX-CONNECT:$STATE/run/apiserver.sock" \
		</dev/null >"$STATE/logs/api-bridge.log" 2>&1 &
	echo $! >"$STATE/pids/api-bridge"
	kubeconfig admin "https://127.0.0.1:$port"
	mv "$STATE/admin.kubeconfig" "$STATE/kubeconfig"
	kubeconfig admin https://127.0.0.1:6443
	wait_for "the API server through 127.0.0.1:$port" 10 api-bridge \
		"$K8S_BIN/kubectl" --kubeconfig "$STATE/kubeconfig" get --raw /readyz
}

is_up() {
	local p
	for p in "${PROCESSES[@]}"; do alive "$p" || return 1; done
	"$K8S_BIN/kubectl" --kubeconfig "$STATE/kubeconfig" wait --for=condition=Ready "node/$NODE_NAME" \
		--timeout=5s >/dev/null 2>&1
}

print_access() {
	log "node $NODE_NAME is Ready; from the host shell:"
	log "  eval \"\$(make -s node-env)\"; kubectl get nodes"
	log "  (the API server is bridged to $(sed -n 's/^ *server: //p' "$STATE/kubeconfig"))"
}

up() {
	"$ROOT/hack/node/packages.sh"
	"$ROOT/hack/cluster.sh" build
	"$ROOT/hack/node/build.sh"
	[[ $(id -u) == 0 ]] || die "a node needs root: namespaces, cgroups and mounts"
	if [[ -d $STATE ]] && is_up; then
		log "reusing the running node"
		print_access
		return 0
	fi
	if [[ -d $STATE ]]; then
		log "found a stale or partial node in $STATE; taking it down first"
		down
	fi
	local started=$SECONDS
	mkdir -p "$STATE/pids" "$STATE/logs" "$STATE/run"
	write_pki
	write_kubeconfigs
	write_containerd_config
	write_kubelet_config
	make_cgroups
	make_namespaces
	start_control_plane
	start_bridge
	start_node
	log "up in $((SECONDS - started))s"
	print_access
}

# Pods first, through the runtime, so that no shim outlives containerd:
# the containers' tasks, then the sandboxes' (pause) tasks, then the sandboxes,
# whose removal shuts their shims down. Any shim still there after that (one
# per pod; the parent of its tasks) is stopped by PID.
stop_containers() {
	alive containerd || return 0
	local ctr=(ctr --address "$STATE/run/containerd.sock" -n k8s.io) id pid
	local tasks sandboxes shims=()
	tasks=$(inside "${ctr[@]}" tasks ls 2>/dev/null | awk 'NR > 1 { print $1 " " $2 }')
	sandboxes=$(inside "${ctr[@]}" sandboxes ls 2>/dev/null | awk 'NR > 1 { print $1 }')
	while read -r id pid; do
		[[ -n $pid ]] && shims+=("$(awk '{ print $4 }' "/proc/$pid/stat" 2>/dev/null)")
	done <<<"$tasks"
	local containers
	containers=$(awk '{ print $1 }' <<<"$tasks" | grep -vxF -f <(echo "$sandboxes") || true)
	for id in $containers $sandboxes; do
		inside "${ctr[@]}" tasks kill --signal SIGKILL "$id" >/dev/null 2>&1 || true
		for _ in $(seq 1 50); do
			inside "${ctr[@]}" tasks delete "$id" >/dev/null 2>&1 && break
			inside "${ctr[@]}" tasks ls -q 2>/dev/null | grep -qxF "$id" || break
			sleep 0.1
		done
	done
	for id in $sandboxes; do
		inside "${ctr[@]}" sandboxes rm --force "$id" >/dev/null 2>&1 || true
	done
	for pid in $(printf '%s\n' "${shims[@]}" | sort -u); do
		# Only our shims: the PID may have been reused by now.
		if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "containerd-shim.*$STATE/run/containerd.sock"; then
			log "stopping a shim that outlived its sandbox (pid $pid)"
			kill -KILL "$pid" 2>/dev/null || true
		fi
	done
}

# Sends SIGTERM to the named processes together, then waits for each (10 s,
# then SIGKILL).
stop_processes() {
	local name pid
	for name in "$@"; do
		pid=$(pid_of "$name")
		[[ -n $pid ]] && kill -TERM "$pid" 2>/dev/null
	done
	for name in "$@"; do
		pid=$(pid_of "$name")
		[[ -n $pid ]] && await_exit "$name" "$pid"
		rm -f "$STATE/pids/$name"
	done
}

down() {
	[[ -d $STATE ]] || {
		remove_cgroups
		return 0
	}
	local started=$SECONDS
	stop_processes kubelet
	stop_containers
	stop_processes kube-proxy api-bridge api-bridge-inside kube-scheduler kube-controller-manager containerd
	stop_processes kube-apiserver
	stop_processes etcd
	stop_processes holder
	remove_cgroups
	local port
	port=$(sed -n 's|^ *server: https://127.0.0.1:||p' "$STATE/kubeconfig" 2>/dev/null || true)
	rm -rf "$STATE"
	left_nothing "$port"
	log "down in $((SECONDS - started))s; nothing left running, listening, mounted or in cgroups"
}

# Fails if anything of the node outlived down: a process naming the state
# directory (a shim, say), a mount of it, a cgroup, or the host's API port.
left_nothing() {
	local port=$1 left=() pid
	for pid in /proc/[0-9]*; do
		tr '\0' ' ' <"$pid/cmdline" 2>/dev/null | grep -qF "$STATE/" && left+=("process ${pid#/proc/}")
	done
	grep -qF " $STATE" /proc/self/mountinfo && left+=("a mount under $STATE")
	local dir
	for dir in $(cgroup_dirs); do [[ -d $dir ]] && left+=("cgroup $dir"); done
	[[ -n $port ]] && ss -Hltn "sport = :$port" | grep -q . && left+=("a listener on 127.0.0.1:$port")
	((${#left[@]} == 0)) || die "down left behind: ${left[*]}"
}

case ${1:-} in
up) up ;;
down) down ;;
status) [[ -d $STATE ]] && is_up ;;
env)
	[[ -f $STATE/kubeconfig ]] || die "no node is running; start one with make node-up"
	echo "export KUBECONFIG=$STATE/kubeconfig"
	echo "export PATH=$K8S_BIN:\$PATH"
	;;
exec)
	shift
	inside "$@"
	;;
load)
	shift
	alive containerd || die "no node is running; start one with make node-up"
	load "$@"
	;;
*)
	echo "usage: $0 up|down|status|env|exec CMD...|load ARCHIVE..." >&2
	exit 2
	;;
esac
