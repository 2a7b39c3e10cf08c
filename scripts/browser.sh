#!/usr/bin/env bash
# The web console in a real browser: Debian's chromium and chromium-driver, driven by selenium
# (PyPI, pinned in scripts/requirements-browser.txt, into the test venv), against `aiops demo`
# — scripts/browser_test.py. Installs what is missing. Screenshots go to
# $AIOPS_ARTEFACTS/console (default: $CARGO_TARGET_DIR/artefacts/console).
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  echo "== installing chromium and chromium-driver (Debian packages)"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq chromium chromium-driver >/dev/null
fi
venv="${AIOPS_VENV:-$HOME/.cache/aiops-venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
if ! "$venv/bin/python" -c 'import selenium' >/dev/null 2>&1; then
  echo "== installing selenium (PyPI, into $venv)"
  "$venv/bin/pip" install -q -r scripts/requirements-browser.txt
fi

target="${CARGO_TARGET_DIR:-$HOME/.cache/aiops-target}"
aiops="${AIOPS_BIN:-$target/debug/aiops}"
[ -n "${AIOPS_BIN:-}" ] || CARGO_TARGET_DIR="$target" cargo build -q --bin aiops
out="${AIOPS_ARTEFACTS:-$target/artefacts}/console"
rm -rf "$out"
"$venv/bin/python" scripts/browser_test.py --aiops "$aiops" --out "$out"
