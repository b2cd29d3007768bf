"""What re-running costs: resuming a finished run, and adding one checkpoint to it.

    python bench/run_scaling.py [--checkpoints 4] [--limit 40] [--out FILE]

Builds a local family of tiny random-init GPT-NeoX checkpoints, runs every task on it with
``emergence.run.runner.run``, then times (1) the same run again: every cell is already in the store,
so it should cost seconds and evaluate nothing, and (2) the run after one more checkpoint
appears in the family folder: only that checkpoint's cells should be evaluated.
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

from emergence.run.config import BackendOptions, RunConfig  # noqa: E402
from emergence.plugins import plugin_manager  # noqa: E402
from emergence.run.runner import run  # noqa: E402
from emergence.testing import build_model, train_tokenizer  # noqa: E402

TASKS = ("add_2d", "mc_arith", "heldout_loss")   # one of each kind: generation, choice, rolling


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoints", type=int, default=4, help="in the finished run, before one is added")
    p.add_argument("--limit", type=int, default=40, help="examples per task")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (see engine_vs_lmeval.py)")
    p.add_argument("--out", help="write the markdown table to this file")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    hf_logging.disable_progress_bar()
    with tempfile.TemporaryDirectory() as work:
        family, tokenizer = Path(work) / "tinyfam", train_tokenizer()

        def add_checkpoint(step):
            build_model(family / f"tiny-h64-l2@step{step}", hidden=64, layers=2, seed=step, tokenizer=tokenizer)

        for k in range(args.checkpoints):
            add_checkpoint(100 * (k + 1))
        config = RunConfig(family=str(family), tasks=TASKS, out=str(Path(work) / "run"), limit=args.limit,
                           backend=BackendOptions(device="cpu", batch_size=8))
        rows = [("first run", *_timed_run(config))]
        rows.append(("resume the finished run", *_timed_run(config)))
        add_checkpoint(100 * (args.checkpoints + 1))
        rows.append(("add one checkpoint", *_timed_run(config)))
    header = (f"Family of {args.checkpoints} tiny GPT-NeoX checkpoints (+1 added), tasks {', '.join(TASKS)}, "
              f"{args.limit} examples each. Command: `python bench/run_scaling.py {' '.join(argv)}`.")
    lines = [header, "", "| run | cells evaluated | cells skipped | seconds |", "|---|---:|---:|---:|"]
    lines += [f"| {name} | {evaluated} | {skipped} | {seconds:.1f} |" for name, evaluated, skipped, seconds in rows]
    table = "\n".join(lines) + "\n"
    print(table)
    if args.out:
        Path(args.out).write_text(table)
    first, resume, added = rows
    n = len(TASKS)
    ok = (first[1] == args.checkpoints * n and resume[1] == 0 and resume[2] == first[1]
          and added[1] == n and added[2] == first[1])
    return 0 if ok else 1


def _timed_run(config):
    start = time.perf_counter()
    summary = run(config, pm=plugin_manager(), progress=False)
    seconds = time.perf_counter() - start
    if summary.failed:
        raise RuntimeError(f"cells failed: {summary.failed}")
    return summary.evaluated, summary.skipped, seconds


if __name__ == "__main__":
    sys.exit(main())
