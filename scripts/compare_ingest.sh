#!/usr/bin/env bash
# Ingest side by side: the same pre-built remote_write bodies replayed with wrk to aiops,
# VictoriaMetrics (Debian victoria-metrics) and a Prometheus 2.42 receiver, one after another,
# on this machine. Prints, per receiver: samples/s accepted, write latency p50/p99, RSS at the
# end and at its peak, and disk bytes per accepted sample.
#
#   bash scripts/compare_ingest.sh [--series N] [--samples-per-series K] [--rounds R]
#                                  [--secs S] [--connections C] [--only aiops,vm,prometheus]
#                                  [--repeat N]
#
# --repeat N runs the receivers N times, interleaved (aiops, vm, prometheus, aiops, ...), on the
# same bodies, and prints each repetition's ratios and their median: on a shared machine one
# receiver's rate moves by 15 % from run to run, so one pair of runs says little.
#
# Installs wrk, victoria-metrics and prometheus from Debian when missing; builds aiops
# (release) when needed, or runs the binary at $AIOPS_BIN (another build to compare). Bodies:
# `aiops bench bodies` (the cardinality workload: counters, integer and float gauges of
# Kubernetes-like pods), enough rounds that a run does not wrap around (each receiver gets
# every sample once, in time order).
set -euo pipefail
cd "$(dirname "$0")/.."

series=100000 samples=10 rounds=0 secs=20 conns=8 only="" repeat=1
while [ $# -gt 0 ]; do
  case "$1" in
    --series) series=$2; shift 2 ;;
    --samples-per-series) samples=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --secs) secs=$2; shift 2 ;;
    --connections) conns=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    --repeat) repeat=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

wanted() { [ -z "$only" ] || [[ ",$only," == *",$1,"* ]]; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
need() {
  if ! command -v "$1" >/dev/null 2>&1; then
    echo "== installing $2 (Debian package)" >&2
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$2" >/dev/null
  fi
}
need wrk wrk
need victoria-metrics victoria-metrics
need prometheus prometheus

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/aiops-target}"
if [ -n "${AIOPS_BIN:-}" ]; then
  aiops=$AIOPS_BIN # another build to compare, e.g. the previous commit's
else
  cargo build --release --quiet --bin aiops
  aiops="$CARGO_TARGET_DIR/release/aiops"
fi

