#!/usr/bin/env python3
"""Side by side on `timestamp,value` CSVs: our forecaster (`aiops eval forecast`) and
statsforecast's AutoETS, on the same rolling origins, horizons and error definitions, plus the
time each takes.

    pip install statsforecast
    python3 scripts/compare_autoets.py --data ../shared/data/nab/data/realKnownCause/nyc_taxi.csv \
        --data ../shared/data/nab/data/realTraffic [--origins 100] [--aiops target/release/aiops]

For every series: rows are ordered by time (the last row of a repeated timestamp wins, as in
`aiops eval forecast`); the first 20 % are warm-up; about `--origins` origins are spread evenly
over the rest. At each origin AutoETS is fitted on the history up to it (at most `--max-train`
samples, season length = samples per day) and forecasts the next hour; ours learns every sample
online and forecasts at the same origins. MASE uses the same scale for both (mean absolute
one-day seasonal difference over the series); seasonal naive is computed here too and must
agree with the number `aiops eval forecast` prints (a check that both sides score the same
origins). Prints one JSON document.
"""
import argparse
import bisect
import csv
import json
import os
import subprocess
import sys
import time
import warnings
from datetime import datetime, timezone

DAY_MS = 86_400_000


def read(path):
    rows = {}
    with open(path) as f:
        for r in csv.DictReader(f):
            t = datetime.fromisoformat(r["timestamp"].strip()).replace(tzinfo=timezone.utc)
            rows[int(t.timestamp() * 1000)] = float(r["value"])
    times = sorted(rows)
    return times, [rows[t] for t in times]


def csvs(path):
    if os.path.isfile(path):
        return [path]
    out = []
    for d, _, fs in os.walk(path):
        out += [os.path.join(d, f) for f in fs if f.endswith(".csv")]
    return sorted(out)


def at_or_before(times, upto, t):
    k = bisect.bisect_right(times, t, 0, upto + 1)
    return k - 1 if k > 0 else None


def seasonal_naive(times, values, origin, target):
    days = max(times[target] - times[origin], 0) // DAY_MS + 1
    j = at_or_before(times, origin, times[target] - days * DAY_MS)
    return None if j is None else values[j]


def naive_scale(times, values):
    s, n = 0.0, 0
    for i in range(len(times)):
        j = at_or_before(times, i, times[i] - DAY_MS)
        if j is not None:
            s += abs(values[i] - values[j])
            n += 1
    return s / n


class Sums:
    def __init__(self):
        self.abs = self.smape = 0.0
        self.n = self.smape_n = 0

    def add(self, y, f):
        self.abs += abs(y - f)
        d = abs(y) + abs(f)
        if d > 0:
            self.smape += 200 * abs(y - f) / d
            self.smape_n += 1
        self.n += 1

    def score(self, scale):
        mae = self.abs / max(self.n, 1)
        return {"mase": mae / scale, "smape": self.smape / max(self.smape_n, 1), "mae": mae}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", action="append", required=True, help="a CSV or a folder of CSVs (repeatable)")
    ap.add_argument("--aiops", default=os.path.expanduser("~/.cache/aiops-target/release/aiops"))
    ap.add_argument("--origins", type=int, default=100, help="origins per series")
    ap.add_argument("--max-train", type=int, default=2000, help="AutoETS fits on at most this many recent samples")
    ap.add_argument("--warmup-share", type=float, default=0.2)
    args = ap.parse_args()

    import numpy as np
    from statsforecast.models import AutoETS  # imported late so --help works without it
    import statsforecast

    files = [f for d in args.data for f in csvs(d)]
    out = {"files": {}, "statsforecast": statsforecast.__version__}
    for path in files:
        times, values = read(path)
        n = len(values)
        steps = sorted(b - a for a, b in zip(times, times[1:]))
        step = steps[len(steps) // 2]
        horizon = max(3_600_000 // step, 1)
        season = max(round(DAY_MS / step), 1)
        warmup = int(n * args.warmup_share)
        stride = max((n - warmup - horizon) // args.origins, 1)
        ours = json.loads(subprocess.run(
            [args.aiops, "eval", "forecast", "--data", path, "--horizon", str(horizon),
             "--warmup-share", str(args.warmup_share), "--stride", str(stride)],
            capture_output=True, text=True, check=True).stdout)

        scale = naive_scale(times, values)
        ets, naive = Sums(), Sums()
        ets_secs, origins = 0.0, 0
        for i in range(max(warmup, 1) - 1, n, stride):
            if i + 1 < max(warmup, 1) or i + horizon >= n:
                continue
            nf = [seasonal_naive(times, values, i, i + k) for k in range(1, horizon + 1)]
            if any(v is None for v in nf):
                continue
            train = np.asarray(values[max(0, i + 1 - args.max_train): i + 1], dtype=float)
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = AutoETS(season_length=season).fit(train)
                fc = model.predict(h=horizon)["mean"]
            ets_secs += time.perf_counter() - t0
            origins += 1
            for k in range(horizon):
                y = values[i + k + 1]
                ets.add(y, float(fc[k]))
                naive.add(y, nf[k])
        o = ours["ours"]
        entry = {
            "rows": n, "step_secs": step / 1000, "horizon": horizon, "season_length": season,
            "origins": origins, "ours_origins": ours["origins"],
            "ours": {"mase": o["mase"], "smape": o["smape"], "coverage_p90": o["coverage_p90"],
                     "seconds": ours["seconds"], "season": ours["season"]},
            "autoets": dict(ets.score(scale), seconds=ets_secs),
            "seasonal_naive": naive.score(scale),
            "seasonal_naive_by_aiops": ours["seasonal_naive"]["mase"],
        }
        entry["speedup"] = ets_secs / max(ours["seconds"], 1e-9)
        out["files"][os.path.relpath(path)] = entry
        print(f"{os.path.basename(path)}: ours {o['mase']:.3f}, AutoETS {entry['autoets']['mase']:.3f}, "
              f"speed-up {entry['speedup']:.0f}x", file=sys.stderr)

    es = out["files"].values()
    mean = lambda f: sum(f(e) for e in es) / len(es)
    out["mean_mase"] = {"ours": mean(lambda e: e["ours"]["mase"]),
                        "autoets": mean(lambda e: e["autoets"]["mase"]),
                        "seasonal_naive": mean(lambda e: e["seasonal_naive"]["mase"])}
    out["total_seconds"] = {"ours": sum(e["ours"]["seconds"] for e in es),
                            "autoets": sum(e["autoets"]["seconds"] for e in es)}
    out["speedup"] = out["total_seconds"]["autoets"] / max(out["total_seconds"]["ours"], 1e-9)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
