"""Backtest of the emergence law (Snell et al. 2024) on the lab, where the truth is known.

    python bench/finetune_law.py [--cutoffs 25000,40000] [--amounts 0,32,128,512,2048] [--out FILE]

1. Trains (or reuses) the default lab family and evaluates every checkpoint on ``walk``, ``add_1d``
   and the held-out loss: the truth is ``walk`` exact match's onset on the loss axis over the
   whole family (eta) and the size at which the family's loss law reaches it (N_c).
2. Fine-tunes only the models below a cutoff in parameters (the first cutoff: those where walk
   has not emerged) on increasing amounts of each task's training examples
   (``emergence.lab.finetune``), fits the emergence law and extrapolates it to the few-shot limit
   D0 = 1 (the lab is evaluated zero-shot). A further cutoff repeats the fit with more sizes.
3. Scores the prediction against the truth (targets: eta within 0.05 nats, N_c within 2x, the
   interval covering the truth) and checks that the smooth control ``add_1d`` gets no onset.

Writes a markdown report (default: print it). ``--quick`` is the reduced version the tests run.
"""

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

from emergence import schema as S  # noqa: E402
from emergence.analysis.finetune_law import emergence_prediction, prediction_markdown  # noqa: E402
from emergence.analysis.scaling import critical_size, fit_size_law, loss_points  # noqa: E402
from emergence.analysis.verdicts import classify  # noqa: E402
from emergence.export import tidy_table  # noqa: E402
from emergence.families import Selection  # noqa: E402
from emergence.lab.finetune import AMOUNT as AMOUNT_COL, FinetuneConfig, finetune_run, finetune_table  # noqa: E402
from emergence.lab.training import LabConfig, family_dir, train_family  # noqa: E402
from emergence.run.config import ExecutorOptions, RunConfig  # noqa: E402
from emergence.run.runner import run  # noqa: E402

TASK, CONTROL, METRIC = "walk", "add_1d", "exact_match"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", default="runs/bench-finetune-law", help="run directories (reused: reruns resume)")
    p.add_argument("--cutoffs", default="25000,40000",
                   help="fit from the models with fewer parameters; the first is below walk's emergence, "
                        "the next ones add the sizes at its onset")
    p.add_argument("--amounts", default="0,32,128,512,2048")
    p.add_argument("--steps", default="110,200,363,488", help="checkpoints of each small size to fine-tune")
    p.add_argument("--limit", type=int, default=25, help="evaluation examples per task (walk has 50 in all: "
                                                         "the rest are the fine-tuning prompts)")
    p.add_argument("--lr", type=float, default=1e-2, help="the lab's peak pretraining rate")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="2 checkpoints per size, amounts 0,16,64,256")
    p.add_argument("--out", help="write the markdown here")
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.amounts = "200,488", "0,16,64,256"
    amounts = tuple(int(a) for a in args.amounts.split(","))
    work, clock = Path(args.work), {}

    start = time.perf_counter()
    lab = LabConfig()
    family = train_family(lab, family_dir(lab), progress=False, log=lambda *a: None)
    clock["train (or reuse) the lab"] = time.perf_counter() - start

    start = time.perf_counter()
    run(RunConfig(family=str(family), tasks=(TASK, CONTROL, "heldout_loss"), out=str(work / "base"),
                  limit=args.limit, executor=ExecutorOptions(kind="pool", workers=2)), progress=False)
    base = tidy_table(work / "base")
    clock["evaluate the whole family"] = time.perf_counter() - start

    cutoffs = [float(c) for c in args.cutoffs.split(",")]
    small_sizes = sorted(base.loc[base[S.PARAMS] < max(cutoffs), S.MODEL].unique())
    start = time.perf_counter()
    configs = [FinetuneConfig(family=str(family), task=task, out=str(work / f"ft-{task}"), amounts=amounts,
                              select=Selection(sizes=tuple(small_sizes), steps=args.steps), lr=args.lr,
                              epochs=args.epochs, limit=args.limit, device="cpu") for task in (TASK, CONTROL)]
    with ProcessPoolExecutor(2) as pool:     # the two tasks' fine-tuning on the two cores
        summaries = list(pool.map(_finetune, configs))
    clock["fine-tune and evaluate (2 tasks in parallel)"] = time.perf_counter() - start

    start = time.perf_counter()
    tables = {c.task: finetune_table(c.out) for c in configs}
    sections = []
    for cutoff in cutoffs:
        rows = {task: emergence_prediction(t[t[S.PARAMS] < cutoff], task=task, metric=METRIC, d0=1.0)
                for task, t in tables.items()}
        sections.append((cutoff, rows, _truth(base, cutoff), _shift(tables[TASK], cutoff)))
    clock["fit the laws"] = time.perf_counter() - start
    text = _report(args, summaries, sections, clock)
    if args.out:
        Path(args.out).write_text(text)
    print(text)
    return 0


