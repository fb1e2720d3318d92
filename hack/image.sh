#!/usr/bin/env bash
# Builds the project's images from its Dockerfile on a machine without a
# container registry, and saves them as archives for `ctr images import`:
#   pendingjob-operator:dev     (the Dockerfile's default target: the product)
#   pendingjob-mock-api2:dev    (--target mock-api2: the demo's API 2)
#
# A Docker Engine of its own (Debian's docker.io) runs only while building,
# with its data in the cache outside the repository, no bridge and no iptables
# rules; builds use the host's network. The Dockerfile's base images cannot be
# pulled here, so equivalents are assembled locally once and passed as its
# build arguments:
#   builder: Debian 12 minbase (debootstrap) + gcc + the host's Rust toolchain
#   runtime: what distroless cc-debian12:nonroot holds: glibc, libgcc, CA
#            certificates, tzdata, and the nonroot user 65532
#
#   hack/image.sh build     build both images; print the archives' directory
#   hack/image.sh dir       print the archives' directory
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=versions.env
source "$ROOT/hack/versions.env"
LOG_TAG=image
# shellcheck source=lib.sh
source "$ROOT/hack/lib.sh"

DOCKER_DIR=$CACHE_ROOT/docker
OUT=$CACHE_ROOT/images
SOCK=$DOCKER_DIR/run/docker.sock
# Debian's client matches its engine (API 1.41) and drives BuildKit itself.
DOCKER=(/usr/bin/docker --host "unix://$SOCK")
RUST_VERSION=$(rustc --version | awk '{print $2}')
BUILD_BASE=pendingjob-build-base:bookworm-rust-$RUST_VERSION
RUNTIME_BASE=pendingjob-runtime-base:bookworm
# Build containers' cgroups go under this name in each hierarchy, and are
# removed when the engine stops.
CGROUP_PARENT=pendingjob-docker
dockerd_pid=

start_dockerd() {
	mkdir -p "$DOCKER_DIR/run" "$DOCKER_DIR/data"
	log "starting a Docker Engine of our own (data in $DOCKER_DIR)"
	dockerd --data-root "$DOCKER_DIR/data" --exec-root "$DOCKER_DIR/run/exec" \
		--pidfile "$DOCKER_DIR/run/dockerd.pid" --host "unix://$SOCK" \
		--bridge=none --iptables=false --ip-masq=false --ip-forward=false \
		--cgroup-parent "$CGROUP_PARENT" --storage-driver overlay2 \
		</dev/null >"$DOCKER_DIR/dockerd.log" 2>&1 &
	dockerd_pid=$!
	local deadline=$((SECONDS + 60))
	until "${DOCKER[@]}" version >/dev/null 2>&1; do
		kill -0 "$dockerd_pid" 2>/dev/null || {
			tail -n 20 "$DOCKER_DIR/dockerd.log" >&2
			die "dockerd exited during start-up"
		}
		((SECONDS < deadline)) || die "dockerd was not ready after 60s (see $DOCKER_DIR/dockerd.log)"
		sleep 0.5
	done
}

