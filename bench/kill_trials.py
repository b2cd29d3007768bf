"""SIGKILL trials: kill `emergence run` at random moments, resume, and compare with a run never killed.

    python bench/kill_trials.py [--trials 36] [--kills-per-series 4] [--seed 0] [--out FILE]

Builds the tiny test family (6 checkpoints x 4 tasks = 24 cells, tests/run_child.py) and runs
it once uninterrupted: the reference. Then the trials, in series on fresh run directories: each
trial starts a runner on the series' directory and kills it with SIGKILL at one of three
moments, taken in turn:

- **load**: a random moment before the first cell is written (starting, provenance, loading a
  checkpoint, evaluating), drawn from the shortest time a runner took to write its first cell;
- **mid-write**: the k-th cell's rows are written, its transaction is held open 0.2 s, and the
  kill lands at a random point of that;
- **commit**: as soon as the k-th cell's COMMIT has begun (polled every 0.5 ms).

After every kill the store must pass `PRAGMA integrity_check` and the store's own check, and each
cell it holds must equal the reference's, row for row. After each series a last run finishes the
sweep, and the whole store must equal the reference: cells lost, rows duplicated and values
changed are counted, not assumed. Prints (or writes) a markdown table.
"""

import argparse
import multiprocessing
import multiprocessing.forkserver
import os
import random
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
TESTS = Path(__file__).parents[1] / "tests"
sys.path.insert(0, str(TESTS))

from emergence.store import Store  # noqa: E402

MOMENTS = ("load", "mid-write", "commit")
COMMIT_DELAY = 0.2  # seconds a cell's transaction is held open, rows written, before COMMIT
# Every stored row, without the timings that differ from run to run; the key of each cell first.
ROWS = {"cells": "checkpoint, task, task_version, plugin, status, error",
        "scores": "*", "samples": "*", "cell_digests": "*"}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=36)
    p.add_argument("--kills-per-series", type=int, default=4, help="kills on one run directory before it is finished")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="write the markdown table to this file")
    args = p.parse_args(argv)
    from emergence.testing import build_family

    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        family, runners = build_family(work / "tinyfam"), _forkserver()
        load_window = _finish(runners, family, work / "reference", write_log=work / "reference.log")
        expected, _ = _cells(work / "reference")
        results, finals = [], []
        for trial in range(args.trials):
            series = trial // args.kills_per_series
            out = work / f"series{series}"
            results.append(_trial(runners, family, out, MOMENTS[trial % len(MOMENTS)], rng, expected, work,
                                  load_window))
            load_window = min(load_window, results[-1]["first_write"])  # a warm runner writes sooner
            if trial % args.kills_per_series == args.kills_per_series - 1 or trial == args.trials - 1:
                _finish(runners, family, out)
                finals.append(_compare(*_cells(out), expected, whole=True))
    table = _table(results, finals, len(expected), argv)
    if args.out:
        Path(args.out).write_text(table)
    print(table)
    failed = sum(r["lost"] + r["duplicated"] + r["changed"] + (not r["sound"]) for r in results + finals)
    return 1 if failed else 0


def _trial(runners, family, out, moment, rng, expected, work, load_window) -> dict:
    import run_child

    writes, commits = work / "writes.log", work / "commits.log"
    for f in (writes, commits):
        f.unlink(missing_ok=True)
    before = len(_cells(out)[0])
    child = runners.Process(target=run_child.sweep, args=(family, out),
                            kwargs={"write_log": writes, "commit_delay": COMMIT_DELAY, "commit_log": commits})
    child.start()
    started, k = time.monotonic(), rng.randint(1, 2)
    first_write = float("inf")
    if moment == "load":
        deadline = time.monotonic() + rng.uniform(0, load_window)
        _wait(child, lambda: _lines(writes) >= 1 or time.monotonic() > deadline, poll=0.002)
    elif moment == "mid-write":
        _wait(child, lambda: _lines(writes) >= k, poll=0.001)
        first_write = time.monotonic() - started if k == 1 else first_write
        time.sleep(rng.uniform(0, COMMIT_DELAY))
    else:
        _wait(child, lambda: _lines(commits) >= k, poll=0.0005)
    alive = child.is_alive()
    child.kill()
    child.join()
    stored, sound = _cells(out)
    result = _compare(stored, sound, expected, whole=False)
    written = _lines(writes)
    result.update(moment=moment, killed=alive, written=written, new=len(stored) - before, first_write=first_write,
                  landed=("finished first" if not alive else "before any write" if written == 0 else
                          "rolled back" if len(stored) - before < written else "committed"))
    return result


