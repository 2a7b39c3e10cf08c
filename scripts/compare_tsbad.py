#!/usr/bin/env python3
"""Ours next to TSB-AD's detectors on any NAB-layout folder, one table, same run.

    compare_tsbad.py --data NAB_DIR [--aiops BIN] [--out DIR] [--peers POLY,Sub_PCA,...]
                     [--ours-json FILE] [--json FILE]

Runs TSB-AD 1.5's POLY, Sub-PCA, SR, IForest and Series2Graph as its own runner does
(`model_wrapper.run_<DET>(values[:, None], **Optimal_Uni_algo_HP_dict[DET])`, seed 2024, the
window from `find_length_rank(values, rank=1)`, IForest with its fixed 100), min–max scales each
file's scores to [0, 1], writes NAB results files, and scores every detector with
`aiops eval nab --results` (the NAB scorer and TSB-AD's VUS-PR/AUC-PR as `aiops` computes them;
`scripts/check_tsbad_metrics.py` checks those against the package). Ours runs through
`aiops eval nab --cross-validate category`: the table shows its held-out numbers (every choice
made on the other categories) and, for reference, the in-sample ones.

`--ours-json` takes an `aiops eval nab --cross-validate category` output made already (ours is
then not run again, and its speed is not measured); `--json` also writes the table, with each
detector's per-file VUS-PR and AUC-PR (notebooks/02-detection.ipynb draws it).

A peer that raises or returns non-finite scores on a file (e.g. a constant series) scores 0 there
(no alarm, no ranking): the table lists those files. No torch: `tsbad_stub/` stands in for the
`torch.nn` import of TSB-AD's utility module. Run with the venv of scripts/tsbad_env.sh.
"""

import argparse
import csv
import json
import os
import random
import shutil
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "tsbad_stub"))
from TSB_AD import model_wrapper  # noqa: E402
from TSB_AD.HP_list import Optimal_Uni_algo_HP_dict  # noqa: E402

PEERS = ["POLY", "Sub_PCA", "SR", "IForest", "Series2Graph"]


def nab_files(data_dir):
    root = os.path.join(data_dir, "data")
    for dirpath, _, names in os.walk(root):
        for n in sorted(names):
            if n.endswith(".csv"):
                yield os.path.relpath(os.path.join(dirpath, n), root)


def read_csv(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [r["timestamp"] for r in rows], np.array([float(r["value"]) for r in rows])


def run_peer(name, values):
    np.random.seed(2024)
    random.seed(2024)
    data = values.reshape(-1, 1).astype(float)
    hp = dict(Optimal_Uni_algo_HP_dict.get(name, {}))
    score = np.asarray(getattr(model_wrapper, f"run_{name}")(data, **hp), dtype=float).ravel()
    if len(score) != len(values) or not np.all(np.isfinite(score)):
        raise ValueError(f"{len(score)} scores for {len(values)} rows, finite: {np.isfinite(score).all()}")
    lo, hi = score.min(), score.max()
    return (score - lo) / (hi - lo) if hi > lo else np.zeros_like(score)


def aiops_eval(aiops, args):
    out = subprocess.run([aiops, "eval", "nab", *args], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--aiops", default=shutil.which("aiops") or os.path.join(
        os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/aiops-target")), "release", "aiops"))
    ap.add_argument("--out", default="tsbad-compare")
    ap.add_argument("--peers", default=",".join(PEERS))
    ap.add_argument("--ours-json", help="an `aiops eval nab --cross-validate category` output to use")
    ap.add_argument("--json", help="also write the table (and per-file ranking metrics) here")
    a = ap.parse_args()
    files = list(nab_files(a.data))
    rows = sum(len(read_csv(os.path.join(a.data, "data", f))[0]) for f in files)
    table = []

    per_file = {}
    if a.ours_json:
        with open(a.ours_json) as f:
            ours = json.load(f)
        insample_speed = None
    else:
        ours = aiops_eval(a.aiops, ["--data", a.data, "--out", a.out, "--cross-validate", "category"])
    cv = ours["cross_validated"]
    table.append(("aiops (held-out)", "yes", cv["nab"]["standard"], cv["nab"]["reward_low_FP_rate"],
                  cv["nab"]["reward_low_FN_rate"], cv["VUS-PR"], cv["AUC-PR"], None, []))
    if not a.ours_json:
        # The cross-validation runs the detector once per grid point: time one plain run instead.
        started = time.perf_counter()
        ours = aiops_eval(a.aiops, ["--data", a.data, "--out", a.out])
        insample_speed = rows / (time.perf_counter() - started)
    table.append(("aiops (in-sample)", "yes", ours["standard"], ours["reward_low_FP_rate"],
                  ours["reward_low_FN_rate"], ours["VUS-PR"], ours["AUC-PR"], insample_speed, []))
    per_file["aiops (in-sample)"] = ours["ranking"]

    for peer in [p for p in a.peers.split(",") if p]:
        failed = []
        elapsed = 0.0
        for f in files:
            ts, values = read_csv(os.path.join(a.data, "data", f))
            t0 = time.perf_counter()
            try:
                score = run_peer(peer, values)
            except Exception as e:  # noqa: BLE001 - a peer failing on a file scores 0 there
                failed.append(f"{f} ({type(e).__name__})")
                score = np.zeros(len(values))
            elapsed += time.perf_counter() - t0
            cat, base = f.split("/", 1)
            path = os.path.join(a.out, peer, cat, f"{peer}_{base}")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as out:
                out.write("timestamp,value,anomaly_score,label\n")
                for t, v, s in zip(ts, values, score):
                    out.write(f"{t},{v!r},{s!r},0\n")
        r = aiops_eval(a.aiops, ["--data", a.data, "--results", os.path.join(a.out, peer), "--detector", peer])
        table.append((peer, "no", r["standard"], r["reward_low_FP_rate"], r["reward_low_FN_rate"],
                      r["VUS-PR"], r["AUC-PR"], rows / elapsed, failed))
        per_file[peer] = r["ranking"]
        print(f"{peer}: done in {elapsed:.0f} s", file=sys.stderr)

    print(f"{len(files)} files, {rows} rows ({a.data})\n")
    print("| detector | online | NAB standard | low FP | low FN | VUS-PR | AUC-PR | points/s |")
    print("|---|---|---|---|---|---|---|---|")
    for name, online, std, lfp, lfn, vus, aucpr, pps, _ in table:
        speed = "–" if pps is None else f"{pps:,.0f}"
        print(f"| {name} | {online} | {std:.1f} | {lfp:.1f} | {lfn:.1f} | {vus:.3f} | {aucpr:.3f} | {speed} |")
    for name, *_, failed in table:
        if failed:
            print(f"\n{name} scored 0 on: {', '.join(failed)}")
    if a.json:
        keys = ["detector", "online", "standard", "reward_low_FP_rate", "reward_low_FN_rate",
                "VUS-PR", "AUC-PR", "points_per_sec", "failed"]
        with open(a.json, "w") as f:
            json.dump({"files": len(files), "rows": rows,
                       "detectors": [dict(zip(keys, row)) for row in table],
                       "per_file": per_file}, f, indent=1)


if __name__ == "__main__":
    main()
