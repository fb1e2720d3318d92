#!/usr/bin/env bash
# Builds (once, into the cache outside the repository) what the one-node
# cluster runs besides the control plane of hack/cluster.sh:
#   kubelet, kube-proxy, kube-controller-manager, kube-scheduler  (k8s.io/kubernetes)
#   containerd, containerd-shim-runc-v2, ctr                      (containerd/v2, CGO off)
#   coredns, with only the plugins a cluster DNS needs            (coredns/coredns)
#   the pause and CoreDNS images, as OCI archives for `ctr images import`
# runc, the CNI plugins, iptables and conntrack come from Debian (hack/node/packages.sh).
#
#   hack/node/build.sh          build what is missing; print nothing else on stdout
#   hack/node/build.sh bindir   print the directory holding the binaries
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=../versions.env
source "$ROOT/hack/versions.env"
LOG_TAG=node-build
# shellcheck source=../lib.sh
source "$ROOT/hack/lib.sh"

NODE_CACHE=$CACHE_ROOT/node-$KUBE_VERSION-containerd-$CONTAINERD_VERSION-coredns-$COREDNS_VERSION
BIN=$NODE_CACHE/bin
IMAGES=$NODE_CACHE/images
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod

# Builds the commands named after $2 into $BIN, unless all are there already.
# Usage: build_step WHAT "cmd1 cmd2" FUNCTION
build_step() {
	local what=$1 outputs=$2 fn=$3 missing='' out
	for out in $outputs; do [[ -x $BIN/$out ]] || missing=1; done
	[[ -z $missing ]] && return 0
	local staging=$NODE_CACHE/staging-$fn
	rm -rf "$staging"
	mkdir -p "$staging" "$BIN"
	"$fn" "$staging"
	# Publish only complete outputs, so a broken build never looks cached.
	for out in $outputs; do mv -f "$staging/$out" "$BIN/$out"; done
	rm -rf "$staging"
	log "built $what"
}

build_kube_node() {
	local out=$1 src=$NODE_CACHE/kube-src
	log "compiling kubelet, kube-proxy, kube-controller-manager and kube-scheduler $KUBE_VERSION"
	log "cold, this takes about 4 minutes on 2 cores"
	local cmds=(kubelet kube-proxy kube-controller-manager kube-scheduler)
	write_build_module "$src" "${cmds[@]/#/k8s.io/kubernetes/cmd/}"
	(cd "$src" && run_with_heartbeat "resolving modules" "$NODE_CACHE/kube-tidy.log" go mod tidy)
	local ldflags
	ldflags=$(kube_ldflags)
	(cd "$src" && run_with_heartbeat "compiling the node commands" "$NODE_CACHE/kube-build.log" \
		go build -v -trimpath -ldflags "$ldflags" -o "$out/" "${cmds[@]/#/k8s.io/kubernetes/cmd/}")
}

