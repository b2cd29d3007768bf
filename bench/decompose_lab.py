"""The sub-task decomposition as a prediction, on the lab, where the composite's truth is known.

    python bench/decompose_lab.py [--work runs/bench-decompose-lab] [--out bench/DECOMPOSE_LAB.md]

Trains (or reuses: ``$EMERGENCE_LAB_CACHE``) the default lab family, evaluates every checkpoint
zero-shot on ``walk`` (six independent steps, each scored as sub-task ``step_j``; exact match is
the composite), then for every cutoff between two consecutive lab sizes fits ``k_eff`` on the
checkpoints of the models below it and predicts the larger models' exact match from their step
accuracies (``emergence.analysis.decompose.backtest_composite``): (mean step accuracy)^k_eff and
the product rule, against the measured exact match. The cutoffs are all of them, fixed before
the run; none is picked.
"""

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

from emergence import schema as S  # noqa: E402
from emergence.analysis.decompose import backtest_composite  # noqa: E402
from emergence.export import tidy_table  # noqa: E402
from emergence.lab.training import LabConfig, family_dir, train_family  # noqa: E402
from emergence.run.config import ExecutorOptions, RunConfig  # noqa: E402
from emergence.run.runner import run  # noqa: E402

TASK = "walk"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", default="runs/bench-decompose-lab", help="the run directory (reused: reruns resume)")
    p.add_argument("--limit", type=int, default=25, help="evaluation examples (as bench/finetune_law.py)")
    p.add_argument("--out", help="write the markdown here")
    args = p.parse_args(argv)
    start = time.perf_counter()
    lab = LabConfig()
    family = train_family(lab, family_dir(lab), progress=False, log=lambda *a: None)
    run(RunConfig(family=str(family), tasks=(TASK,), out=args.work, limit=args.limit, num_fewshot=0,
                  executor=ExecutorOptions(kind="pool", workers=2)), progress=False)
    df = tidy_table(args.work)
    df = df[df[S.TASK] == TASK]
    sizes = np.sort(df[S.PARAMS].unique())
    rows = []
    for lo, hi in zip(sizes[1:-1], sizes[2:]):     # at least two sizes fitted, one held out
        cutoff = float(np.sqrt(lo * hi))
        r = backtest_composite(df, cutoff).iloc[0].to_dict()
        fitted = df[(df[S.PARAMS] < cutoff) & (df[S.SUBTASK] == "") & (df[S.METRIC] == "exact_match")]
        rows.append({**r, "cutoff": cutoff, "fitted_max": float(fitted[S.VALUE].max())})
    text = _report(args, df, rows, time.perf_counter() - start)
    if args.out:
        Path(args.out).write_text(text)
    print(text)
    return 0


def _report(args, df, rows, seconds) -> str:
    finals = df[(df[S.SUBTASK] == "") & (df[S.METRIC] == "exact_match")]
    best = finals.groupby(S.PARAMS)[S.VALUE].max()
    lines = ["# Sub-task decomposition as a prediction, on the lab", "",
             f"`python bench/decompose_lab.py{' --out ' + args.out if args.out else ''}` ({seconds:.0f} s with the "
             f"lab family cached). Task `{TASK}`, zero-shot, {args.limit} examples per checkpoint; "
             f"{df[S.MODEL].nunique()} models, {df[S.CHECKPOINT].nunique()} checkpoints.", "",
             "Exact match of each size (best checkpoint): " + ", ".join(f"{int(n):,}: {v:.2f}" for n, v in best.items())
             + ".", "",
             "Per cutoff: `k_eff` fitted on the checkpoints of the smaller models, then the larger models' exact "
             "match predicted from their step accuracies, (mean step accuracy)^k_eff, beside the product of the "
             "step accuracies (independent steps, k = 6); mean and max absolute error over the held-out "
             "checkpoints.", "",
             "| cutoff (params) | fitted checkpoints (their best exact match) | k_eff (fitted) | k_eff (all) "
             "| held-out checkpoints | MAE k_eff | MAE product rule | max error k_eff |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if r.get("status") != "ok":
            lines.append(f"| {r['cutoff']:,.0f} | | | | | {r.get('reason', '')} | | |")
            continue
        lines.append(f"| {r['cutoff']:,.0f} | {int(r['n_train'])} ({r['fitted_max']:.2f}) | {r['k_eff_small']:.2f} | "
                     f"{r['k_eff_all']:.2f} | {int(r['n_heldout'])} | {r['mae_k_eff']:.3f} | "
                     f"{r['mae_independent']:.3f} | {r['max_error_k_eff']:.3f} |")
    ok = [r for r in rows if r.get("status") == "ok"]
    floor = [r for r in ok if not r["k_eff_identified"]]
    off = [r for r in ok if r["k_eff_identified"]]
    if floor:
        lines += ["", f"At {len(floor)} cutoff(s) every fitted checkpoint's exact match is 0: the composite says "
                  "nothing about k there, so `k_eff` is not identified (the fit ends at "
                  f"{', '.join(format(r['k_eff_small'], '.1f') for r in floor)}); the product rule, "
                  "which needs no fit, "
                  f"errs by {_span(floor, 'mae_independent')} against {_span(floor, 'mae_k_eff')} for `k_eff`."]
    if off:
        wins = sum(r["mae_k_eff"] < r["mae_independent"] for r in off)
        lines += ["", f"Where the fitted models' exact match has left the floor ({len(off)} cutoff(s)), `k_eff` "
                  f"({_span(off, 'k_eff_small', 2)}) errs by {_span(off, 'mae_k_eff')} against "
                  f"{_span(off, 'mae_independent')} for the product rule, smaller at {wins} of {len(off)}."]
    return "\n".join(lines) + "\n"


def _span(rows, key, digits=3) -> str:
    values = [r[key] for r in rows]
    lo, hi = min(values), max(values)
    return f"{lo:.{digits}f}" if lo == hi else f"{lo:.{digits}f}-{hi:.{digits}f}"


if __name__ == "__main__":
    raise SystemExit(main())
