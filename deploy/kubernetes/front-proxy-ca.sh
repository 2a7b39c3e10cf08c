#!/usr/bin/env bash
# Copies the cluster's request-header CA (who may act as the API aggregator's front proxy) from
# kube-system into the aiops namespace, where the Deployment mounts it, and prints the allowed
# names to put in server.front_proxy_allowed_names. Rerun when the cluster rotates that CA.
set -euo pipefail
ns="${1:-aiops}"
src=(kubectl -n kube-system get configmap extension-apiserver-authentication)
ca="$("${src[@]}" -o jsonpath='{.data.requestheader-client-ca-file}')"
if [ -z "$ca" ]; then
  echo "kube-system/extension-apiserver-authentication has no requestheader-client-ca-file:" >&2
  echo "the API server runs without --requestheader-client-ca-file (no aggregation layer)." >&2
  exit 1
fi
kubectl -n "$ns" create configmap aiops-front-proxy-ca \
  --from-literal=requestheader-client-ca-file="$ca" --dry-run=client -o yaml | kubectl apply -f -
echo "requestheader-allowed-names: $("${src[@]}" -o jsonpath='{.data.requestheader-allowed-names}')"
