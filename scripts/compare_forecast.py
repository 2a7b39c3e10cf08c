#!/usr/bin/env python3
"""Forecasters side by side on `timestamp,value` CSVs, on the same rolling origins: ours
(`aiops eval forecast --forecasts-out`), statsforecast's AutoETS, AutoTheta, AutoARIMA, MSTL and
SeasonalNaive, and Grafana's augurs (MSTL and AutoETS, in Rust: `peers/augurs`). Every method's
forecasts are scored by the same code here.

    python="$(scripts/forecast_env.sh)"
    "$python" scripts/compare_forecast.py --data ../shared/data/nab/data/realKnownCause/nyc_taxi.csv \\
        --data ../shared/data/nab/data/realTraffic [--origins 30] [--json OUT]

Protocol, per series: rows ordered by time (a repeated timestamp keeps its last row, as in
`aiops eval forecast`); the first `--warmup-share` of the rows are warm-up; about `--origins`
origins are spread evenly over the rest (`aiops eval forecast --stride`), those where seasonal
naive has a day of history and the horizon is inside the series. The horizon is one hour of
samples. At every origin each peer is fitted on the history up to it (at most `--max-train`
samples; season length = samples per day, MSTL adds the week when two weeks fit) and forecasts
the horizon with 80 % and 98 % intervals (their upper ends are its p90 and p99; its point is its
p50); ours learns every sample online and forecasts at the same origins.

Scores, each over all origins × steps of a file:
* MASE: mean absolute error / the in-sample one-day seasonal naive error of the whole series
  (the scale `aiops eval forecast` uses; ours recomputed here must equal the number it prints);
* sMAPE (percent); WQL: mean over p50, p90, p99 of 2 Σ pinball / Σ |y| (GIFT-Eval's CRPS
  approximation); coverage of p90 (share of actuals at or below it); seconds (fits and
  forecasts; ours: learning every sample of the series and forecasting).
Summary, GIFT-Eval style: the geometric mean over files of each method's MASE and WQL relative to
statsforecast's SeasonalNaive, and per file ours relative to the best peer's MASE.

Budget: one statsforecast fit may take `--fit-budget` seconds (120); a model that runs past it on
a file is left out of that file altogether ("over budget" in the table, not scored on a subset of
origins), and the summary says how many files each model was scored on. (AutoARIMA with a
288-sample season does not finish a fit in 10 minutes.)
"""
import argparse
import bisect
import csv
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from datetime import datetime, timezone

DAY_MS = 86_400_000
HERE = os.path.dirname(os.path.abspath(__file__))
PEERS = ["SeasonalNaive", "AutoETS", "AutoTheta", "AutoARIMA", "MSTL"]
AUGURS = ["augurs_mstl", "augurs_ets"]


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


def naive_scale(times, values):
    """Mean |y_t - y_(last sample at least a day before)| over the series (MASE's scale)."""
    s, n = 0.0, 0
    for i in range(len(times)):
        k = bisect.bisect_right(times, times[i] - DAY_MS, 0, i + 1)
        if k > 0:
            s += abs(values[i] - values[k - 1])
            n += 1
    return s / n if n else float("nan")


def pinball(y, f, q):
    return q * (y - f) if y >= f else (1 - q) * (f - y)


class Score:
    """Errors of one method over the origins it forecast."""

    def __init__(self):
        self.abs = self.smape = self.pin = self.absy = 0.0
        self.n = self.smape_n = self.c90 = 0
        self.secs = 0.0
        self.origins = 0

    def add(self, y, point, p50, p90, p99):
        self.abs += abs(y - point)
        d = abs(y) + abs(point)
        if d > 0:
            self.smape += 200 * abs(y - point) / d
            self.smape_n += 1
        self.pin += pinball(y, p50, 0.5) + pinball(y, p90, 0.9) + pinball(y, p99, 0.99)
        self.absy += abs(y)
        self.c90 += y <= p90
        self.n += 1

    def result(self, scale):
        mae = self.abs / max(self.n, 1)
        return {
            "mase": mae / scale,
            "smape": self.smape / max(self.smape_n, 1),
            "wql": 2 * self.pin / 3 / self.absy if self.absy > 0 else float("nan"),
            "coverage_p90": self.c90 / max(self.n, 1),
            "seconds": self.secs,
            "origins": self.origins,
        }


class FitBudget(Exception):
    """A statsforecast fit ran past `--fit-budget`."""


def _over_budget(signum, frame):
    raise FitBudget()


signal.signal(signal.SIGALRM, _over_budget)


def finite(xs):
    return all(math.isfinite(x) for x in xs)


def statsforecast_models(season, week, train_len):
    from statsforecast.models import MSTL, AutoARIMA, AutoETS, AutoTheta, SeasonalNaive

    periods = [p for p in (season, week) if p > 1 and 2 * p <= train_len]
    return {
        "SeasonalNaive": SeasonalNaive(season_length=season),
        "AutoETS": AutoETS(season_length=season),
        "AutoTheta": AutoTheta(season_length=season),
        "AutoARIMA": AutoARIMA(season_length=season),
        "MSTL": MSTL(season_length=periods or [season], trend_forecaster=AutoETS(model="ZZN")),
    }


