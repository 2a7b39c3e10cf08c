#!/usr/bin/env bash
# Without cert-manager: makes a private CA and the serving certificate of aiops' external
# metrics API with openssl, stores it as the Secret aiops-tls, and sets the APIService's
# caBundle to that CA (so the aggregator verifies aiops; never insecureSkipTLSVerify).
# Run it again before the certificate expires (DAYS, default 365); aiops picks the new files up
# without a restart.
set -euo pipefail
ns="${1:-aiops}"
days="${DAYS:-365}"
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
cd "$dir"
name="aiops-metrics-api.$ns.svc"
openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=aiops-ca" -keyout ca.key -out ca.crt 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=$name" -keyout tls.key -out tls.csr 2>/dev/null
printf 'subjectAltName=DNS:%s,DNS:%s.cluster.local\nextendedKeyUsage=serverAuth\n' "$name" "$name" > ext
openssl x509 -req -in tls.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days "$days" -extfile ext -out tls.crt 2>/dev/null
kubectl -n "$ns" create secret tls aiops-tls --cert tls.crt --key tls.key --dry-run=client -o yaml | kubectl apply -f -
kubectl patch apiservice v1beta1.external.metrics.k8s.io --type merge \
  -p "{\"spec\":{\"caBundle\":\"$(base64 -w0 < ca.crt)\",\"insecureSkipTLSVerify\":false}}"
