#!/usr/bin/env bash
# The Python environment of the TSB-AD scripts (check_tsbad_metrics.py, compare_tsbad.py):
# TSB-AD 1.5 without its dependencies, then the ones its detectors and metrics import, pinned in
# requirements-tsbad.txt. Never torch (tsbad_stub/ stands in for its import). Prints the venv's
# python; installs only what is missing.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${AIOPS_TSBAD_VENV:-$HOME/.cache/aiops-tsbad-venv}"
stamp="$venv/.requirements"
if [ ! -x "$venv/bin/python" ] || ! cmp -s "$here/requirements-tsbad.txt" "$stamp"; then
  echo "== installing TSB-AD 1.5 and its pinned dependencies (PyPI, into $venv)" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q -r "$here/requirements-tsbad.txt" >&2
  "$venv/bin/pip" install -q --no-deps "tsb-ad==1.5" >&2
  cp "$here/requirements-tsbad.txt" "$stamp"
fi
echo "$venv/bin/python"
