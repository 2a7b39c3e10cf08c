#!/usr/bin/env bash
# Runs the notebooks in notebooks/ headless against data made in this run: a demo archive with
# an incident (`aiops demo` for 90 s with its default fault, parts sealed every 10 s),
# `aiops eval nab` over the shared corpus (with TSB-AD's SR and IForest beside it) and
# `aiops eval autoscale --trace` on nyc_taxi. Installs the pinned Python (notebooks/requirements.txt) into a venv when missing.
# Executed copies, with their figures, go to $AIOPS_NOTEBOOK_OUT (default: a temp dir).
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${AIOPS_NOTEBOOK_VENV:-$HOME/.cache/aiops-notebooks-venv}"
stamp="$venv/.requirements"
if ! cmp -s notebooks/requirements.txt "$stamp" 2>/dev/null; then
  echo "== installing the notebooks' Python (PyPI, into $venv)"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q -r notebooks/requirements.txt
  cp notebooks/requirements.txt "$stamp"
fi

# The binary the tests built (a debug build: the NAB cross-validation takes about a minute in
# it, a release build from scratch nine); AIOPS_BIN to use another.
target="${CARGO_TARGET_DIR:-$HOME/.cache/aiops-target}"
aiops="${AIOPS_BIN:-$target/debug/aiops}"
[ -n "${AIOPS_BIN:-}" ] || CARGO_TARGET_DIR="$target" cargo build -q --bin aiops
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
out="${AIOPS_NOTEBOOK_OUT:-$work/executed}"

echo "== notebook data: a demo archive (90 s, payment's latency fault from 15 s), the NAB evaluation, an HPA replay"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
AIOPS__ARCHIVE__SEGMENT_MAX_SECS=10 "$aiops" demo --data-dir "$work/demo" \
  --listen "127.0.0.1:$port" --interval-secs 5 --fault-after-secs 15 --duration-secs 90 \
  > "$work/demo.log" 2>&1 ||
  { tail -20 "$work/demo.log"; exit 1; }
nab="${AIOPS_NAB_DATA:-../shared/data/nab}"
"$aiops" eval nab --data "$nab" --cross-validate category --out "$work/nab-results" > "$work/nab.json"
# Notebook 02 sets ours next to TSB-AD's two quickest detectors (all five: a script the notes run).
tsbad_python=$(bash scripts/tsbad_env.sh)
"$tsbad_python" scripts/compare_tsbad.py --data "$nab" --aiops "$aiops" --out "$work/tsbad" \
  --peers SR,IForest --ours-json "$work/nab.json" --json "$work/peers.json" > "$work/peers.md"
"$aiops" eval autoscale --data "$nab/data/realKnownCause/nyc_taxi.csv" --capacity-per-pod 1000 \
  --startup-secs 120 --trace "$work/autoscale-trace.csv" > "$work/autoscale.json"

echo "== notebooks"
AIOPS_DATA_DIR="$work/demo" AIOPS_NAB_JSON="$work/nab.json" AIOPS_PEERS_JSON="$work/peers.json" AIOPS_NAB_RESULTS="$work/nab-results/aiops" \
  AIOPS_AUTOSCALE_JSON="$work/autoscale.json" AIOPS_AUTOSCALE_TRACE="$work/autoscale-trace.csv" \
  "$venv/bin/python" notebooks/run.py "$out" notebooks/0*.ipynb