# dockerd stops its own containerd on SIGTERM.
stop_dockerd() {
	[[ -n $dockerd_pid ]] || return 0
	kill -TERM "$dockerd_pid" 2>/dev/null || true
	wait "$dockerd_pid" 2>/dev/null || true
	dockerd_pid=
	local dir
	for dir in /sys/fs/cgroup/*/"$CGROUP_PARENT"; do
		[[ -d $dir ]] && find "$dir" -depth -type d -exec rmdir {} + 2>/dev/null
	done
	return 0
}

have_image() { "${DOCKER[@]}" image inspect "$1" >/dev/null 2>&1; }

# Debian 12 minbase, gcc, and the host's Rust toolchain (compiler and the
# x86_64 standard library only), trusting the host's CA bundle.
build_base() {
	have_image "$BUILD_BASE" && return 0
	local rootfs=$DOCKER_DIR/build-rootfs sysroot
	rm -rf "$rootfs"
	log "assembling $BUILD_BASE: debootstrap bookworm (about a minute), then the host's Rust $RUST_VERSION"
	run_with_heartbeat "debootstrap" "$DOCKER_DIR/debootstrap.log" \
		debootstrap --variant=minbase --include=gcc,libc6-dev,ca-certificates,zlib1g \
		bookworm "$rootfs" http://deb.debian.org/debian
	sysroot=$(rustc --print sysroot)
	mkdir -p "$rootfs/usr/local/rust/bin" "$rootfs/usr/local/rust/lib/rustlib"
	cp -L "$sysroot/bin/rustc" "$sysroot/bin/cargo" "$rootfs/usr/local/rust/bin/"
	cp -a "$sysroot"/lib/*.so* "$rootfs/usr/local/rust/lib/"
	cp -a "$sysroot/lib/rustlib/x86_64-unknown-linux-gnu" "$rootfs/usr/local/rust/lib/rustlib/"
	cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
	rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
	tar -C "$rootfs" -c . | "${DOCKER[@]}" import \
		--change 'ENV PATH=/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
		--change 'ENV CARGO_HOME=/usr/local/cargo' - "$BUILD_BASE" >/dev/null
	rm -rf "$rootfs"
}

# distroless cc-debian12:nonroot's contents, from the same Debian packages.
runtime_base() {
	have_image "$RUNTIME_BASE" && return 0
	local rootfs=$DOCKER_DIR/runtime-rootfs debs=$DOCKER_DIR/debs deb
	rm -rf "$rootfs" "$debs"
	mkdir -p "$rootfs" "$debs"
	log "assembling $RUNTIME_BASE from Debian 12 packages"
	(cd "$debs" && apt-get download -q libc6 libgcc-s1 base-files netbase tzdata >&2)
	for deb in "$debs"/*.deb; do dpkg -x "$deb" "$rootfs"; done
	rm -rf "$rootfs/usr/share/doc" "$rootfs/usr/share/man" "$rootfs/usr/share/lintian" "$rootfs/usr/share/locale"
	mkdir -p "$rootfs/etc/ssl/certs" "$rootfs/home/nonroot" "$rootfs/tmp"
	chmod 1777 "$rootfs/tmp"
	chown 65532:65532 "$rootfs/home/nonroot"
	cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/"
	printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' 'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin' \
		'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' >"$rootfs/etc/passwd"
	printf '%s\n' 'root:x:0:' 'nobody:x:65534:' 'nonroot:x:65532:' >"$rootfs/etc/group"
	tar -C "$rootfs" -c . | "${DOCKER[@]}" import --change 'USER 65532' - "$RUNTIME_BASE" >/dev/null
	rm -rf "$rootfs" "$debs"
}

# Builds one target of the Dockerfile and saves it.
build_target() {
	local target=$1 tag=$2 archive=$3
	log "docker build --target $target -t $tag (cargo's registry and target are BuildKit cache mounts)"
	DOCKER_BUILDKIT=1 run_with_heartbeat "building $tag" "$DOCKER_DIR/build-$target.log" \
		"${DOCKER[@]}" build --progress plain --network host --target "$target" --tag "$tag" \
		--build-arg "BUILD_IMAGE=$BUILD_BASE" --build-arg "RUNTIME_IMAGE=$RUNTIME_BASE" "$ROOT"
	"${DOCKER[@]}" save --output "$OUT/$archive.partial" "$tag"
	mv "$OUT/$archive.partial" "$OUT/$archive"
	log "$tag: $("${DOCKER[@]}" image inspect --format '{{.Size}}' "$tag" | awk '{printf "%.1f MB", $1 / 1e6}'), saved to $OUT/$archive"
}

build() {
	"$ROOT/hack/node/packages.sh"
	mkdir -p "$OUT"
	trap stop_dockerd EXIT
	start_dockerd
	build_base
	runtime_base
	build_target operator pendingjob-operator:dev operator.tar
	build_target mock-api2 pendingjob-mock-api2:dev mock-api2.tar
	stop_dockerd
	echo "$OUT"
}

case ${1:-} in
build) build ;;
dir) echo "$OUT" ;;
*)
	echo "usage: $0 build|dir" >&2
	exit 2
	;;
esac
