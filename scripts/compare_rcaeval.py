#!/usr/bin/env python3
"""Ours next to RCAEval's metric-based root-cause methods on any folder of cases in our layout
(`<case>/data.csv`, `inject_time.txt`, `labels.json`), one table, same run.

    compare_rcaeval.py --cases DIR [--aiops BIN] [--methods baro,nsigma,circa,pc_pagerank,e_diagnosis]

Runs RCAEval 1.8.1's methods as its own `main.py` calls them: drop `*_latency-50` columns, ±inf
to NaN, forward-fill, fill 0; the normal window is the last 600 rows before the injection time
and the anomalous one the first 600 from it; `*_latency-90` renamed `*_latency`; then
`method(data, inject_time, dataset=…, anomalies=None, dk_select_useful=False, sli=…)`. The SLI
passed is label-free — the entry service's first metric (Sock Shop `front-end_…`, PetShop
`PetSite_latency-p90`) — never the root cause's column, as RCAEval's own harness can pick (a
hint from the answer). A method's ranking becomes a service ranking by first occurrence of each
column's service (the text before the first `_`; `<svc>-db` counts as `<svc>`, as RCAEval's
evaluator and `aiops eval rca` do). A method that raises is scored as a miss on that
case (RCAEval's wrapper would fall back to the unranked column order). CIRCA's RHT head ignores
the SLI passed and draws one at random (`graph_heads/rht.py`), so numpy is seeded per case. Ours
runs through
`aiops eval rca --cases DIR` (service-level; its calibration is not fitted here).

Prints per data set and fault type AC@1, AC@3, Avg@5 and seconds per case. Run in the venv of
scripts/rcaeval_env.sh (`pip install --no-deps rcaeval==1.8.1` plus pinned light dependencies;
RCAEval's e2e version probe is patched here, not in the package).
"""

import argparse
import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import time
import warnings
from collections import defaultdict

import numpy as np
import pandas as pd

warnings.filterwarnings("ignore")
import RCAEval.utility as _utility  # noqa: E402

# RCAEval's e2e/__init__ picks an import path by Python version that fails on 3.11.
_utility.is_py312 = lambda: True
import RCAEval.e2e as e2e  # noqa: E402

# RCD is not among them: RCAEval's rcd.py calls `SkeletonDiscovery.local_skeleton_discovery` with
# a function-style `chisq`, from the causal-learn 0.1.2.3 its authors patched (not on PyPI); the
# copy PyRCA vendors is the later API (a CIT object), so neither runs it unchanged.
METHODS = ["baro", "nsigma", "circa", "pc_pagerank", "e_diagnosis"]


def cases(root):
    for dirpath, _, names in os.walk(root):
        if "data.csv" in names:
            yield dirpath


def dataset_of(root, case):
    return os.path.relpath(case, root).split(os.sep)[0]


def service_of(column):
    """A column's service; `<svc>-db` counts as `<svc>`, as RCAEval's evaluator and ours do."""
    s = column.split("_", 1)[0]
    return s[: -len("-db")] if s.endswith("-db") else s


def prepare(case):
    df = pd.read_csv(os.path.join(case, "data.csv"))
    with open(os.path.join(case, "inject_time.txt")) as f:
        inject = int(float(f.read().strip()))
    with open(os.path.join(case, "labels.json")) as f:
        labels = json.load(f)
    df = df[[c for c in df.columns if not c.endswith("_latency-50")]]
    df = df.replace([np.inf, -np.inf], np.nan).ffill().fillna(0)
    before = df[df["time"] < inject].tail(600)
    after = df[df["time"] >= inject].head(600)
    df = pd.concat([before, after]).reset_index(drop=True)
    df = df.rename(columns={c: c[: -len("-90")] for c in df.columns if c.endswith("_latency-90")})
    entry = [c for c in df.columns if c.startswith(("front-end_", "PetSite_latency-p90", "PetSite_"))]
    return df, inject, labels, (entry[0] if entry else None)


def service_ranking(ranks):
    out = []
    for col in ranks:
        s = service_of(str(col))
        if s not in out:
            out.append(s)
    return out


