#!/usr/bin/env bash
# The whole test suite: installs what the tests need when it is missing, then runs cargo.
# Used by CI (.ci/run) and by developers alike.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/aiops-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# CI builds once per run: incremental caches only cost disk.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# librdkafka (built by the rdkafka crate) needs a C toolchain, pkg-config and OpenSSL headers.
if ! command -v pkg-config >/dev/null 2>&1 || ! dpkg -s libssl-dev >/dev/null 2>&1; then
  echo "== installing pkg-config and libssl-dev (Debian packages)"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq pkg-config libssl-dev >/dev/null
fi
# Prometheus 2.42 from Debian, for the end-to-end tests.
if ! command -v prometheus >/dev/null 2>&1; then
  echo "== installing prometheus (Debian package)"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq prometheus >/dev/null
fi
# The Debian package starts a system Prometheus on :9090 on some machines; tests use their own.
prometheus --version 2>&1 | sed -n 1p
# Alertmanager from Debian, for the real Alertmanager → aiops webhook test.
if ! command -v prometheus-alertmanager >/dev/null 2>&1; then
  echo "== installing prometheus-alertmanager (Debian package)"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq prometheus-alertmanager >/dev/null
fi
prometheus-alertmanager --version 2>&1 | sed -n 1p
# VictoriaMetrics from Debian, a receiver of the remote_write outputs' test.
if ! command -v victoria-metrics >/dev/null 2>&1; then
  echo "== installing victoria-metrics (Debian package)"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq victoria-metrics >/dev/null
fi
# kubectl, for `kubectl get --raw` against our external metrics API.
if ! command -v kubectl >/dev/null 2>&1; then
  echo "== installing kubectl (Debian package)"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq kubectl >/dev/null 2>&1 ||
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq kubernetes-client >/dev/null
fi
kubectl version --client 2>&1 | sed -n 1p
# openssl makes the TLS test's self-signed certificate.
if ! command -v openssl >/dev/null 2>&1; then
  echo "== installing openssl (Debian package)"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq openssl >/dev/null
fi

# stunnel puts TLS (with client certificates) in front of tansu for the Kafka TLS test.
if ! command -v stunnel4 >/dev/null 2>&1 && ! command -v stunnel >/dev/null 2>&1; then
  echo "== installing stunnel4 (Debian package)"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq stunnel4 >/dev/null
fi

# tansu, a Kafka-compatible broker, for the scale-out tests (built from crates.io: about 12
# minutes the first time, in its own target directory).
if ! command -v tansu >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/tansu" ]; then
  echo "== installing tansu (cargo install tansu --features dynostore)"
  CARGO_TARGET_DIR="$HOME/.cache/tansu-target" cargo install tansu --features dynostore --locked
fi
export AIOPS_TANSU_BIN="${AIOPS_TANSU_BIN:-$(command -v tansu || echo "$HOME/.cargo/bin/tansu")}"
"$AIOPS_TANSU_BIN" --version 2>&1 | sed -n 1p

# schemathesis (PyPI, in a venv) fuzzes the API of a running server after the cargo tests.
venv="${AIOPS_VENV:-$HOME/.cache/aiops-venv}"
if [ ! -x "$venv/bin/schemathesis" ]; then
  echo "== installing schemathesis (PyPI, into $venv)"
  if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq python3-venv >/dev/null
  fi
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "schemathesis==4.32.5"
fi
export AIOPS_VENV="$venv"
"$venv/bin/schemathesis" --version

# cargo-machete (crates.io) reports dependencies no crate uses.
if ! command -v cargo-machete >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/cargo-machete" ]; then
  echo "== installing cargo-machete (cargo install cargo-machete)"
  CARGO_TARGET_DIR="$HOME/.cache/machete-target" cargo install cargo-machete --version 0.9.2 --locked
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== unused dependencies (cargo machete)"
cargo machete
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== tests (benchmarks run once each in test mode)"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --all-targets 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
echo "== schemathesis against aiops serve"
bash scripts/schemathesis.sh
api_status=$?
echo "== VUS-PR / AUC-PR against TSB-AD's own code"
bash scripts/check_tsbad.sh
[ $? = 0 ] || api_status=1
echo "== Prometheus alert rules (promtool check rules, promtool test rules)"
promtool check rules deploy/prometheus/aiops-rules.yml &&
  (cd deploy/prometheus && promtool test rules aiops-rules.test.yml)
[ $? = 0 ] || api_status=1
echo "== Kubernetes overlays against the schemas (kubectl kustomize, kubernetes-validate)"
bash scripts/k8s_validate.sh
[ $? = 0 ] || api_status=1
echo "== KEDA's external scaler (gRPC) with a client generated from its proto"
bash scripts/keda_test.sh
[ $? = 0 ] || api_status=1
echo "== notebooks (headless, on a demo archive and the NAB evaluation made now)"
bash scripts/notebooks.sh
[ $? = 0 ] || api_status=1
echo "== the web console in chromium (selenium) against aiops demo"
bash scripts/browser.sh
[ $? = 0 ] || api_status=1
set -e
# One closing line for the whole run: the sum of every test binary's result.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
[ "$api_status" = 0 ] || echo "schemathesis, the TSB-AD check, the alert rules, the Kubernetes schemas, the KEDA scaler, the notebooks or the browser test: failures (see above)"
[ "$status" = 0 ] && exit "$api_status"
exit "$status"
