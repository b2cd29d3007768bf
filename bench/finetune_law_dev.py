"""Development runs for the emergence-law backtest: a lab family's truth, or one fine-tuning setting on one task.

    python bench/finetune_law_dev.py --lab-seed 1 --extra sums:0.25 --truth sums,walk,copy,add_1d
    python bench/finetune_law_dev.py --lab-seed 1 --task copy --lr 1e-2 --replay-rows 8 --amounts 0,256,512,1024,2048

``--truth`` trains (or reuses) the lab family (``--extra`` adds skills to the default mix,
``--ladder`` sets the sizes by d_model, 2 layers each) and prints each task's exact match at every
size's final checkpoint and its verdict on the loss axis over the whole family, with N_c.
``--task`` fine-tunes the sizes ``--sizes`` of that family (``--steps``) and prints the
thresholds per amount, the law if one fits (at each D0 of ``--d0``), and the best scores and
held-out loss after fine-tuning. Settings for ``bench/finetune_law.py`` are chosen with this on
development targets (families of LabConfig seed 1) and frozen before the backtest scores its
own; the runs made so far are listed in docs/finetune-law.md.
"""

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).parent))

import finetune_law as backtest  # noqa: E402

from emergence import schema as S  # noqa: E402
from emergence.analysis.finetune_law import emergence_prediction, prediction_markdown  # noqa: E402
from emergence.analysis.scaling import fit_size_law, loss_points  # noqa: E402
from emergence.export import tidy_table  # noqa: E402
from emergence.families import Selection  # noqa: E402
from emergence.lab.finetune import FinetuneConfig, finetune_run, finetune_table  # noqa: E402
from emergence.lab.training import LabConfig, family_dir, train_family  # noqa: E402
from emergence.run.config import ExecutorOptions, RunConfig  # noqa: E402
from emergence.run.runner import run  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lab-seed", type=int, default=0, help="LabConfig seed of the family (1: the development family)")
    p.add_argument("--extra", default="", help="skills added to the default mix, e.g. sums:0.25")
    p.add_argument("--ladder", default="", help="d_model of each size, e.g. 4,8,12,16; default: the lab's")
    p.add_argument("--layers", type=int, default=2, help="layers of each size of --ladder")
    p.add_argument("--truth", help="evaluate the whole family zero-shot on these tasks and print each one's truth")
    p.add_argument("--task", help="fine-tune on this task")
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--replay-rows", type=int, default=0)
    p.add_argument("--shuffle-seed", type=int, default=0)
    p.add_argument("--amounts", default="0,64,128,256,512,1024,2048")
    p.add_argument("--steps", default="110,200,363,488")
    p.add_argument("--sizes", default="lab-d4-l2,lab-d8-l2,lab-d16-l2", help="the sizes below 25,000 parameters")
    p.add_argument("--limit", type=int, default=25, help="evaluation examples per task")
    p.add_argument("--d0", default="1", help="few-shot limits to extrapolate the law to, e.g. 1,10,100")
    p.add_argument("--work", default="runs/bench-finetune-law-dev")
    args = p.parse_args(argv)
    if not (args.truth or args.task):
        p.error("give --truth TASKS or --task TASK")
    import torch

    torch.set_num_threads(1)
    extra = tuple((name, float(share)) for name, share in (s.split(":") for s in args.extra.split(",") if s))
    sizes = tuple((int(d), args.layers) for d in args.ladder.split(",")) if args.ladder else LabConfig().sizes
    lab = LabConfig(seed=args.lab_seed, mix=LabConfig().mix + extra, sizes=sizes)
    family = train_family(lab, family_dir(lab), progress=False, log=lambda *a: None)
    if args.truth:
        _truth(family, lab, args)
    if args.task:
        _finetune(family, lab, args)
    return 0