def _finetune(config):
    import torch

    torch.set_num_threads(1)
    s = finetune_run(config, progress=False, log=lambda *a: None)
    return {"trained": s.trained, "reused": s.reused, "failed": len(s.failed), "evaluated": s.run.evaluated}


def _truth(base, cutoff) -> dict:
    """walk's measured onset: the threshold verdict on the loss axis over every checkpoint of every
    size, N_c where the whole family's size law reaches it, and the sizes whose final checkpoints
    straddle it; and the same verdict from the small models alone, without fine-tuning."""
    curve = base[(base[S.TASK] == TASK) & (base[S.SUBTASK] == "") & (base[S.METRIC] == METRIC)].dropna(subset=[S.LOSS])
    full = classify(curve, axis=S.LOSS)
    small = classify(curve[curve[S.PARAMS] < cutoff], axis=S.LOSS)
    finals = loss_points(base)
    law = fit_size_law(finals[S.PARAMS].to_numpy(float), finals[S.LOSS].to_numpy(float), n_boot=100, workers=1)
    out = {"label": full.label, "eta": full.evidence.eta, "eta_lo": full.evidence.eta_lo,
           "eta_hi": full.evidence.eta_hi, "small_label": small.label, "finals": finals}
    if full.evidence.eta is not None:
        out["nc"] = critical_size(full.evidence.eta, law).n_c
        above = finals.loc[finals[S.LOSS] > full.evidence.eta, S.PARAMS]
        below = finals.loc[finals[S.LOSS] <= full.evidence.eta, S.PARAMS]
        out["bracket"] = (above.max() if len(above) else np.nan, below.min() if len(below) else np.nan)
    return out


def _shift(table, cutoff):
    """Per amount, the best walk exact match and step accuracy among the fine-tuned sizes' final
    checkpoints, and their best accuracy on the first step and the mean of the later ones: how
    far fine-tuning moves the skill itself, and which part of it."""
    t = table[(table[S.TASK] == TASK) & (table[S.PARAMS] < cutoff)]
    t = t[t[S.STEP] == t.groupby(S.MODEL)[S.STEP].transform("max")]
    whole = t[t[S.SUBTASK] == ""].pivot_table(index=AMOUNT_COL, columns=S.METRIC, values=S.VALUE, aggfunc="max")
    steps = t[(t[S.METRIC] == "acc") & t[S.SUBTASK].str.startswith("step_")]
    first = steps[steps[S.SUBTASK] == "step_1"].groupby(AMOUNT_COL)[S.VALUE].max().rename("step_1")
    later = (steps[steps[S.SUBTASK] != "step_1"].groupby([AMOUNT_COL, S.MODEL])[S.VALUE].mean()
             .groupby(AMOUNT_COL).max().rename("later"))
    largest = t[t[S.PARAMS] == t[S.PARAMS].max()].drop_duplicates(S.CHECKPOINT).set_index(AMOUNT_COL)["ft_loss"]
    return whole[["exact_match", "step_acc"]].join(first).join(later).join(largest.rename("ft_loss"))


def _report(args, summaries, sections, clock) -> str:
    lines = ["# Emergence law backtest on the lab", "",
             f"`python bench/finetune_law.py {' '.join(sys.argv[1:])}`".replace(" `", "`"), "",
             f"Checkpoints fine-tuned: steps {args.steps} of each size below the cutoff; amounts {args.amounts}; "
             f"lr {args.lr:g}, {args.epochs} epochs; evaluation limit {args.limit} (walk has 50 questions: the "
             "other 25 are the fine-tuning prompts); D0 = 1 (zero-shot).", ""]
    for k, (cutoff, rows, truth, shift) in enumerate(sections):
        lines += _section(cutoff, rows, truth, shift, first=k == 0)
    lines += ["## Work and time (2 shared cores)", "", "| phase | wall s |", "|---|---|"]
    lines += [f"| {k} | {v:.0f} |" for k, v in clock.items()]
    lines += [f"| **total** | **{sum(clock.values()):.0f}** |", "",
              "Models fine-tuned (walk, add_1d): " + "; ".join(
                  f"{s['trained']} trained, {s['reused']} reused, {s['failed']} failed, {s['evaluated']} cells evaluated"
                  for s in summaries), ""]
    return "\n".join(lines)


