#!/usr/bin/env bash
# The Python environment of scripts/compare_rcaeval.py: RCAEval 1.8.1 without its dependencies,
# then the light ones its metric-based methods import (scripts/requirements-rcaeval.txt), and
# PyRCA without its dependencies for e-Diagnosis. Never torch. Prints the venv's python; installs only what is missing.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${AIOPS_RCAEVAL_VENV:-$HOME/.cache/aiops-rcaeval-venv}"
stamp="$venv/.requirements"
if [ ! -x "$venv/bin/python" ] || ! cmp -s "$here/requirements-rcaeval.txt" "$stamp"; then
  echo "== installing RCAEval 1.8.1 and its pinned dependencies (PyPI, into $venv)" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q -r "$here/requirements-rcaeval.txt" >&2
  "$venv/bin/pip" install -q --no-deps "rcaeval==1.8.1" "sfr-pyrca==1.0.1" >&2
  cp "$here/requirements-rcaeval.txt" "$stamp"
fi
echo "$venv/bin/python"