def augurs_binary(arg):
    if arg == "none":
        return None
    if arg != "auto":
        return arg
    target = os.environ.get("AUGURS_PEER_TARGET", os.path.expanduser("~/.cache/augurs-peer-target"))
    subprocess.run(["cargo", "build", "--release", "-q", "--manifest-path",
                    os.path.join(HERE, "..", "peers", "augurs", "Cargo.toml")],
                   check=True, env=dict(os.environ, CARGO_TARGET_DIR=target))
    return os.path.join(target, "release", "aiops-augurs-peer")


def geomean(xs):
    xs = [x for x in xs if x > 0 and math.isfinite(x)]
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", action="append", required=True, help="a CSV or a folder of CSVs (repeatable)")
    ap.add_argument("--aiops", default=os.path.expanduser("~/.cache/aiops-target/release/aiops"))
    ap.add_argument("--augurs", default="auto", help="the peer binary, auto (build peers/augurs) or none")
    ap.add_argument("--models", default=",".join(PEERS), help="statsforecast models to run")
    ap.add_argument("--origins", type=int, default=30, help="origins per series")
    ap.add_argument("--max-train", type=int, default=2000, help="peers fit on at most this many recent samples")
    ap.add_argument("--fit-budget", type=float, default=120.0,
                    help="seconds one statsforecast fit may take; a model over it on a file is left out of that file")
    ap.add_argument("--warmup-share", type=float, default=0.2)
    ap.add_argument("--json", help="also write every number here")
    args = ap.parse_args()

    import numpy as np
    import statsforecast

    models = [m for m in args.models.split(",") if m]
    unknown = set(models) - set(PEERS)
    if unknown:
        sys.exit(f"unknown --models {sorted(unknown)}; known: {PEERS}")
    augurs = augurs_binary(args.augurs)
    methods = ["aiops"] + models + (AUGURS if augurs else [])

    files = [f for d in args.data for f in csvs(d)]
    out = {"statsforecast": statsforecast.__version__, "origins_per_file": args.origins,
           "max_train": args.max_train, "files": {}}
    for path in files:
        times, values = read(path)
        n = len(values)
        steps = sorted(b - a for a, b in zip(times, times[1:]))
        step = steps[len(steps) // 2]
        horizon = max(3_600_000 // step, 1)
        season = max(round(DAY_MS / step), 1)
        week = 7 * season
        warmup = int(n * args.warmup_share)
        stride = max((n - warmup - horizon) // args.origins, 1)
        scale = naive_scale(times, values)
        scores = {m: Score() for m in methods}

        with tempfile.NamedTemporaryFile("r", suffix=".jsonl") as fo:
            ours = json.loads(subprocess.run(
                [args.aiops, "eval", "forecast", "--data", path, "--horizon", str(horizon),
                 "--warmup-share", str(args.warmup_share), "--stride", str(stride),
                 "--forecasts-out", fo.name],
                capture_output=True, text=True, check=True).stdout)
            made = [json.loads(line) for line in fo]
        origins = [m["origin"] for m in made]
        s = scores["aiops"]
        s.secs, s.origins = ours["seconds"], len(made)
        for m in made:
            for k in range(horizon):
                s.add(values[m["origin"] + k + 1], m["point"][k], m["p50"][k], m["p90"][k], m["p99"][k])

        over_budget = set()
        for i in origins:
            train = np.asarray(values[max(0, i + 1 - args.max_train): i + 1], dtype=float)
            ys = values[i + 1: i + 1 + horizon]
            for name, model in statsforecast_models(season, week, len(train)).items():
                if name not in models or name in over_budget:
                    continue
                t0 = time.perf_counter()
                signal.setitimer(signal.ITIMER_REAL, args.fit_budget)
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        fc = model.forecast(y=train, h=horizon, level=[80, 98])
                except FitBudget:
                    # Over budget: left out of this file altogether (not scored on a subset).
                    print(f"{os.path.basename(path)} origin {i}: {name} over the {args.fit_budget:g} s "
                          "fit budget; left out of this file", file=sys.stderr)
                    over_budget.add(name)
                    scores[name] = Score()
                    continue
                except Exception as e:  # a failed fit counts as missing, reported
                    print(f"{os.path.basename(path)} origin {i}: {name} failed: {e}", file=sys.stderr)
                    continue
                finally:
                    signal.setitimer(signal.ITIMER_REAL, 0)
                scores[name].secs += time.perf_counter() - t0
                pt, p90, p99 = fc["mean"], fc["hi-80"], fc["hi-98"]
                if not (finite(pt) and finite(p90) and finite(p99)):
                    continue
                scores[name].origins += 1
                for k, y in enumerate(ys):
                    scores[name].add(y, pt[k], pt[k], p90[k], p99[k])

        if augurs:
            res = subprocess.run(
                [augurs, "--data", path, "--horizon", str(horizon), "--origins",
                 ",".join(map(str, origins)), "--periods", f"{season},{week}",
                 "--max-train", str(args.max_train)],
                capture_output=True, text=True, check=True).stdout
            for line in res.splitlines():
                r = json.loads(line)
                if not (finite(r["point"]) and finite(r["p90"]) and finite(r["p99"])):
                    continue
                sc = scores[r["model"]]
                sc.secs += r["secs"]
                sc.origins += 1
                for k in range(horizon):
                    y = values[r["origin"] + k + 1]
                    sc.add(y, r["point"][k], r["point"][k], r["p90"][k], r["p99"][k])

        res = {m: scores[m].result(scale) for m in methods}
        # Ours recomputed here must be what aiops printed: both sides scored the same forecasts.
        if abs(res["aiops"]["mase"] - ours["ours"]["mase"]) > 1e-6 * max(1.0, ours["ours"]["mase"]):
            sys.exit(f"{path}: MASE recomputed {res['aiops']['mase']} != aiops' {ours['ours']['mase']}")
        for m in over_budget:
            res[m]["over_budget"] = True
        out["files"][os.path.basename(path)] = {
            "rows": n, "step_secs": step / 1000, "horizon": horizon, "season_length": season,
            "origins": len(origins), "methods": res,
            "seasonal_naive_by_aiops": ours["seasonal_naive"]["mase"],
        }
        print(f"{os.path.basename(path)}: " + ", ".join(
            f"{m} {r['mase']:.3f}" for m, r in res.items()), file=sys.stderr)

    summary = summarise(out["files"], methods, models + (AUGURS if augurs else []))
    out["summary"] = summary
    print(table(out["files"], methods, summary))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


def summarise(files, methods, peers):
    s = {}
    for m in methods:
        rel = [f["methods"][m]["mase"] / f["methods"]["SeasonalNaive"]["mase"] for f in files.values()
               if "SeasonalNaive" in f["methods"] and f["methods"][m]["origins"] > 0]
        relq = [f["methods"][m]["wql"] / f["methods"]["SeasonalNaive"]["wql"] for f in files.values()
                if "SeasonalNaive" in f["methods"] and f["methods"][m]["origins"] > 0]
        done = [f["methods"][m] for f in files.values() if f["methods"][m]["origins"] > 0]
        s[m] = {
            "geomean_relative_mase": geomean(rel),
            "geomean_relative_wql": geomean(relq),
            "files": len(done),
            "mean_mase": sum(r["mase"] for r in done) / max(len(done), 1),
            "mean_coverage_p90": sum(r["coverage_p90"] for r in done) / max(len(done), 1),
            "seconds": sum(f["methods"][m]["seconds"] for f in files.values()),
        }
    real_peers = [p for p in peers if p != "SeasonalNaive" and s[p]["files"] > 0
                  and math.isfinite(s[p]["geomean_relative_mase"])]
    if real_peers:
        best = min(real_peers, key=lambda p: s[p]["geomean_relative_mase"])
        s["best_peer"] = best
        s["aiops_vs_best_peer_per_file"] = {
            name: f["methods"]["aiops"]["mase"] / min(
                f["methods"][p]["mase"] for p in real_peers if f["methods"][p]["origins"] > 0)
            for name, f in files.items()}
        s["speedup_vs_fastest_statsforecast_peer"] = min(
            (s[p]["seconds"] for p in real_peers if p in PEERS), default=float("nan")) / max(s["aiops"]["seconds"], 1e-9)
    return s


def table(files, methods, s):
    lines = ["| file | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for name, f in files.items():
        r = f["methods"]
        best = min(r[m]["mase"] for m in methods if r[m]["origins"] > 0)
        cell = lambda m: ("over budget" if r[m].get("over_budget") else "—") if r[m]["origins"] == 0 else (
            f"**{r[m]['mase']:.3f}**" if r[m]["mase"] == best else f"{r[m]['mase']:.3f}")
        lines.append(f"| {name} | " + " | ".join(cell(m) for m in methods) + " |")
    lines.append("| geomean MASE / SeasonalNaive | " + " | ".join(f"{s[m]['geomean_relative_mase']:.3f}" for m in methods) + " |")
    lines.append("| geomean WQL / SeasonalNaive | " + " | ".join(f"{s[m]['geomean_relative_wql']:.3f}" for m in methods) + " |")
    lines.append("| mean p90 coverage | " + " | ".join(
        f"{s[m]['mean_coverage_p90']:.3f}" if s[m]["files"] else "—" for m in methods) + " |")
    lines.append("| seconds, all files | " + " | ".join(f"{s[m]['seconds']:.3g}" for m in methods) + " |")
    lines.append("| files scored | " + " | ".join(str(s[m]["files"]) for m in methods) + " |")
    if "best_peer" in s:
        worst = max(s["aiops_vs_best_peer_per_file"].items(), key=lambda kv: kv[1])
        lines.append("")
        lines.append(f"best peer by geomean relative MASE: {s['best_peer']}; ours / best peer per file: worst "
                     f"{worst[1]:.3f} ({worst[0]}); ours is {s['speedup_vs_fastest_statsforecast_peer']:.0f}x "
                     "faster than the fastest statsforecast peer")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