def score(rankings):
    """AC@1, AC@3, Avg@5 over (ranking, answer) pairs."""
    def ac(k):
        return float(np.mean([ans in r[:k] for r, ans in rankings])) if rankings else float("nan")
    return ac(1), ac(3), float(np.mean([ac(k) for k in range(1, 6)])) if rankings else float("nan")


def ours(aiops, root):
    out = subprocess.run([aiops, "eval", "rca", "--cases", root], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", required=True)
    ap.add_argument("--aiops", default=shutil.which("aiops") or os.path.join(
        os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/aiops-target")), "release", "aiops"))
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--json", help="also write the table here")
    a = ap.parse_args()
    all_cases = sorted(cases(a.cases))
    prepared = {c: prepare(c) for c in all_cases}
    rows = []  # (dataset, fault, method, ac1, ac3, avg5, secs/case, cases, failures)

    mine = ours(a.aiops, a.cases)
    for ds, d in sorted(mine["datasets"].items()):
        s, spc = d["service"], d["secs_per_case"]
        rows.append((ds, "all", "aiops", s["ac1"], s["ac3"], s["avg5"], spc, d["cases"], 0))
        for fault, f in sorted(d["by_fault"].items()):
            s = f["service"]
            rows.append((ds, fault, "aiops", s["ac1"], s["ac3"], s["avg5"], spc, f["cases"], 0))

    for name in [m for m in a.methods.split(",") if m]:
        func = getattr(e2e, name, None)
        if func is None:
            print(f"{name}: not importable in this environment; skipped", file=sys.stderr)
            continue
        per = defaultdict(list)
        secs = defaultdict(float)
        fails = defaultdict(int)
        for case in all_cases:
            df, inject, labels, sli = prepared[case]
            ds = dataset_of(a.cases, case)
            t0 = time.perf_counter()
            try:
                # RCAEval's wrapper turns a crash into the unranked column order and says so on
                # stderr: that is a crash here too.
                # (CIRCA's RHT head draws its SLI at random, rht.py: seeded per case.)
                np.random.seed(0)
                said = io.StringIO()
                with contextlib.redirect_stderr(said):
                    r = func(df.copy(), inject, dataset=ds, anomalies=None, dk_select_useful=False, sli=sli)
                failed = [l for l in said.getvalue().splitlines() if " failed (" in l]
                if failed:
                    raise RuntimeError(failed[-1])
                ranking = service_ranking(r.get("ranks") or [])
            except Exception as ex:  # noqa: BLE001 - a crash is a miss
                fails[ds] += 1
                ranking = []
                print(f"{name} on {case}: {type(ex).__name__}: {ex}", file=sys.stderr)
            secs[ds] += time.perf_counter() - t0
            answer = service_of(labels["root_cause_service"] + "_")
            per[(ds, "all")].append((ranking, answer))
            per[(ds, labels.get("fault") or "?")].append((ranking, answer))
        for (ds, fault), pairs in sorted(per.items()):
            n_ds = len(per[(ds, "all")])
            ac1, ac3, avg5 = score(pairs)
            rows.append((ds, fault, name, ac1, ac3, avg5, secs[ds] / n_ds, len(pairs),
                         fails[ds] if fault == "all" else 0))
        print(f"{name}: done", file=sys.stderr)

    print(f"{len(all_cases)} cases ({a.cases}); service level; injection time given\n")
    print("| data set | faults | method | AC@1 | AC@3 | Avg@5 | s/case | cases | crashed |")
    print("|---|---|---|---|---|---|---|---|---|")
    order = {m: i for i, m in enumerate(["aiops"] + a.methods.split(","))}
    for r in sorted(rows, key=lambda r: (r[0], r[1] != "all", r[1], order.get(r[2], 99))):
        ds, fault, m, ac1, ac3, avg5, spc, n, failed = r
        print(f"| {ds} | {fault} | {m} | {ac1:.2f} | {ac3:.2f} | {avg5:.2f} | {spc:.4f} | {n} | {failed} |")
    if a.json:
        keys = ["dataset", "faults", "method", "ac1", "ac3", "avg5", "secs_per_case", "cases", "crashed"]
        with open(a.json, "w") as f:
            json.dump([dict(zip(keys, r)) for r in rows], f, indent=1)


if __name__ == "__main__":
    main()