def _section(cutoff, rows, truth, shift, first) -> list:
    walk, control = rows[TASK], rows[CONTROL]
    kind = "below walk's emergence" if first else "adds the sizes at walk's onset: not a pre-emergence prediction"
    lines = [f"## Fit from the models below {cutoff:,.0f} parameters ({kind})", ""]
    if first:
        lines += ["### Truth (whole family, without fine-tuning)", ""]
        if truth["eta"] is None:
            lines.append(f"walk exact match on the loss axis: **{truth['label']}** (no onset measured).")
        else:
            lo, hi = truth["bracket"]
            lines.append(f"walk exact match on the loss axis: **{truth['label']}**, eta = {truth['eta']:.3f} nats "
                         f"[{truth['eta_lo']:.3f}, {truth['eta_hi']:.3f}]; N_c = {truth['nc']:.3g} parameters (the "
                         f"family's size law at eta); final checkpoints cross eta between {lo:,.0f} and {hi:,.0f} "
                         "parameters.")
        lines += ["", "| model | params | final held-out loss |", "|---|---|---|"]
        lines += [f"| {r[S.MODEL]} | {int(r[S.PARAMS]):,} | {r[S.LOSS]:.3f} |"
                  for _, r in truth["finals"].sort_values(S.PARAMS).iterrows()]
        lines.append("")
    lines += [f"These sizes' own zero-shot walk curve, without fine-tuning: **{truth['small_label']}**.", "",
              "Best walk scores of their final checkpoints after fine-tuning on D examples:", "",
              "| D | exact match | step accuracy | first step | steps 2-6 (mean) | held-out loss of the largest |",
              "|---|---|---|---|---|---|"]
    lines += [f"| {d} | {r['exact_match']:.2f} | {r['step_acc']:.2f} | {r['step_1']:.2f} | {r['later']:.2f} | "
              f"{r['ft_loss']:.2f} |" for d, r in shift.iterrows()]
    lines += ["", prediction_markdown(walk).replace("## ", "### Prediction: "),
              prediction_markdown(control).replace("## ", "### Control: ")]
    lines += ["### Scores", "", "| target | result | met |", "|---|---|---|"]
    return lines + _scores(walk, control, truth) + [""]


def _scores(walk, control, truth) -> list:
    out = []
    if walk["status"] == "predicted" and truth["eta"] is not None:
        err = walk["eta_pred"] - truth["eta"]
        out.append(f"| eta within 0.05 nats | predicted {walk['eta_pred']:.3f} vs {truth['eta']:.3f} "
                   f"(error {err:+.3f}) | {'yes' if abs(err) <= 0.05 else 'no'} |")
        covered = walk["eta_pred_lo"] <= truth["eta"] <= walk["eta_pred_hi"]
        out.append(f"| eta interval covers | [{walk['eta_pred_lo']:.3f}, {walk['eta_pred_hi']:.3f}] | "
                   f"{'yes' if covered else 'no'} |")
        nc = walk.get("nc_pred")
        if nc is not None and np.isfinite(nc):
            ratio = nc / truth["nc"]
            out.append(f"| N_c within 2x | predicted {nc:.3g} vs {truth['nc']:.3g} (ratio {ratio:.2f}) | "
                       f"{'yes' if 0.5 <= ratio <= 2 else 'no'} |")
            ok = walk["nc_pred_lo"] <= truth["nc"] <= walk["nc_pred_hi"]
            out.append(f"| N_c interval covers | [{walk['nc_pred_lo']:.3g}, {walk['nc_pred_hi']:.3g}] | "
                       f"{'yes' if ok else 'no'} |")
        else:
            out.append(f"| N_c within 2x | not predicted: {walk.get('nc_reason', '')} | no |")
    else:
        out.append(f"| eta within 0.05 nats | not predicted ({walk['status']}): {walk['reason']} | no |")
        out.append("| N_c within 2x | not predicted | no |")
    out.append(f"| control add_1d gets no onset | {control['status']} | "
               f"{'yes' if control['status'] != 'predicted' else 'no'} |")
    return out


if __name__ == "__main__":
    sys.exit(main())
