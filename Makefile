# README's two commands are `make demo` and `make test`; the rest are helpers.
SHELL := bash
CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/pendingjob-operator
# Build outputs live outside the repo so fresh clones (CI) reuse them.
export CARGO_TARGET_DIR ?= $(CACHE)/target

.PHONY: test demo kind-demo bench chaos crds cluster-up cluster-down cluster-env cluster-build \
	node-up node-down node-env e2e chart-docs

## demo: the seed's scenario end to end on a local control plane
demo:
	hack/demo.sh

## kind-demo: the same scenario in a kind cluster (needs kind and Docker)
kind-demo:
	hack/kind-demo.sh

## test: fmt, clippy, unit and integration tests against a real kube-apiserver
test:
	hack/test.sh

## cluster-up: build (once) and start etcd + kube-apiserver on loopback (K8S_VERSION=v1.32.13 for another of the window)
cluster-up:
	hack/cluster.sh up

## cluster-down: stop the local control plane and remove its state
cluster-down:
	hack/cluster.sh down

## cluster-env: print exports; use as eval "$$(make -s cluster-env)"
cluster-env:
	@hack/cluster.sh env

## cluster-build: build the pinned etcd, kube-apiserver and kubectl only
cluster-build:
	hack/cluster.sh build

## node-up: build (once) and start a real one-node cluster in a private network namespace (root)
node-up:
	hack/node.sh up

## node-down: stop every process node-up started, by PID; remove its namespaces, cgroups and state
node-down:
	hack/node.sh down

## node-env: print exports; use as eval "$$(make -s node-env)"
node-env:
	@hack/node.sh env

## e2e: build the images from the Dockerfile, deploy/demo/ on the node, the seed scenario and a leader handover (part of make test)
e2e:
	hack/e2e.sh

## bench: latency and throughput figures on the local control plane (not part of make test)
bench:
	hack/bench.sh

## chaos: the delivery promise under SIGKILLs and an API server outage, as figures (not part of make test)
chaos:
	hack/chaos.sh

## crds: regenerate crds/pendingjob.yaml and crds/destination.yaml from the Rust types, and the chart's copies
crds:
	cargo run --quiet --bin pendingjob-operator -- crd pendingjob > crds/pendingjob.yaml
	cargo run --quiet --bin pendingjob-operator -- crd destination > crds/destination.yaml
	cp crds/pendingjob.yaml crds/destination.yaml charts/pendingjob-operator/crds/

## chart-docs: regenerate the values table of charts/pendingjob-operator/README.md (helm-docs)
chart-docs:
	"$$(hack/tools.sh helm-docs)" --chart-search-root charts --template-files README.md.gotmpl
