#!/usr/bin/env bash
# Checks the VUS-PR / AUC-PR of `aiops eval nab` against TSB-AD's own code on a NAB-layout corpus
# (default: the shared one), to 1e-3 per file: our detector's scores and a reference detector's.
#   bash scripts/check_tsbad.sh [NAB_DIR] [AIOPS_BIN]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
data="${1:-$here/../../shared/data/nab}"
aiops="${2:-${CARGO_TARGET_DIR:-$HOME/.cache/aiops-target}/debug/aiops}"
python="$(bash "$here/tsbad_env.sh")"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$aiops" eval nab --data "$data" --out "$work" > "$work/aiops.json"
"$python" "$here/check_tsbad_metrics.py" --data "$data" --results "$work/aiops" --report "$work/aiops.json" | tail -1
