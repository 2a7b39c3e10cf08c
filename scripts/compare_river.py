#!/usr/bin/env python3
"""Side by side on a NAB-layout corpus: our detector and river's HalfSpaceTrees (with a
MinMaxScaler), both scored by `aiops eval nab` (the same scorer), plus throughput.

    pip install river
    python3 scripts/compare_river.py --data ../shared/data/nab [--aiops target/release/aiops]

Prints one JSON document. River gets the same treatment as ours: a fresh model per file, one
parameter set, no labels, strictly online (score each point, then learn it).
"""
import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time


def run(cmd):
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{out.stderr}")
    return json.loads(out.stdout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True, help="corpus in the NAB layout")
    ap.add_argument("--aiops", default=os.path.expanduser("~/.cache/aiops-target/release/aiops"))
    ap.add_argument("--trees", type=int, default=25)
    ap.add_argument("--height", type=int, default=15)
    ap.add_argument("--window", type=int, default=250)
    args = ap.parse_args()

    from river import anomaly, compose, preprocessing  # noqa: imported late so --help works without river
    import river

    files = []
    for root, _, names in os.walk(os.path.join(args.data, "data")):
        for n in sorted(names):
            if n.endswith(".csv"):
                files.append(os.path.join(root, n))
    files.sort()

    out_dir = tempfile.mkdtemp(prefix="river-nab-")
    det = "riverHST"
    points = 0
    started = time.perf_counter()
    for path in files:
        rel = os.path.relpath(path, os.path.join(args.data, "data"))
        cat, base = os.path.split(rel)
        model = compose.Pipeline(
            preprocessing.MinMaxScaler(),
            anomaly.HalfSpaceTrees(n_trees=args.trees, height=args.height, window_size=args.window, seed=42),
        )
        rows = []
        with open(path) as f:
            for r in csv.DictReader(f):
                x = {"value": float(r["value"])}
                s = model.score_one(x)
                model.learn_one(x)
                rows.append((r["timestamp"], r["value"], min(max(s, 0.0), 1.0)))
        points += len(rows)
        os.makedirs(os.path.join(out_dir, det, cat), exist_ok=True)
        with open(os.path.join(out_dir, det, cat, f"{det}_{base}"), "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["timestamp", "value", "anomaly_score"])
            w.writerows(rows)
    river_secs = time.perf_counter() - started

    river_score = run([args.aiops, "eval", "nab", "--data", args.data, "--results", os.path.join(out_dir, det)])
    ours = run([args.aiops, "eval", "nab", "--data", args.data, "--out", os.path.join(out_dir, "ours")])
    bench = run([args.aiops, "bench", "detect"])

    keys = ["standard", "reward_low_FP_rate", "reward_low_FN_rate"]
    print(json.dumps({
        "corpus": {"files": len(files), "points": points, "windows": ours["windows"]},
        "aiops": {**{k: ours[k] for k in keys},
                  "nab_points_per_sec": ours["rows"] / ours["seconds"],
                  "bench_points_per_sec_one_core_100k_series": bench["aiops_points_per_sec_one_core"],
                  "state_bytes_per_series": bench["state_bytes_per_series"]},
        "river_half_space_trees": {**{k: river_score[k] for k in keys},
                                   "version": river.__version__,
                                   "params": {"n_trees": args.trees, "height": args.height, "window_size": args.window},
                                   "nab_points_per_sec": points / river_secs},
        "speedup_on_nab": (ours["rows"] / ours["seconds"]) / (points / river_secs),
    }, indent=2))
    shutil.rmtree(out_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
