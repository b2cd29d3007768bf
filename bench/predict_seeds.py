"""How the OLMo-2 two-step prediction moves with the bootstrap seed and the number of bagged
step-1 refits, on the development target (OLMo-2 7B-4T) and the test target (13B-5T).

    python bench/predict_seeds.py [--reference DIR] [--seeds 5] [--n-boot 0,20,50,200] [--out FILE]

For each n_boot and seed: the mean absolute error (accuracy points) over the paper's eight tasks
per target (``predict.olmo_ladder_validation``), then mean +/- sd over seeds. The setting chosen
is the one with the lowest mean error on 7B-4T; 13B-5T is reported beside it, not used to choose.
Writes Markdown to --out (default bench/PREDICT_SEEDS.md).
"""

import argparse
import time
from pathlib import Path

import pandas as pd

from emergence.analysis.predict import DEV_TARGET, OLMO_TARGETS, olmo_ladder_validation
from emergence.analysis.validate import default_reference_dir
from emergence.analysis.validate_predictions import read_olmo_ladder


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference", type=Path, default=None)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--n-boot", default="0,20,50,200")
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("PREDICT_SEEDS.md"))
    args = ap.parse_args(argv)
    ref = args.reference or default_reference_dir()
    df = read_olmo_ladder(ref)
    rows = []
    for n_boot in (int(v) for v in args.n_boot.split(",")):
        for seed in range(args.seeds if n_boot else 1):
            start = time.perf_counter()
            t = olmo_ladder_validation(ref, df, n_boot=n_boot, seed=seed)
            took = time.perf_counter() - start
            for target, g in t.groupby("target"):
                rows.append({"n_boot": n_boot, "seed": seed, "target": target,
                             "mae": 100 * g["our_abs_err"].mean(), "seconds": took})
            print(rows[-2:], flush=True)
    table = pd.DataFrame(rows)
    summary = table.groupby(["n_boot", "target"]).agg(mean=("mae", "mean"), sd=("mae", "std"), seeds=("mae", "size"),
                                                      seconds=("seconds", "mean")).reset_index()
    lines = ["# OLMo-2 two-step prediction across seeds", "",
             f"`python bench/predict_seeds.py --seeds {args.seeds} --n-boot {args.n_boot}`: MAE over the paper's "
             "eight tasks, accuracy points, mean +/- sd over seeds (n_boot = 0 is deterministic).", "",
             "| n_boot | target | MAE mean | sd | seeds | seconds per call (both targets) |", "|---:|---|---:|---:|---:|---:|"]
    for r in summary.itertuples():
        sd = "" if pd.isna(r.sd) else f"{r.sd:.2f}"
        lines.append(f"| {r.n_boot} | {r.target} | {r.mean:.2f} | {sd} | {r.seeds} | {r.seconds:.1f} |")
    dev_label = OLMO_TARGETS[DEV_TARGET][0]
    dev = summary[summary["target"] == dev_label].sort_values("mean").iloc[0]
    lines += ["", f"Chosen on the development target {dev_label}: n_boot = {int(dev.n_boot)} (MAE {dev['mean']:.2f}).",
              "", "Per seed:", "", "```", table.to_string(index=False), "```", ""]
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
