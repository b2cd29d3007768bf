"""Development sweep for the emergence-law backtest: one fine-tuning setting on one task of one lab family.

    python bench/finetune_law_dev.py --task copy --lr 1e-2 --replay-rows 8 --amounts 0,256,512,1024,2048

Fine-tunes the lab sizes below ``--cutoff`` (4 checkpoints each) and prints the thresholds per
amount, the law if one fits, and the best scores and held-out loss after fine-tuning. Settings
for ``bench/finetune_law.py`` are chosen with this on the development targets (``copy`` of the
default family, ``walk`` of the family trained with ``--lab-seed 1``) and frozen before the
backtest scores ``walk`` of the default family.
"""

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent))

import finetune_law as backtest  # noqa: E402

from emergence.analysis.finetune_law import emergence_prediction, prediction_markdown  # noqa: E402
from emergence.families import Selection  # noqa: E402
from emergence.lab.finetune import FinetuneConfig, finetune_run, finetune_table  # noqa: E402
from emergence.lab.training import LabConfig, family_dir, train_family  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", required=True)
    p.add_argument("--lab-seed", type=int, default=0, help="LabConfig seed of the family (1: the development family)")
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--replay-rows", type=int, default=0)
    p.add_argument("--shuffle-seed", type=int, default=0)
    p.add_argument("--amounts", default="0,64,128,256,512,1024,2048")
    p.add_argument("--steps", default="110,200,363,488")
    p.add_argument("--sizes", default="lab-d4-l2,lab-d8-l2,lab-d16-l2", help="the sizes below 25,000 parameters")
    p.add_argument("--work", default="runs/bench-finetune-law-dev")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    lab = LabConfig(seed=args.lab_seed)
    family = train_family(lab, family_dir(lab), progress=False, log=lambda *a: None)
    start = time.perf_counter()
    tag = f"s{args.lab_seed}-{args.task}-lr{args.lr:g}-e{args.epochs}-r{args.replay_rows}-s{args.shuffle_seed}"
    config = FinetuneConfig(family=str(family), task=args.task, out=str(Path(args.work) / tag),
                            amounts=tuple(int(a) for a in args.amounts.split(",")),
                            select=Selection(sizes=tuple(args.sizes.split(",")), steps=args.steps), lr=args.lr,
                            epochs=args.epochs, replay_rows=args.replay_rows, shuffle_seed=args.shuffle_seed,
                            limit=25, num_fewshot=0, device="cpu")
    finetune_run(config, progress=False, log=lambda *a: None)
    table = finetune_table(config.out)
    row = emergence_prediction(table, task=args.task, metric=backtest.METRIC, d0=1.0)
    print(f"## {tag} ({time.perf_counter() - start:.0f} s)\n")
    print(prediction_markdown(row))
    print(backtest._shift(table, args.task, float("inf")).round(2).to_markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
