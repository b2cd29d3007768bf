"""SIGKILL the runner at random moments, rerun, and compare with an uninterrupted run; a second
`emergence run` on a run directory in use is refused and changes nothing.

Runners are forked from a forkserver that has already imported torch and transformers
(tests/run_child.py), so each of the two dozen killed runs starts in a fraction of a second.
"""

import multiprocessing
import multiprocessing.forkserver
import os
import random
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from emergence.export import tidy_table
from emergence.store import Store

import run_child

HERE = Path(__file__).parent
TRIALS = 24
COMMIT_DELAY = 0.2  # seconds each cell's transaction stays open, rows written, before it commits
CELLS = 6 * len(run_child.TASKS)  # the tiny family has 6 checkpoints
# Every stored row, without the timings that differ from run to run.
ROWS = {"cells": "checkpoint, task, task_version, plugin, status, error",
        "scores": "*", "samples": "*", "checkpoints": "*"}


@pytest.fixture(scope="module")
def runners():
    """A forkserver that has imported run_child. It starts here, with the tests folder on
    PYTHONPATH: before Python 3.12 the server is not given the caller's sys.path, and a preload
    it cannot import is skipped without a word (every runner would then import torch itself)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["run_child"])
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PYTHONPATH", os.pathsep.join(filter(None, (str(HERE), os.environ.get("PYTHONPATH")))))
        multiprocessing.forkserver.ensure_running()
    return context


def _start(runners, *args, **kwargs):
    child = runners.Process(target=run_child.sweep, args=args, kwargs=kwargs)
    child.start()
    return child


def _wait(child, condition, timeout=120):
    deadline = time.monotonic() + timeout
    while child.is_alive() and not condition():
        assert time.monotonic() < deadline, "the runner made no progress"
        time.sleep(0.005)


def _writes(log: Path) -> int:
    """Cells whose rows the runner has written (committed or not) since the log was emptied."""
    return len(log.read_text().split()) if log.exists() else 0


def _done(out) -> int:
    if not (Path(out) / "results.sqlite").exists():
        return 0
    with Store(out, lock=False) as store:
        return len(store.done_cells())


def _rows(out) -> dict:
    with sqlite3.connect(Path(out) / "results.sqlite") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return {table: sorted(db.execute(f"SELECT {cols} FROM {table}"), key=repr) for table, cols in ROWS.items()}


def test_killed_runs_resume_to_identical_results(runners, tiny_family_dir, tmp_path):
    reference = tmp_path / "reference"
    first = _start(runners, tiny_family_dir, reference)
    first.join(300)
    assert first.exitcode == 0

    rng = random.Random(0)
    out, log, moments = tmp_path / "killed", tmp_path / "writes.log", []
    for trial in range(TRIALS):
        log.unlink(missing_ok=True)
        before = _done(out)
        child = _start(runners, tiny_family_dir, out, write_log=log, commit_delay=COMMIT_DELAY)
        if trial % 2:  # while the k-th cell's rows are written but not yet committed
            k = rng.randint(1, 2)
            _wait(child, lambda k=k: _writes(log) >= k)
            time.sleep(rng.uniform(0, COMMIT_DELAY / 4))
        else:  # any moment: starting, loading, evaluating, writing; at the latest as the second write begins
            deadline = time.monotonic() + rng.uniform(0, 1.5)
            _wait(child, lambda end=deadline: _writes(log) >= 2 or time.monotonic() > end)
        if not child.is_alive():
            break  # the run finished between kills
        child.kill()
        child.join()
        writes, stored = _writes(log), _done(out) - before
        moments.append("before any write" if writes == 0 else
                       "mid-write" if stored == writes - 1 else "between writes")
    counts = {m: moments.count(m) for m in sorted(set(moments))}
    print(f"\n{len(moments)} kills, {_done(out)} of {CELLS} cells stored before the rerun: {counts}")
    assert len(moments) >= 20 and counts.get("mid-write", 0) >= 10, counts

    final = _start(runners, tiny_family_dir, out)
    final.join(300)
    assert final.exitcode == 0
    # Nothing lost, nothing duplicated, the same numbers: row for row, the uninterrupted run's store.
    got, expected = _rows(out), _rows(reference)
    assert len(expected["cells"]) == CELLS and len(expected["samples"]) == CELLS * 4
    for table in ROWS:
        assert got[table] == expected[table], table
    pd.testing.assert_frame_equal(tidy_table(out), tidy_table(reference))


def test_a_second_run_on_a_directory_in_use_is_refused_and_changes_nothing(runners, tiny_family_dir, tmp_path):
    out, log, release = tmp_path / "run", tmp_path / "writes.log", tmp_path / "release"
    first = _start(runners, tiny_family_dir, out, tasks=("mc_arith",), write_log=log, release=release)
    _wait(first, lambda: _writes(log) >= 1)  # the first run is inside a write, holding the directory
    second = subprocess.run(
        [sys.executable, "-m", "emergence.cli", "run", "--family", str(tiny_family_dir), "--tasks", "mc_arith",
         "--out", str(out), "--limit", "4", "--no-progress"], capture_output=True, text=True, timeout=300, check=False)
    assert second.returncode == 1
    assert f"Run directory {out} is in use by another emergence process" in second.stderr
    assert first.is_alive() and _done(out) == 0

    release.touch()
    first.join(300)
    assert first.exitcode == 0
    rows = _rows(out)  # integrity checked here
    assert [status for *_, status, _ in rows["cells"]] == ["done"] * 6 and len(rows["samples"]) == 6 * 4
