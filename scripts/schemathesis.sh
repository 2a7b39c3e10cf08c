#!/usr/bin/env bash
# Fuzzes every route of the API document of a running `aiops serve` (credentials configured)
# with schemathesis: no 5xx, every status, content type, header and body as documented, and
# schema-violating requests refused. Called by scripts/test.sh after the cargo tests; needs the
# debug binary they build and a venv with schemathesis (test.sh makes it).
#
# Schema-valid requests must be accepted too (positive_data_acceptance): the document spells
# out the grammars of times, selectors and label selectors as patterns; what a schema cannot
# say (state, size limits, a protobuf body) is in scripts/schemathesis.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${AIOPS_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/aiops-target}/debug/aiops}"
venv="${AIOPS_VENV:-$HOME/.cache/aiops-venv}"
dir=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat > "$dir/aiops.toml" <<TOML
[server]
listen = "127.0.0.1:$port"
[[server.credentials]]
name = "schemathesis"
scopes = ["read", "write", "scaling"]
token = "schemathesis-token"

[incidents]
max_analyses_per_minute = 0

[detect.scaling]
step_secs = 1
[[detect.scaling.targets]]
name = "checkout_rps"
selector = 'rps{service="checkout"}'
labels = { service = "checkout" }
capacity_per_pod = 10
lead_secs = 60
TOML
"$bin" serve --config "$dir/aiops.toml" --data-dir "$dir/data" 2> "$dir/aiops.log" &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$dir"' EXIT
set +e
PYTHONPATH=scripts SCHEMATHESIS_HOOKS=schemathesis_hooks "$venv/bin/schemathesis" \
  --config-file scripts/schemathesis.toml run \
  "http://127.0.0.1:$port/api/v1/openapi.json" --wait-for-schema 30 \
  -H "Authorization: Bearer schemathesis-token" \
  --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-100}" --seed 1
status=$?
set -e
if [ "$status" != 0 ]; then
  echo "== aiops log (last 50 lines)"
  tail -50 "$dir/aiops.log"
fi
exit "$status"
