# README's two commands are `make demo` and `make test`; the rest are helpers.
SHELL := bash
CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/pendingjob-operator
# Build outputs live outside the repo so fresh clones (CI) reuse them.
export CARGO_TARGET_DIR ?= $(CACHE)/target

.PHONY: test demo kind-demo bench chaos crds cluster-up cluster-down cluster-env cluster-build

## demo: the seed's scenario end to end on a local control plane
demo:
	hack/demo.sh

## kind-demo: the same scenario in a kind cluster (needs kind and Docker)
kind-demo:
	hack/kind-demo.sh

## test: fmt, clippy, unit and integration tests against a real kube-apiserver
test:
	hack/test.sh

## cluster-up: build (once) and start etcd + kube-apiserver on loopback
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

## bench: latency and throughput figures on the local control plane (not part of make test)
bench:
	hack/bench.sh

## chaos: the delivery promise under SIGKILLs and an API server outage, as figures (not part of make test)
chaos:
	hack/chaos.sh

## crds: regenerate crds/pendingjob.yaml and crds/destination.yaml from the Rust types
crds:
	cargo run --quiet --bin pendingjob-operator -- crd pendingjob > crds/pendingjob.yaml
	cargo run --quiet --bin pendingjob-operator -- crd destination > crds/destination.yaml