work=$(mktemp -d)
pid=""
cleanup() {
  [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# Enough bodies that a run at up to ~8 M samples/s does not wrap around.
per_body=$((2000 * samples))
if [ "$rounds" = 0 ]; then
  bodies_needed=$(( (8000000 * secs) / per_body + 1 ))
  per_round=$(( (series + 1999) / 2000 ))
  rounds=$(( (bodies_needed + per_round - 1) / per_round ))
fi
echo "== building bodies: $series series, $samples samples per series per body, $rounds rounds" >&2
"$aiops" bench bodies --out "$work/bodies" --series "$series" --samples-per-series "$samples" \
  --rounds "$rounds" >"$work/bodies.json"
ls "$work"/bodies/*.bin | sort >"$work/list"
echo "   $(wc -l <"$work/list") bodies, $(du -sh "$work/bodies" | cut -f1)" >&2

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rss_kb() { awk "/^$2:/ {print \$2}" "/proc/$1/status" 2>/dev/null || echo 0; }
wait_http() {
  for _ in $(seq 1 600); do
    if curl -fsS -o /dev/null "$1" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "receiver at $1 did not come up" >&2
  return 1
}

results=()
run() { # name url data_dir
  local name=$1 url=$2 data=$3
  local idle; idle=$(rss_kb "$pid" VmRSS)
  echo "== $name: wrk -t2 -c$conns -d${secs}s" >&2
  local out
  out=$(wrk -t2 -c"$conns" -d"${secs}s" --timeout 60s -s scripts/remote_write.lua "$url" -- "$work/list" 2 | tail -1)
  local rss hwm
  rss=$(rss_kb "$pid" VmRSS); hwm=$(rss_kb "$pid" VmHWM)
  echo "$out" >"$work/$name.wrk.json"
  echo "$name $idle $rss $hwm" >"$work/$name.mem"
}

measure() { # name disk_bytes
  python3 - "$work" "$1" "$2" "$per_body" "$rep" <<'EOF'
import json, sys
work, name, disk, per_body, rep = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
w = json.load(open(f"{work}/{name}.wrk.json"))
_, idle, rss, hwm = open(f"{work}/{name}.mem").read().split()
ok = w["requests"] - w["non_2xx_or_3xx"]
samples = ok * per_body
secs = w["duration_us"] / 1e6
print(json.dumps({
    "receiver": name,
    "repetition": rep,
    "samples_per_sec": round(samples / secs),
    "accepted_samples": samples,
    "rejected_requests": w["non_2xx_or_3xx"],
    "socket_errors": w["socket_errors"],
    "latency_ms": w["latency_ms"],
    "rss_bytes": int(rss) * 1024,
    "rss_peak_bytes": int(hwm) * 1024,
    "rss_idle_bytes": int(idle) * 1024,
    "disk_bytes": disk,
    "disk_bytes_per_sample": round(disk / max(samples, 1), 3),
}))
EOF
}

for rep in $(seq 1 "$repeat"); do
if wanted aiops; then
  p=$(port); d="$work/aiops"; rm -rf "$d"
  AIOPS_LOG=warn "$aiops" serve --listen "127.0.0.1:$p" --data-dir "$d" 2>"$work/aiops.log" &
  pid=$!
  wait_http "http://127.0.0.1:$p/readyz"
  run aiops "http://127.0.0.1:$p/api/v1/write" "$d"
  # Like VictoriaMetrics' flush: wait until the WAL is compacted to parts (up to 2 minutes),
  # then give background merges the same 10 s as the others.
  for _ in $(seq 1 1200); do
    segs=$(curl -fsS "http://127.0.0.1:$p/readyz" | python3 -c 'import json,sys; print(json.load(sys.stdin)["archive"]["wal_segments"])')
    [ "$segs" -le 1 ] && break
    sleep 0.1
  done
  sleep 10
  kill -TERM "$pid"; wait "$pid" || true; pid=""
  # The archive: parts, the catalog and the WAL left (detector checkpoints and incidents are
  # not sample storage).
  "$aiops" bench disk --data-dir "$d" >"$work/aiops.disk.json"
  disk=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["part_bytes"]+d["catalog_bytes"]+d["wal_bytes"])' "$work/aiops.disk.json")
  results+=("$(measure aiops "$disk")")
fi

if wanted vm; then
  p=$(port); d="$work/vm"; rm -rf "$d"
  victoria-metrics -storageDataPath="$d" -httpListenAddr="127.0.0.1:$p" -loggerLevel=ERROR \
    >"$work/vm.log" 2>&1 &
  pid=$!
  wait_http "http://127.0.0.1:$p/health"
  run victoriametrics "http://127.0.0.1:$p/api/v1/write" "$d"
  curl -fsS "http://127.0.0.1:$p/internal/force_flush" >/dev/null || true
  sleep 10
  kill -TERM "$pid"; wait "$pid" || true; pid=""
  results+=("$(measure victoriametrics "$(du -sb "$d" | cut -f1)")")
fi

if wanted prometheus; then
  p=$(port); d="$work/prom"; rm -rf "$d"
  cat >"$work/prometheus.yml" <<'EOF'
global: {}
storage:
  tsdb:
    out_of_order_time_window: 1d
EOF
  prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$d" \
    --web.listen-address="127.0.0.1:$p" --web.enable-remote-write-receiver \
    --web.enable-admin-api --log.level=error >"$work/prom.log" 2>&1 &
  pid=$!
  wait_http "http://127.0.0.1:$p/-/ready"
  run prometheus "http://127.0.0.1:$p/api/v1/write" "$d"
  sleep 10
  # The head is in memory and its WAL uncompressed: a snapshot writes it as a block, which is
  # what Prometheus keeps on disk in the end.
  snap=$(curl -fsS -XPOST "http://127.0.0.1:$p/api/v1/admin/tsdb/snapshot" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["name"])')
  kill -TERM "$pid"; wait "$pid" || true; pid=""
  results+=("$(measure prometheus "$(du -sb "$d/snapshots/$snap" | cut -f1)")")
fi
done

python3 - "${results[@]}" <<'EOF'
import json, statistics, sys
rows = [json.loads(r) for r in sys.argv[1:]]
print("| run | receiver | samples/s | p50 ms | p99 ms | RSS end | RSS peak | disk B/sample |")
print("|---:|---|---:|---:|---:|---:|---:|---:|")
for r in rows:
    print(f"| {r['repetition']} | {r['receiver']} | {r['samples_per_sec']:,} | {r['latency_ms']['p50']} | {r['latency_ms']['p99']} | "
          f"{r['rss_bytes'] >> 20} MB | {r['rss_peak_bytes'] >> 20} MB | {r['disk_bytes_per_sample']} |")
ratios = []
for rep in sorted({r["repetition"] for r in rows}):
    by = {r["receiver"]: r for r in rows if r["repetition"] == rep}
    if "aiops" in by and "victoriametrics" in by:
        a, v = by["aiops"], by["victoriametrics"]
        ratios.append({
            "repetition": rep,
            "aiops_over_vm_samples_per_sec": round(a["samples_per_sec"] / max(v["samples_per_sec"], 1), 3),
            "aiops_over_vm_rss": round(a["rss_bytes"] / max(v["rss_bytes"], 1), 3),
            "aiops_over_vm_rss_peak": round(a["rss_peak_bytes"] / max(v["rss_peak_bytes"], 1), 3),
            "aiops_over_vm_disk_per_sample": round(a["disk_bytes_per_sample"] / max(v["disk_bytes_per_sample"], 1e-9), 3),
        })
for r in ratios:
    print(json.dumps(r))
if len(ratios) > 1:
    keys = [k for k in ratios[0] if k != "repetition"]
    print(json.dumps({"median_of": len(ratios), **{k: statistics.median(r[k] for r in ratios) for k in keys}}))
print(json.dumps(rows))
EOF
