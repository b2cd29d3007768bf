"""A family sweep end to end: `emergence run` against lm-eval's own API, one checkpoint at a time.

    python bench/family_sweep.py [--checkpoints 8] [--tasks add_2d,chain_3,mc_arith,heldout_loss]
                                 [--limit 40] [--reps 2] [--threads 1] [--out FILE]

Builds a local family of small random-init GPT-NeoX checkpoints (nothing is downloaded), then
times, from launching a process to its exit:
- ours: ``emergence run --family DIR --tasks ...`` to a finished run directory (results.sqlite,
  run.json), every checkpoint and task in one command;
- lm-eval: what a user of lm-eval does for the same work: for each checkpoint in turn, load it
  with ``HFLM(pretrained=PATH)`` and call ``lm_eval.simple_evaluate`` on the same tasks (ours,
  as lm-eval tasks through ``emergence.run.lmeval.to_lmeval_task``: the same requests), then save
  its results as JSON. All checkpoints run in one Python process, so lm-eval pays its start-up
  and imports once, as ours does (a shell loop over lm-eval's CLI would pay them per checkpoint).
Both get the same batch size, intra-op threads and examples; repetitions alternate who goes
first. Reported: wall and CPU seconds of each, and the median (range) of the per-repetition
ratios, as a markdown table; and whether both scored every (checkpoint, task) alike: the same
exact match and accuracy, mean gold log-likelihood within 1e-4 nats (exit status 1 otherwise).
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# (hidden, layers): eight sizes from about 30k to 2M non-embedding parameters.
SIZES = ((32, 2), (48, 2), (64, 2), (64, 3), (96, 3), (128, 3), (160, 4), (192, 4))
TASKS = "add_2d,chain_3,mc_arith,heldout_loss"   # two generation tasks, a multiple choice, rolling
BATCH = 16   # both get the same batch size
# Accuracies that both must give exactly (the same greedy outputs and argmaxes), and the mean
# log-likelihood of the gold answer, within float32 rounding.
TOLERANCE = {"exact_match": 0.0, "acc": 0.0, "gold_logprob": 1e-4}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoints", type=int, default=len(SIZES), help=f"at most {len(SIZES)}")
    p.add_argument("--tasks", default=TASKS)
    p.add_argument("--limit", type=int, default=40, help="examples per task")
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads of both (see engine_vs_lmeval.py)")
    p.add_argument("--out", help="write the markdown table to this file")
    p.add_argument("--lmeval-family", help=argparse.SUPPRESS)   # the lm-eval side, in its own process
    p.add_argument("--lmeval-out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.lmeval_family:
        return lmeval_sweep(Path(args.lmeval_family), args.tasks.split(","), args.limit, Path(args.lmeval_out))
    if not 1 <= args.checkpoints <= len(SIZES):
        p.error(f"--checkpoints must be 1 to {len(SIZES)}")
    load = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as work:
        family = build_family(Path(work) / "family", args.checkpoints)
        times = {"ours": [], "lm-eval": []}
        for rep in range(args.reps):
            order = ("ours", "lm-eval") if rep % 2 == 0 else ("lm-eval", "ours")
            for side in order:
                out = Path(work) / f"{side}-{rep}"
                command = ours_command(family, args, out) if side == "ours" else lmeval_command(family, args, out)
                times[side].append(timed_process(command, args.threads))
        mismatches = compare(Path(work) / "ours-0", Path(work) / "lm-eval-0", args.tasks.split(","))
    load.append(os.getloadavg()[0])
    table = markdown(times, args, argv, load, mismatches)
    print(table)
    if args.out:
        Path(args.out).write_text(table)
    return 0 if not mismatches else 1


def build_family(root: Path, n: int) -> Path:
    from emergence.testing import build_model, train_tokenizer

    tokenizer = train_tokenizer()
    for k, (hidden, layers) in enumerate(SIZES[:n]):
        build_model(root / f"tiny-h{hidden}-l{layers}@step1000", hidden=hidden, layers=layers,
                    heads=4, context=512, seed=k, tokenizer=tokenizer)
    return root


def ours_command(family: Path, args, out: Path) -> list[str]:
    return [sys.executable, "-m", "emergence.cli", "run", "--family", str(family), "--tasks", args.tasks,
            "--out", str(out), "--limit", str(args.limit), "--device", "cpu", "--batch-size", str(BATCH),
            "--no-progress"]


def lmeval_command(family: Path, args, out: Path) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--lmeval-family", str(family), "--tasks", args.tasks,
            "--limit", str(args.limit), "--lmeval-out", str(out)]


def timed_process(command: list[str], threads: int) -> tuple[float, float]:
    """(wall, CPU) seconds of a process from launch to exit; it must succeed."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command[:4])} ... exited {done.returncode}:\n{done.stderr[-3000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def lmeval_sweep(family: Path, task_names: list[str], limit: int, out: Path) -> int:
    """lm-eval's side: each checkpoint loaded by HFLM and evaluated by simple_evaluate in turn."""
    import gc

    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from emergence.plugins import collect, plugin_manager
    from emergence.run.lmeval import to_lmeval_task
    from emergence.run.runner import resolve_task

    pm = plugin_manager()
    registry = collect(pm)
    tasks = [resolve_task(name, pm, registry) for name in task_names]
    out.mkdir(parents=True)
    for checkpoint in sorted(p for p in family.iterdir() if (p / "config.json").exists()):
        lm = HFLM(pretrained=str(checkpoint), batch_size=BATCH, device="cpu")
        results = lm_eval.simple_evaluate(
            model=lm, tasks=[to_lmeval_task(t, limit=limit) for t in tasks],
            task_manager=TaskManager(include_defaults=False), bootstrap_iters=0)
        (out / f"{checkpoint.name}.json").write_text(json.dumps(results["results"], default=str))
        del lm, results
        gc.collect()
    return 0


