# The one-node cluster's certificates and configuration files, written into
# $STATE by hack/node.sh (which sources this file and sets STATE, NODE_BIN,
# NODE_NAME, NODE_IP, POD_CIDR, SERVICE_CIDR, DNS_IP and CGROUP_ROOT).
# shellcheck shell=bash

PKI_DIR() { echo "$STATE/pki"; }

# Signs a certificate for NAME with our CA: cert NAME SUBJECT KEY_USAGE [SANS].
cert() {
	local name=$1 subject=$2 usage=$3 sans=${4:-} dir
	dir=$(PKI_DIR)
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "$subject" \
		-keyout "$dir/$name.key" -out "$dir/$name.csr" 2>/dev/null
	{
		echo "extendedKeyUsage=$usage"
		echo "keyUsage=critical,digitalSignature,keyEncipherment"
		[[ -n $sans ]] && echo "subjectAltName=$sans"
	} >"$dir/$name.ext"
	openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
		-days 30 -extfile "$dir/$name.ext" -out "$dir/$name.crt" 2>/dev/null
	rm -f "$dir/$name.csr" "$dir/$name.ext"
}

write_pki() {
	local dir
	dir=$(PKI_DIR)
	mkdir -p "$dir"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
		-subj "/CN=pendingjob-node-ca" -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
	local kubernetes_sans="DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc"
	kubernetes_sans+=",DNS:kubernetes.default.svc.cluster.local,DNS:localhost"
	cert apiserver "/CN=kube-apiserver" serverAuth \
		"$kubernetes_sans,IP:${SERVICE_CIDR%.0/*}.1,IP:$NODE_IP,IP:127.0.0.1"
	cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
	cert admin "/O=system:masters/CN=pendingjob-node-admin" clientAuth
	cert kubelet "/O=system:nodes/CN=system:node:$NODE_NAME" clientAuth
	cert kubelet-serving "/CN=$NODE_NAME" serverAuth "DNS:$NODE_NAME,IP:$NODE_IP,IP:127.0.0.1"
	cert controller-manager "/CN=system:kube-controller-manager" clientAuth
	cert scheduler "/CN=system:kube-scheduler" clientAuth
	cert kube-proxy "/CN=system:kube-proxy" clientAuth
	openssl ecparam -name prime256v1 -genkey -noout -out "$dir/sa.key" 2>/dev/null
	openssl ec -in "$dir/sa.key" -pubout -out "$dir/sa.pub" 2>/dev/null
	rm -f "$dir/ca.srl"
	chmod 600 "$dir"/*.key
}

# kubeconfig NAME SERVER: a kubeconfig for the client certificate NAME.
kubeconfig() {
	local name=$1 server=$2 file=$STATE/$1.kubeconfig dir
	dir=$(PKI_DIR)
	cat >"$file" <<-EOF
		apiVersion: v1
		kind: Config
		clusters:
		  - name: node
		    cluster:
		      server: $server
		      certificate-authority-data: $(base64 -w0 "$dir/ca.crt")
		users:
		  - name: $name
		    user:
		      client-certificate-data: $(base64 -w0 "$dir/$name.crt")
		      client-key-data: $(base64 -w0 "$dir/$name.key")
		contexts:
		  - name: node
		    context: {cluster: node, user: $name, namespace: default}
		current-context: node
	EOF
	chmod 600 "$file"
}

write_kubeconfigs() {
	local inside=https://127.0.0.1:6443
	for name in kubelet controller-manager scheduler kube-proxy; do
		kubeconfig "$name" "$inside"
	done
	# admin.kubeconfig is for clients inside the node's network namespace;
	# kubeconfig (written once the host port is known) for the host.
	kubeconfig admin "$inside"
}

# containerd 2.x, everything under $STATE: no /var/lib, /run or /etc paths.
write_containerd_config() {
	mkdir -p "$STATE/containerd" "$STATE/cni/net.d"
	cat >"$STATE/containerd/config.toml" <<-EOF
		version = 3
		root = '$STATE/containerd/root'
		state = '$STATE/containerd/state'
		# NRI would listen under /var/run; nothing here uses it.
		disabled_plugins = ['io.containerd.nri.v1.nri']

		[grpc]
		  address = '$STATE/run/containerd.sock'

		[plugins]
		  [plugins.'io.containerd.internal.v1.opt']
		    path = '$STATE/containerd/opt'
		  [plugins.'io.containerd.cri.v1.images']
		    snapshotter = 'overlayfs'
		    [plugins.'io.containerd.cri.v1.images'.pinned_images]
		      sandbox = 'registry.k8s.io/pause:$PAUSE_TAG'
		  [plugins.'io.containerd.cri.v1.runtime']
		    # No CAP_SYS_RESOURCE here: a negative oom_score_adj (the pause
		    # container's -998) would make runc fail. Clamp it instead.
		    restrict_oom_score_adj = true
		    enable_unprivileged_ports = true
		    netns_mounts_under_state_dir = true
		    [plugins.'io.containerd.cri.v1.runtime'.containerd]
		      default_runtime_name = 'runc'
		      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
		        runtime_type = 'io.containerd.runc.v2'
		        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
		          BinaryName = '$(command -v runc)'
		          SystemdCgroup = false
		    [plugins.'io.containerd.cri.v1.runtime'.cni]
		      bin_dirs = ['/usr/lib/cni']
		      conf_dir = '$STATE/cni/net.d'
	EOF
	cat >"$STATE/cni/net.d/10-pendingjob.conflist" <<-EOF
		{
		  "cniVersion": "1.0.0",
		  "name": "pendingjob-node",
		  "plugins": [
		    {
		      "type": "bridge",
		      "bridge": "cni0",
		      "isGateway": true,
		      "ipMasq": false,
		      "hairpinMode": true,
		      "ipam": {
		        "type": "host-local",
		        "dataDir": "$STATE/cni/ipam",
		        "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$NODE_IP"}]],
		        "routes": [{"dst": "0.0.0.0/0"}]
		      }
		    },
		    {"type": "portmap", "capabilities": {"portMappings": true}},
		    {"type": "loopback"}
		  ]
		}
	EOF
}

write_kubelet_config() {
	local dir
	dir=$(PKI_DIR)
	mkdir -p "$STATE/kubelet"
	# Pods with dnsPolicy Default get this; there is no upstream DNS here.
	echo "nameserver $NODE_IP" >"$STATE/resolv.conf"
	cat >"$STATE/kubelet-config.yaml" <<-EOF
		apiVersion: kubelet.config.k8s.io/v1beta1
		kind: KubeletConfiguration
		# This machine has cgroup v1, which kubelet 1.35+ refuses by default (KEP-5573).
		failCgroupV1: false
		cgroupDriver: cgroupfs
		cgroupRoot: /$CGROUP_ROOT
		failSwapOn: false
		containerRuntimeEndpoint: unix://$STATE/run/containerd.sock
		address: $NODE_IP
		port: 10250
		readOnlyPort: 0
		healthzBindAddress: 127.0.0.1
		tlsCertFile: $dir/kubelet-serving.crt
		tlsPrivateKeyFile: $dir/kubelet-serving.key
		authentication:
		  anonymous: {enabled: false}
		  webhook: {enabled: true}
		  x509: {clientCAFile: $dir/ca.crt}
		authorization: {mode: Webhook}
		clusterDomain: cluster.local
		clusterDNS: [$DNS_IP]
		resolvConf: $STATE/resolv.conf
		# A shared, busy disk: evict only when it is really full.
		evictionHard: {memory.available: 100Mi, nodefs.available: 1%, nodefs.inodesFree: 1%, imagefs.available: 1%}
		imageGCHighThresholdPercent: 100
		serializeImagePulls: false
		# No CAP_SYS_RESOURCE: keep the default score rather than fail to lower it.
		oomScoreAdj: 0
	EOF
	cat >"$STATE/kube-proxy-config.yaml" <<-EOF
		apiVersion: kubeproxy.config.k8s.io/v1alpha1
		kind: KubeProxyConfiguration
		mode: iptables
		clientConnection: {kubeconfig: $STATE/kube-proxy.kubeconfig}
		hostnameOverride: $NODE_NAME
		clusterCIDR: $POD_CIDR
		bindAddress: 127.0.0.1
		healthzBindAddress: 127.0.0.1:10256
		metricsBindAddress: 127.0.0.1:10249
		# conntrack's table size is a host-wide setting: leave it alone.
		conntrack: {maxPerCore: 0, min: 0}
		oomScoreAdj: 0
	EOF
}