def _truth(family, lab, args):
    tasks = tuple(args.truth.split(","))
    out = Path(args.work) / f"base-{lab.digest()}-l{args.limit}"
    run(RunConfig(family=str(family), tasks=(*tasks, "heldout_loss"), out=str(out), limit=args.limit, num_fewshot=0,
                  executor=ExecutorOptions(kind="pool", workers=2)), progress=False)
    base = tidy_table(out)
    finals = loss_points(base)
    law = fit_size_law(finals[S.PARAMS].to_numpy(float), finals[S.LOSS].to_numpy(float), n_boot=100, workers=1)
    scores = base[(base[S.SUBTASK] == "") & (base[S.METRIC] == backtest.METRIC)]
    table = scores[scores[S.CHECKPOINT].isin(finals[S.CHECKPOINT])].pivot_table(
        index=S.PARAMS, columns=S.TASK, values=S.VALUE)
    table["final loss"] = finals.set_index(S.PARAMS)[S.LOSS]
    print(f"## Truth: LabConfig seed {lab.seed}, mix {lab.mix}, {len(lab.sizes)} sizes (family {lab.digest()})\n")
    print(table.round(3).to_markdown(), "\n")
    for task in tasks:
        t = backtest._truth(base, finals, law, task, cutoff=float("inf"))
        where = (f": eta {t['eta']:.3f} [{t['eta_lo']:.3f}, {t['eta_hi']:.3f}], N_c {t['nc']:.3g}, final checkpoints "
                 f"cross between {t['bracket'][0]:,.0f} and {t['bracket'][1]:,.0f}") if t["eta"] is not None else ""
        print(f"- {task}: {t['label']}{where}")
    print()


def _finetune(family, lab, args):
    start = time.perf_counter()
    tag = (f"{lab.digest()}-{args.task}-lr{args.lr:g}-e{args.epochs}-r{args.replay_rows}-s{args.shuffle_seed}"
           f"-l{args.limit}")
    config = FinetuneConfig(family=str(family), task=args.task, out=str(Path(args.work) / tag),
                            amounts=tuple(int(a) for a in args.amounts.split(",")),
                            select=Selection(sizes=tuple(args.sizes.split(",")), steps=args.steps), lr=args.lr,
                            epochs=args.epochs, replay_rows=args.replay_rows, shuffle_seed=args.shuffle_seed,
                            limit=args.limit, num_fewshot=0, device="cpu")
    finetune_run(config, progress=False, log=lambda *a: None)
    table = finetune_table(config.out)
    print(f"## {tag} ({time.perf_counter() - start:.0f} s)\n")
    for k, d0 in enumerate(float(d) for d in args.d0.split(",")):
        row = emergence_prediction(table, task=args.task, metric=backtest.METRIC, d0=d0)
        if k == 0:
            print(prediction_markdown(row))
        if row["status"] == "predicted":
            print(f"D0 = {d0:g}: eta {row['eta_pred']:.3f} [{row['eta_pred_lo']:.3f}, {row['eta_pred_hi']:.3f}], "
                  f"N_c {row.get('nc_pred', float('nan')):.3g}")
    print(backtest._shift(table, args.task, float("inf")).round(2).to_markdown())
    if args.task == "walk":
        _walk_first_steps(Path(config.out) / "run" / "results.sqlite")


def _walk_first_steps(store):
    """Where the held-out walks' first step goes, before and after fine-tuning: the share of
    first steps that name one of the first-step answers of the training questions (the successors
    of the starts not evaluated; never a held-out start's own successor, as the table is one
    cycle), and the share that is right. Read from the samples of the run store."""
    import sqlite3
    from statistics import mean

    from emergence_tasks.composition import SUCCESSORS, WALK_NODES

    successor = SUCCESSORS["red"]
    start_of = {after: before for before, after in successor.items()}
    db = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    by_model = {}
    for checkpoint, prediction, gold in db.execute("SELECT checkpoint, prediction, gold FROM samples "
                                                   "WHERE task = 'walk'"):
        by_model.setdefault(checkpoint, []).append(((prediction or "").split()[:1], gold.split()[0]))
    shares = {"before": [], "after": []}
    for checkpoint, answers in by_model.items():
        evaluated = {start_of[gold] for _, gold in answers}
        trained = {successor[n] for n in WALK_NODES if n not in evaluated}
        in_trained = mean(bool(said) and said[0] in trained for said, _ in answers)
        right = mean(said == [gold] for said, gold in answers)
        shares["after" if "+ft" in checkpoint else "before"].append((in_trained, right))
    print("\n| held-out first steps | models | naming a training question's first-step answer | right |")
    print("|---|---|---|---|")
    for when, rows in shares.items():
        if rows:
            print(f"| {when} fine-tuning | {len(rows)} | {mean(r[0] for r in rows):.2f} "
                  f"({min(r[0] for r in rows):.2f}-{max(r[0] for r in rows):.2f}) | "
                  f"{min(r[1] for r in rows):.2f}-{max(r[1] for r in rows):.2f} |")


if __name__ == "__main__":
    sys.exit(main())
