"""The pool executor: checkpoints evaluated in worker processes, the store written here only."""

import dataclasses
import json
import multiprocessing as mp
import os
import signal
from dataclasses import dataclass

import pandas as pd
import pytest

from emergence.export import tidy_table
from emergence.hookspecs import hookimpl
from emergence.run.config import BackendOptions, ConfigError, ExecutorOptions, RunConfig
from emergence.run.runner import run
from emergence.store import Store
from emergence.tasks import GENERATE_METRICS, Example, TaskBase

from helpers import manager


def _config(family_dir, out, **kw):
    return RunConfig(family=str(family_dir), tasks=("t_add", "t_pick", "t_broken"), out=str(out), limit=6,
                     backend=BackendOptions(batch_size=4), **kw)


def test_pool_run_writes_what_the_local_run_writes(tiny_family_dir, tmp_path):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # as each of the two workers on 2 cores: float reductions in one order
    try:
        local = run(_config(tiny_family_dir, tmp_path / "local"), pm=manager(), progress=False)
    finally:
        torch.set_num_threads(threads)
    pooled = run(_config(tiny_family_dir, tmp_path / "pool", executor=ExecutorOptions(kind="pool", workers=2)),
                 pm=manager(), progress=False)
    assert (pooled.evaluated, pooled.skipped) == (local.evaluated, local.skipped) == (12, 0)
    pd.testing.assert_frame_equal(tidy_table(pooled.run_dir), tidy_table(local.run_dir))
    assert sorted(pooled.failed) == sorted(local.failed) and len(local.failed) == 6   # t_broken, every checkpoint
    with Store(pooled.run_dir, lock=False) as a, Store(local.run_dir, lock=False) as b:
        for table in ("samples", "checkpoints"):
            assert a.db.execute(f"SELECT * FROM {table} ORDER BY 1, 2, 3").fetchall() == \
                b.db.execute(f"SELECT * FROM {table} ORDER BY 1, 2, 3").fetchall(), table
    record = json.loads((pooled.run_dir / "run.json").read_text())
    assert record["executor"]["kind"] == "pool" and record["executor"]["workers"] == 2
    again = run(_config(tiny_family_dir, tmp_path / "pool", executor=ExecutorOptions(kind="pool", workers=2)),
                pm=manager(), progress=False)
    assert (again.evaluated, again.skipped) == (0, 12)   # resume: nothing done is redone


@dataclass(frozen=True)
class DieInWorker(TaskBase):
    """Kills the process evaluating it, when that is a worker (as the OOM killer would)."""

    def examples(self, seed):
        if mp.parent_process() is not None:
            os.kill(os.getpid(), signal.SIGKILL)
        yield Example(id="0", prompt="1 + 1 =", target=" 2")


class DieTasks:
    @staticmethod
    @hookimpl
    def register_tasks(register):
        register(DieInWorker(name="t_die", metrics=GENERATE_METRICS))


def test_a_worker_that_dies_fails_its_cells_and_a_rerun_finishes_them(tiny_family_dir, tmp_path):
    pm = manager()
    pm.register(DieTasks, name="die_tasks")
    out = tmp_path / "pool"
    config = RunConfig(family=str(tiny_family_dir), tasks=("t_add", "t_die"), out=str(out), limit=2,
                       backend=BackendOptions(batch_size=4), executor=ExecutorOptions(kind="pool", workers=2))
    summary = run(config, pm=pm, progress=False)
    assert summary.evaluated == 0 and len(summary.failed) == summary.cells == 12
    assert all("worker process failed" in error for _, _, error in summary.failed)
    # Nothing half-written; the same run directory finishes in this process without the culprit.
    rerun = run(dataclasses.replace(config, tasks=("t_add",), executor=ExecutorOptions()), pm=pm, progress=False)
    assert (rerun.evaluated, rerun.failed) == (6, [])


@pytest.mark.parametrize("options, match", [
    (dict(kind="local", workers=2), "workers only apply to the pool executor"),
    (dict(kind="pool", address="auto"), "address only apply to the ray executor"),
    (dict(kind="pool", workers=-1), "workers must be >= 0"),
])
def test_settings_of_another_executor_are_refused(options, match):
    with pytest.raises(ConfigError, match=match):
        ExecutorOptions(**options)
