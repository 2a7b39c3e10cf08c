#!/usr/bin/env bash
# The Python environment of scripts/compare_forecast.py: statsforecast 2.1.1 and its pinned
# dependencies (scripts/requirements-forecast.txt; no numba, no torch).
# Prints the venv's python; installs only what is missing.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${AIOPS_FORECAST_VENV:-$HOME/.cache/aiops-forecast-venv}"
stamp="$venv/.requirements"
if [ ! -x "$venv/bin/python" ] || ! cmp -s "$here/requirements-forecast.txt" "$stamp"; then
  echo "== installing statsforecast 2.1.1 and its pinned dependencies (PyPI, into $venv)" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q -r "$here/requirements-forecast.txt" >&2
  cp "$here/requirements-forecast.txt" "$stamp"
fi
echo "$venv/bin/python"
