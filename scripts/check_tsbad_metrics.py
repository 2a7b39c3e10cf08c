#!/usr/bin/env python3
"""Checks the VUS-PR and AUC-PR that `aiops eval nab` prints against TSB-AD's own code.

    check_tsbad_metrics.py --data NAB_DIR --results RESULTS_DIR --report REPORT.json [--tol 1e-3]

RESULTS_DIR holds NAB results files (`<category>/<detector>_<file>.csv`; the ranking metrics
read column `rank_score`, or `anomaly_score` when there is none); REPORT.json is what `aiops eval nab` printed for them (its `ranking` per file).
For every file with a window the labels are 1 inside NAB's windows, the buffer is
`find_length_rank(values, rank=1)` and the metrics are TSB-AD's `generate_curve(..., 'opt', 250)`
and `metric_PR` — the calls its `get_metrics` makes. Exits 1 when any differs by more than the
tolerance (or the sliding window differs at all).

Run with the venv of scripts/tsbad_env.sh (TSB-AD 1.5 and its pinned dependencies).
"""

import argparse
import csv
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "tsbad_stub"))
from TSB_AD.evaluation.basic_metrics import basic_metricor, generate_curve  # noqa: E402
from TSB_AD.utils.slidingWindows import find_length_rank  # noqa: E402


def read_column(path, name, fallback=None):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if rows and name not in rows[0] and fallback:
        name = fallback
    return [row[name] for row in rows]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--results", required=True)
    ap.add_argument("--report", required=True)
    ap.add_argument("--tol", type=float, default=1e-3)
    a = ap.parse_args()
    report = json.load(open(a.report))
    detector = report["detector"]
    worst = 0.0
    failures = []
    for name, ours in sorted(report["ranking"].items()):
        category, base = name.split("/", 1)
        values = np.array([float(v) for v in read_column(os.path.join(a.data, "data", name), "value")])
        res = os.path.join(a.results, category, f"{detector}_{base}")
        scores = np.array([float(v) for v in read_column(res, "rank_score", "anomaly_score")])
        labels = np.array([int(v) for v in read_column(res, "label")])
        sw = find_length_rank(values.reshape(-1, 1), rank=1)
        auc_pr = basic_metricor().metric_PR(labels, scores)
        vus_pr = generate_curve(labels.astype(int), scores, sw, "opt", 250)[7]
        d_vus = abs(vus_pr - ours["VUS-PR"])
        d_auc = abs(auc_pr - ours["AUC-PR"])
        worst = max(worst, d_vus, d_auc)
        line = (f"{name}: sw {sw}/{ours['sliding_window']} VUS-PR {vus_pr:.6f}/{ours['VUS-PR']:.6f}"
                f" AUC-PR {auc_pr:.6f}/{ours['AUC-PR']:.6f}")
        print(line)
        if sw != ours["sliding_window"] or d_vus > a.tol or d_auc > a.tol:
            failures.append(line)
    print(f"{len(report['ranking'])} files, largest difference {worst:.2e} (tolerance {a.tol})")
    if failures:
        print("MISMATCH:\n" + "\n".join(failures), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
