#!/usr/bin/env bash
# Installs, once, the Debian 12 packages the one-node cluster and the image
# build use, with apt-get (nothing is started: this machine has no init system
# that would start docker.io's service, and the scripts start what they need).
#   runc                          the OCI runtime containerd's shim calls
#   containernetworking-plugins   bridge, host-local, portmap, loopback (/usr/lib/cni)
#   iptables, conntrack           kube-proxy's iptables mode
#   socat                         the loopback bridge from the host to the node's API server
#   docker.io, debootstrap        `docker build` of our Dockerfile, and its base images
set -euo pipefail

# command -> package
declare -A wanted=(
	[runc]=runc
	[/usr/lib/cni/bridge]=containernetworking-plugins
	[iptables]=iptables
	[conntrack]=conntrack
	[socat]=socat
	[dockerd]=docker.io
	[debootstrap]=debootstrap
)
missing=()
for what in "${!wanted[@]}"; do
	if [[ $what == /* ]]; then [[ -e $what ]] && continue; else command -v "$what" >/dev/null && continue; fi
	missing+=("${wanted[$what]}")
done
((${#missing[@]} == 0)) && exit 0

[[ $(id -u) == 0 ]] || {
	echo "[packages] root is needed to install ${missing[*]} (and to run a node)" >&2
	exit 1
}
echo "[packages] installing from Debian: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