def _compare(got: dict, sound: bool, expected: dict, whole: bool) -> dict:
    """Cells lost (whole: every reference cell must be there), rows duplicated, cells changed
    (rows that differ from the reference's, or a cell the reference does not have)."""
    duplicated = sum(len(rows) - len(set(rows)) for cell in got.values() for rows in cell.values())
    changed = sum(1 for key, cell in got.items() if cell != expected.get(key))
    lost = sum(1 for key in expected if key not in got) if whole else 0
    return {"lost": lost, "duplicated": duplicated, "changed": changed, "sound": sound, "cells": len(got)}


def _cells(out) -> tuple[dict, bool]:
    """(checkpoint, task) -> {table: rows} of the done cells; whether the store passes both
    ``PRAGMA integrity_check`` and its own check (the digests)."""
    path = Path(out) / "results.sqlite"
    if not path.exists():
        return {}, True
    with sqlite3.connect(path) as db:
        sound = db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        cells = {}
        for table, cols in ROWS.items():
            for row in db.execute(f"SELECT {cols} FROM {table}"):
                cells.setdefault(row[:2], {t: [] for t in ROWS})[table].append(row)
        done = {key for key, cell in cells.items() if any(r[4] == "done" for r in cell["cells"])}
    with Store(out, lock=False) as store:
        sound = sound and store.damage() == []
    return {key: {t: sorted(r, key=repr) for t, r in cells[key].items()} for key in done}, sound


def _forkserver():
    """Runners forked from a server that has imported torch, transformers and run_child, so each
    trial starts in a fraction of a second (as in tests/test_kill.py)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["run_child"])
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, (str(TESTS), os.environ.get("PYTHONPATH"))))
    multiprocessing.forkserver.ensure_running()
    return context


def _finish(runners, family, out, write_log=None) -> float:
    """Run the sweep to the end; the seconds until its first cell was written ("load" kills
    land in that window: starting, provenance, loading and evaluating the first checkpoint)."""
    import run_child

    started = time.monotonic()
    child = runners.Process(target=run_child.sweep, args=(family, out), kwargs={"write_log": write_log})
    child.start()
    if write_log:
        _wait(child, lambda: _lines(Path(write_log)) >= 1, poll=0.001)
    first_write = time.monotonic() - started
    child.join(600)
    if child.exitcode != 0:
        raise SystemExit(f"the run finishing {out} exited {child.exitcode}")
    return first_write


def _wait(child, condition, timeout=120, poll=0.005):
    deadline = time.monotonic() + timeout
    while child.is_alive() and not condition():
        if time.monotonic() > deadline:
            raise SystemExit("the runner made no progress")
        time.sleep(poll)


def _lines(log: Path) -> int:
    return len(log.read_text().split()) if log.exists() else 0


def _table(results, finals, cells, argv) -> str:
    lines = [f"SIGKILL trials on a sweep of {cells} cells (6 tiny checkpoints x 4 tasks, tests/run_child.py); "
             f"command: `python bench/kill_trials.py {' '.join(argv)}`.", "",
             "| kill moment | trials | killed | the cell being written | integrity + digests ok | cells changed "
             "| rows duplicated |", "|---|---:|---:|---|---:|---:|---:|"]
    for moment in MOMENTS:
        rs = [r for r in results if r["moment"] == moment]
        landed = ", ".join(f"{what}: {n}" for what, n in sorted(Counter(r["landed"] for r in rs).items()))
        lines.append(f"| {moment} | {len(rs)} | {sum(r['killed'] for r in rs)} | {landed} | "
                     f"{sum(r['sound'] for r in rs)} of {len(rs)} | {sum(r['changed'] for r in rs)} | "
                     f"{sum(r['duplicated'] for r in rs)} |")
    lines += ["", f"After each of the {len(finals)} series a last run finished the sweep; against the "
              "uninterrupted reference:", "",
              "| series finished | cells lost | rows duplicated | cells changed | integrity + digests ok |",
              "|---:|---:|---:|---:|---:|",
              f"| {len(finals)} | {sum(f['lost'] for f in finals)} | {sum(f['duplicated'] for f in finals)} | "
              f"{sum(f['changed'] for f in finals)} | {sum(f['sound'] for f in finals)} of {len(finals)} |"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