build_containerd() {
	local out=$1 src=$NODE_CACHE/containerd-src mod=github.com/containerd/containerd/v2
	log "compiling containerd $CONTAINERD_VERSION (no cgo; about 3 minutes cold)"
	# containerd's go.mod has `exclude` directives, which `go install pkg@version`
	# refuses; a throwaway module that requires it, with the same excludes, builds
	# the same dependency versions.
	mkdir -p "$src"
	local containerd_mod
	containerd_mod=$(cd "$src" && go mod download -json "$mod@$CONTAINERD_VERSION" |
		sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
	[[ -f $containerd_mod ]] || die "could not download $mod@$CONTAINERD_VERSION from the Go module proxy"
	{
		echo "module pendingjob.dev/containerd-build"
		echo
		echo "go $(sed -n 's/^go \([0-9.]*\)$/\1/p' "$containerd_mod")"
		echo
		echo "require $mod $CONTAINERD_VERSION"
		echo
		sed -n '/^exclude (/,/^)/p' "$containerd_mod"
	} >"$src/go.mod"
	local cmds=(containerd containerd-shim-runc-v2 ctr)
	write_tools_file "$src" "${cmds[@]/#/$mod/cmd/}"
	(cd "$src" && run_with_heartbeat "resolving modules" "$NODE_CACHE/containerd-tidy.log" go mod tidy)
	# containerd's own static build tags; the shim is built without gRPC, as upstream does.
	local tags="urfave_cli_no_docs osusergo netgo static_build"
	local ldflags="-s -w -X $mod/version.Version=$CONTAINERD_VERSION -X $mod/version.Revision=go-module"
	(cd "$src" && run_with_heartbeat "compiling containerd and ctr" "$NODE_CACHE/containerd-build.log" \
		go build -v -trimpath -tags "$tags" -ldflags "$ldflags" -o "$out/" "$mod/cmd/containerd" "$mod/cmd/ctr")
	(cd "$src" && run_with_heartbeat "compiling containerd-shim-runc-v2" "$NODE_CACHE/shim-build.log" \
		go build -v -trimpath -tags "$tags no_grpc" -ldflags "$ldflags" -o "$out/" "$mod/cmd/containerd-shim-runc-v2")
}

build_coredns() {
	local out=$1 src=$NODE_CACHE/coredns-src
	log "compiling CoreDNS $COREDNS_VERSION with the plugins a cluster DNS needs (about 2 minutes cold)"
	mkdir -p "$src"
	cat >"$src/go.mod" <<-MOD
		module pendingjob.dev/coredns-build

		go 1.25.0

		require github.com/coredns/coredns $COREDNS_VERSION
	MOD
	# The plugin order comes from CoreDNS's own Directives list; a plugin
	# needs only to be registered, which importing its package does.
	{
		echo "// Command coredns: CoreDNS with the plugins a cluster DNS needs."
		echo "package main"
		echo
		echo "import ("
		for plugin in cache errors forward health hosts kubernetes loadbalance log loop ready reload; do
			printf '\t_ "github.com/coredns/coredns/plugin/%s"\n' "$plugin"
		done
		printf '\n\t"github.com/coredns/coredns/coremain"\n'
		echo ")"
		echo
		echo "func main() { coremain.Run() }"
	} >"$src/main.go"
	(cd "$src" && run_with_heartbeat "resolving modules" "$NODE_CACHE/coredns-tidy.log" go mod tidy)
	(cd "$src" && run_with_heartbeat "compiling coredns" "$NODE_CACHE/coredns-build.log" \
		go build -v -trimpath -ldflags "-s -w" -o "$out/coredns" .)
}

build_pause() {
	local out=$1 dir
	command -v gcc >/dev/null || die "gcc is required to build the pause binary"
	dir=$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	[[ -f $dir/build/pause/linux/pause.c ]] || die "pause.c not found in k8s.io/kubernetes@$KUBE_VERSION"
	gcc -Os -Wall -Werror -static "-DVERSION=v$PAUSE_TAG" -o "$out/pause" "$dir/build/pause/linux/pause.c"
}

# A single-layer OCI archive: the binary at /, run as the given user.
image() {
	local ref=$1 binary=$2 user=$3 file=$IMAGES/$4
	[[ -f $file ]] && return 0
	mkdir -p "$IMAGES"
	python3 "$ROOT/hack/node/oci_image.py" --ref "$ref" --user "$user" \
		--entrypoint "/$(basename "$binary")" --file "$binary" --out "$file.partial"
	mv "$file.partial" "$file"
	log "wrote image $ref to $file"
}

build() {
	command -v go >/dev/null || die "Go is required to build the node (not found in PATH)"
	build_step "the node's Kubernetes commands" "kubelet kube-proxy kube-controller-manager kube-scheduler" build_kube_node
	build_step "containerd" "containerd containerd-shim-runc-v2 ctr" build_containerd
	build_step "CoreDNS" coredns build_coredns
	build_step "pause" pause build_pause
	image "registry.k8s.io/pause:$PAUSE_TAG" "$BIN/pause" 65535 pause.oci.tar
	image "registry.k8s.io/coredns/coredns:$COREDNS_VERSION" "$BIN/coredns" 65532 coredns.oci.tar
}

case ${1:-build} in
build) build ;;
bindir) echo "$BIN" ;;
imagedir) echo "$IMAGES" ;;
*)
	echo "usage: $0 [build|bindir|imagedir]" >&2
	exit 2
	;;
esac
