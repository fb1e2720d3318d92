# Shared by hack/cluster.sh, hack/node.sh and the scripts they call: logging,
# progress for long builds, the throwaway Go module that builds Kubernetes
# commands, free ports, and stopping a process by PID.
# Callers set ROOT and LOG_TAG, and source hack/versions.env first.
# shellcheck shell=bash disable=SC2034 # sourced: CACHE_ROOT is for its callers

log() { printf '[%s] %s\n' "${LOG_TAG:-hack}" "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

CACHE_ROOT=${PENDINGJOB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pendingjob-operator}

# Runs a long command with its output in a log file, printing a heartbeat so a
# cold build never looks hung. With `go build -v` the log grows by one line per
# compiled package, which makes a useful progress figure.
run_with_heartbeat() {
	local what=$1 logfile=$2
	shift 2
	local start=$SECONDS
	"$@" >"$logfile" 2>&1 &
	local pid=$!
	while kill -0 "$pid" 2>/dev/null; do
		sleep 15 &
		wait $! || true
		if kill -0 "$pid" 2>/dev/null; then
			log "  $what: $((SECONDS - start))s elapsed, $(wc -l <"$logfile") log lines"
		fi
	done
	if ! wait "$pid"; then
		log "$what failed; last lines of $logfile:"
		tail -n 30 "$logfile" >&2
		return 1
	fi
	log "  $what: done in $((SECONDS - start))s"
}

# k8s.io/kubernetes and etcd's server module carry `replace` directives, which
# `go install pkg@version` refuses. So we build from a throwaway module that
# requires both and pins k8s.io/kubernetes's staging modules (required there as
# v0.0.0 and replaced by local paths) to their published v0.X.Y twins.
# Usage: write_build_module DIR PACKAGE... (the commands to build).
write_build_module() {
	local src=$1
	shift
	command -v go >/dev/null || die "Go is required to build the control plane (not found in PATH)"
	mkdir -p "$src"
	local kube_mod
	kube_mod=$(cd "$src" && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" |
		sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
	[[ -f $kube_mod ]] || die "could not download k8s.io/kubernetes@$KUBE_VERSION from the Go module proxy"
	local staging_version=v0.${KUBE_VERSION#v1.}
	{
		echo "module pendingjob.dev/k8s-build"
		echo
		echo "go $(sed -n 's/^go \([0-9.]*\)$/\1/p' "$kube_mod")"
		echo
		echo "require ("
		echo "	k8s.io/kubernetes $KUBE_VERSION"
		echo "	go.etcd.io/etcd/server/v3 $ETCD_VERSION"
		echo ")"
		echo
		echo "replace ("
		awk -v v="$staging_version" \
			'$1 ~ /^k8s\.io\// && $2 == "v0.0.0" { printf "\t%s => %s %s\n", $1, $1, v }' "$kube_mod"
		echo ")"
	} >"$src/go.mod"
	write_tools_file "$src" "$@"
}

# Writes DIR/tools.go, which imports the commands a throwaway module builds,
# so that `go mod tidy` resolves their dependencies.
write_tools_file() {
	local src=$1
	shift
	{
		echo "//go:build tools"
		echo
		echo "// Package tools names the commands this throwaway module builds."
		echo "package tools"
		echo
		echo "import ("
		printf '\t_ "%s"\n' "$@"
		echo ")"
	} >"$src/tools.go"
}

# The -ldflags that stamp a Kubernetes command with KUBE_VERSION, as its own
# release build does (kubectl version, the node's kubeletVersion).
kube_ldflags() {
	local minor=${KUBE_VERSION#v1.}
	minor=${minor%%.*}
	local ldflags="-s -w" key val kv
	for kv in "gitVersion=$KUBE_VERSION" gitMajor=1 "gitMinor=$minor" gitTreeState=clean \
		"buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"; do
		key=${kv%%=*} val=${kv#*=}
		ldflags+=" -X k8s.io/component-base/version.$key=$val -X k8s.io/client-go/pkg/version.$key=$val"
	done
	echo "$ldflags"
}

# A free loopback port below the kernel's ephemeral range (32768+ here), so an
# outgoing connection cannot take it between this check and the server's bind.
free_port() {
	python3 - <<-'PY'
		import random, socket
		low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
		for port in random.sample(range(20000, min(low, 32768)), 200):
		    s = socket.socket()
		    try:
		        s.bind(("127.0.0.1", port))
		    except OSError:
		        continue
		    finally:
		        s.close()
		    print(port)
		    break
		else:
		    raise SystemExit("no free loopback port in 20000..%d" % low)
	PY
}

# Waits up to 10 s for PID (called NAME in the log) to exit after SIGTERM,
# then sends SIGKILL; returns once it is gone, reaping it if it is our child.
await_exit() {
	local name=$1 pid=$2
	for _ in $(seq 1 100); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		log "$name (pid $pid) ignored SIGTERM for 10s; sending SIGKILL"
		kill -KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null || true
	while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
}
