#!/usr/bin/env bash
# KEDA's external scaler (gRPC) called by a client generated from api/proto/externalscaler.proto
# with grpcio-tools (PyPI, pinned in scripts/requirements-keda.txt, in a venv made when missing):
# scripts/keda_test.py against `aiops serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${AIOPS_KEDA_VENV:-$HOME/.cache/aiops-keda-venv}"
stamp="$venv/.requirements"
if ! cmp -s scripts/requirements-keda.txt "$stamp" 2>/dev/null; then
  echo "== installing grpcio and grpcio-tools (PyPI, into $venv)"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q -r scripts/requirements-keda.txt
  cp scripts/requirements-keda.txt "$stamp"
fi
target="${CARGO_TARGET_DIR:-$HOME/.cache/aiops-target}"
aiops="${AIOPS_BIN:-$target/debug/aiops}"
[ -n "${AIOPS_BIN:-}" ] || CARGO_TARGET_DIR="$target" cargo build -q --bin aiops
"$venv/bin/python" scripts/keda_test.py --aiops "$aiops"
