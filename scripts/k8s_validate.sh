#!/usr/bin/env bash
# Renders every overlay of deploy/kubernetes with `kubectl kustomize` (what `kubectl apply -k`
# applies) and validates it against the Kubernetes schemas with kubernetes-validate (PyPI,
# pinned in scripts/requirements-k8s.txt, in a venv made when missing), strictly: unknown
# fields fail. Custom resources (cert-manager, Prometheus Operator, KEDA) have no schema there
# and are only parsed; tests/deploy_manifests.rs checks their fields against the rest.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${AIOPS_K8S_VENV:-$HOME/.cache/aiops-k8s-venv}"
stamp="$venv/.requirements"
if ! cmp -s scripts/requirements-k8s.txt "$stamp" 2>/dev/null; then
  echo "== installing kubernetes-validate (PyPI, into $venv)"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q -r scripts/requirements-k8s.txt
  cp scripts/requirements-k8s.txt "$stamp"
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
status=0
for overlay in deploy/kubernetes/overlays/*/; do
  name=$(basename "$overlay")
  kubectl kustomize "$overlay" > "$out/$name.yaml"
  if "$venv/bin/kubernetes-validate" --strict --quiet "$out/$name.yaml" > "$out/$name.log" 2>&1; then
    echo "$name: $(grep -c '^kind:' "$out/$name.yaml") objects valid"
  else
    grep -v "Couldn't find schema" "$out/$name.log" || true
    echo "$name: INVALID"
    status=1
  fi
done
exit $status
