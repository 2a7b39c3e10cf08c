"""A generated NAB-layout corpus of traffic-like series with injected anomalies.

The shared NAB files hold no counts of requests or tweets and no short hourly series; this
writes such series, with anomalies of known kinds, so that `aiops eval nab --data DIR` shows
how the detector does on them. Generated data, not evaluation data: use it to check a change
against kinds of series the corpus lacks, never to choose parameters.

    python scripts/synthetic_nab.py --out /tmp/syn --seed 7
    aiops eval nab --data /tmp/syn

Ten 5-minute count series (55 days, a daily cycle of ±60 % around 3 to 1,000 a sample,
gamma-Poisson noise) with two anomalies each — a quarter hour at 6×, two hours at 2.5×, a day
at 0.3× — and ten hourly series (1,600 hours, 3 % of hours missing, log-normal noise) with a
spike of 4× for two hours or a day at 2.2×. Windows follow NAB's rule: a tenth of the file
shared among its anomalies, centred on each. Needs numpy (`bash scripts/tsbad_env.sh` makes a
venv with it).
"""

import argparse
import datetime
import json
import os
import shutil

import numpy as np


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="the folder to write (data/, labels/, config/)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--profiles", default="../shared/data/nab/config/profiles.json",
                    help="NAB's profiles.json, copied into config/")
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    for d in ("data/syn", "labels", "config"):
        os.makedirs(os.path.join(a.out, d), exist_ok=True)
    shutil.copy(a.profiles, os.path.join(a.out, "config", "profiles.json"))
    windows = {}

    def write(name, ts, values, anomalies):
        with open(os.path.join(a.out, "data", "syn", f"{name}.csv"), "w") as f:
            f.write("timestamp,value\n")
            for t, v in zip(ts, values):
                f.write(f"{t:%Y-%m-%d %H:%M:%S},{v}\n")
        n = len(ts)
        half = int(0.1 * n / len(anomalies) / 2)
        fmt = "%Y-%m-%d %H:%M:%S.000000"
        windows[f"syn/{name}.csv"] = [
            [f"{ts[max(0, s - half)]:{fmt}}", f"{ts[min(n - 1, s + half)]:{fmt}}"] for s in anomalies
        ]

    t0 = datetime.datetime(2015, 3, 1)
    for i in range(10):
        n = 15840
        ts = [t0 + datetime.timedelta(minutes=5 * k) for k in range(n)]
        hours = np.arange(n) * 5 / 60
        base = [3, 10, 40, 200, 1000][i % 5]
        mu = base * (1 + 0.6 * np.sin(2 * np.pi * hours / 24))
        starts = sorted(rng.choice(np.arange(int(0.25 * n), n - 300), 2, replace=False))
        for j, s in enumerate(starts):
            kind = (i % 3 + j) % 3
            if kind == 0:
                mu[s:s + 3] *= 6
            elif kind == 1:
                mu[s:s + 24] *= 2.5
            else:
                mu[s:s + 288] *= 0.3
        write(f"counts_{i}", ts, rng.poisson(rng.gamma(8.0, mu / 8.0)), starts)

        n = 1600
        hh = np.arange(n)
        keep = rng.random(n) > 0.03
        lv = np.log(0.5 + 0.2 * i) + 0.3 * np.sin(2 * np.pi * hh / 24) + 0.2 * rng.standard_normal(n)
        starts = sorted(rng.choice(np.arange(int(0.3 * n), n - 50), 2, replace=False))
        for j, s in enumerate(starts):
            if (i + j) % 2 == 0:
                lv[s:s + 2] += np.log(4)
            else:
                lv[s:s + 24] += np.log(2.2)
        idx = np.flatnonzero(keep)
        ts2 = [t0 + datetime.timedelta(hours=int(k)) for k in idx]
        write(f"hourly_{i}", ts2, np.round(np.exp(lv[keep]), 4),
              [int(np.searchsorted(idx, s)) for s in starts])
    with open(os.path.join(a.out, "labels", "combined_windows.json"), "w") as f:
        json.dump(windows, f, indent=1)


if __name__ == "__main__":
    main()