def compare(ours_run: Path, lmeval_out: Path, task_names: list[str]) -> list[str]:
    """Cells where one side has no result, or where a metric of TOLERANCE differs beyond it."""
    from emergence import schema as S
    from emergence.export import tidy_table

    df = tidy_table(ours_run)
    mismatches = []
    for result_file in sorted(lmeval_out.glob("*.json")):
        theirs = json.loads(result_file.read_text())
        for task in task_names:
            if task not in theirs:
                mismatches.append(f"{result_file.stem} {task}: no lm-eval result")
                continue
            cell = df[(df[S.CHECKPOINT] == result_file.stem) & (df[S.TASK] == task)]
            if cell.empty:
                mismatches.append(f"{result_file.stem} {task}: no result of ours")
            for metric, tolerance in TOLERANCE.items():
                key = f"{metric},none"
                rows = cell[(cell[S.METRIC] == metric) & (cell[S.SUBTASK].fillna("") == "")]
                if key in theirs[task] and len(rows) and abs(float(rows[S.VALUE].iloc[0]) - theirs[task][key]) > tolerance + 1e-12:
                    mismatches.append(f"{result_file.stem} {task} {metric}: ours {rows[S.VALUE].iloc[0]}, "
                                      f"lm-eval {theirs[task][key]}")
    return mismatches


def markdown(times, args, argv, load, mismatches) -> str:
    import platform

    import torch

    header = (
        f"{args.checkpoints} local GPT-NeoX checkpoints (hidden {SIZES[0][0]}-{SIZES[args.checkpoints - 1][0]}) x "
        f"tasks {args.tasks.replace(',', ', ')}, {args.limit} examples each; batch size {BATCH} and "
        f"{args.threads} intra-op thread(s) for both; {platform.machine()}, {os.cpu_count()} cores, torch "
        f"{torch.__version__}; {args.reps} repetitions, alternating who goes first. Load average (1 min) "
        f"before / after: {load[0]:.1f} / {load[1]:.1f}. Command: `python bench/family_sweep.py {' '.join(argv)}`.")
    lines = [header, "", "| | ours (`emergence run`) | lm-eval (`HFLM` + `simple_evaluate` per checkpoint) "
             "| ratio: median (range) |", "|---|---:|---:|---:|"]
    for k, clock in enumerate(("wall", "CPU")):
        o = statistics.median(t[k] for t in times["ours"])
        t_ = statistics.median(t[k] for t in times["lm-eval"])
        r = [b[k] / a[k] for a, b in zip(times["ours"], times["lm-eval"])]   # lm-eval / ours, per repetition
        lines.append(f"| {clock} seconds | {o:.1f} | {t_:.1f} | "
                     f"**{statistics.median(r):.2f}x** ({min(r):.2f}-{max(r):.2f}) |")
    agree = ("every (checkpoint, task) scored by both; exact match and accuracy equal, mean gold "
             "log-likelihood within 1e-4 nats, in every cell"
             if not mismatches else "differences: " + "; ".join(mismatches[:5]))
    return "\n".join(lines) + f"\n\nAgreement: {agree}.\n"


if __name__ == "__main__":
    sys.exit(main())
