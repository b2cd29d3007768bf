"""The Ray executor: the local executor's table, a killed worker retried, resume, clear errors.

One local Ray cluster (2 CPUs) serves the module. Plugins the workers need arrive pickled with
the plugin manager by module name, so this folder is on the workers' PYTHONPATH.
"""

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
import pytest

from emergence.cli import main
from emergence.run.config import BackendOptions, ExecutorOptions, RunConfig
from emergence.export import tidy_table
from emergence.families import Selection
from emergence.hookspecs import hookimpl
from emergence.run.runner import run
from emergence.store import Store
from emergence.tasks import GENERATE_METRICS

from helpers import AddTask, manager

HERE = Path(__file__).parent
RAY = ExecutorOptions(kind="ray")


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    env = {"PYTHONPATH": str(HERE), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    ray.init(num_cpus=2, include_dashboard=False, logging_level="warning", runtime_env={"env_vars": env})
    yield ray
    ray.shutdown()


def _config(family_dir, out, tasks=("t_add", "t_pick"), **kw):
    return RunConfig(family=str(family_dir), tasks=tasks, out=str(out), limit=6,
                     backend=BackendOptions(batch_size=4), **kw)


@pytest.fixture(scope="module")
def twin_runs(ray_cluster, tiny_family_dir, tmp_path_factory):
    """The same config, with a failing task, run by each executor into its own directory."""
    root = tmp_path_factory.mktemp("twins")
    tasks = ("t_add", "t_pick", "t_broken")
    # A Ray task with num_cpus=1 runs torch on one thread; so does the local run here, since
    # the order of a multi-threaded float reduction moves the last bits of a log-probability.
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        local = run(_config(tiny_family_dir, root / "local", tasks), pm=manager(), progress=False)
    finally:
        torch.set_num_threads(threads)
    on_ray = run(_config(tiny_family_dir, root / "ray", tasks, executor=RAY), pm=manager(), progress=False)
    return local, on_ray


def test_ray_run_writes_what_the_local_run_writes(twin_runs):
    local, on_ray = twin_runs
    assert (on_ray.evaluated, on_ray.skipped) == (local.evaluated, local.skipped) == (12, 0)
    pd.testing.assert_frame_equal(tidy_table(on_ray.run_dir), tidy_table(local.run_dir))
    # A task that raises fails the same way, recorded once per checkpoint rather than retried.
    assert sorted(on_ray.failed) == sorted(local.failed) and len(local.failed) == 6
    with Store(on_ray.run_dir, lock=False) as a, Store(local.run_dir, lock=False) as b:
        assert a.failures() == b.failures()
        assert a.db.execute("SELECT * FROM samples ORDER BY 1, 2, 3").fetchall() == \
            b.db.execute("SELECT * FROM samples ORDER BY 1, 2, 3").fetchall()
        assert a.db.execute("SELECT * FROM checkpoints ORDER BY 1").fetchall() == \
            b.db.execute("SELECT * FROM checkpoints ORDER BY 1").fetchall()
        assert "executor" not in json.dumps(a.get_meta("results_settings"))
    record = json.loads((on_ray.run_dir / "run.json").read_text())
    assert record["executor"]["kind"] == "ray" and record["executor"]["address"]
    assert record["executor"]["resources"]["CPU"] == 2 and record["config"]["executor"]["kind"] == "ray"


def test_resuming_a_finished_ray_run_evaluates_nothing(twin_runs, tiny_family_dir):
    _, on_ray = twin_runs
    again = run(_config(tiny_family_dir, on_ray.run_dir, executor=RAY), pm=manager(), progress=False)
    assert (again.evaluated, again.skipped, again.failed) == (0, 12, [])
    record = json.loads((on_ray.run_dir / "run.json").read_text())
    assert record["executor"]["kind"] == "ray" and record["executor"]["address"] is None  # never connected
    # Executors do not enter the results settings: the local one resumes a Ray run directory.
    local = run(_config(tiny_family_dir, on_ray.run_dir), pm=manager(), progress=False)
    assert (local.evaluated, local.skipped) == (0, 12)


@dataclass(frozen=True)
class KillOnceTask(AddTask):
    """AddTask whose first evaluation anywhere SIGKILLs its own process (a Ray worker)."""
    marker: str = ""

    def examples(self, seed):
        try:
            fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return super().examples(seed)
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        os.kill(os.getpid(), signal.SIGKILL)


class KillOncePlugin:
    def __init__(self, marker):
        self.marker = str(marker)

    @hookimpl
    def register_tasks(self, register):
        register(KillOnceTask(name="t_kill", metrics=GENERATE_METRICS, num_fewshot=1, max_gen_toks=4,
                              marker=self.marker))


def test_a_killed_worker_has_its_checkpoint_retried(ray_cluster, twin_runs, tiny_family_dir, tmp_path):
    marker = tmp_path / "killed.pid"
    pm = manager()
    pm.register(KillOncePlugin(marker), name="kill_once")
    summary = run(_config(tiny_family_dir, tmp_path / "run", ("t_pick", "t_kill"), executor=RAY), pm=pm,
                  progress=False)
    assert marker.exists() and int(marker.read_text()) != os.getpid()
    assert summary.ok and summary.evaluated == 12
    got = tidy_table(tmp_path / "run")
    assert set(got[got.task == "t_kill"].checkpoint) == set(got.checkpoint) and len(set(got.checkpoint)) == 6
    local, _ = twin_runs
    expected = tidy_table(local.run_dir)
    pd.testing.assert_frame_equal(got[got.task == "t_pick"].reset_index(drop=True),
                                  expected[expected.task == "t_pick"].reset_index(drop=True))


class CloseExplodes:
    """A loader whose model raises on close: an error outside any task, so outside evaluation."""

    def __init__(self, attempts):
        self.attempts = str(attempts)

    @hookimpl(tryfirst=True)
    def load_model(self, checkpoint):
        return _ClosingBadly(self.attempts)


class _ClosingBadly:
    def __init__(self, attempts):
        self.attempts = attempts

    def close(self):
        with open(self.attempts, "a") as f:
            f.write(f"{os.getpid()}\n")
        raise RuntimeError("close exploded")


def test_an_error_raised_on_a_worker_is_recorded_not_retried(ray_cluster, tiny_family_dir, tmp_path):
    attempts = tmp_path / "attempts"
    pm = manager()
    pm.register(CloseExplodes(attempts), name="close_explodes")
    cfg = _config(tiny_family_dir, tmp_path / "run", ("t_broken",), executor=RAY,
                  select=Selection(sizes=("tiny-h32-l2",)))
    summary = run(cfg, pm=pm, progress=False)
    assert len(attempts.read_text().splitlines()) == 2  # two checkpoints, one attempt each
    assert len(summary.failed) == 2
    assert all("on a Ray worker: RuntimeError: close exploded" in error for _, _, error in summary.failed)


def test_ray_executor_without_ray_says_how_to_install_it(tiny_family_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'emergence\[ray\]'"):
        run(_config(tiny_family_dir, tmp_path / "run", executor=RAY), pm=manager(), progress=False)
    assert not (tmp_path / "run").exists()


def test_importing_emergence_never_imports_ray():
    code = ("import sys, emergence, emergence.run.runner, emergence.cli, emergence.run.config, emergence.run.ray_executor; "
            "assert 'ray' not in sys.modules, 'ray was imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_ray_flags_need_the_ray_executor(tiny_family_dir, tmp_path, capsys):
    assert main(["run", "--family", str(tiny_family_dir), "--tasks", "t_add", "--out", str(tmp_path / "r"),
                 "--address", "auto", "--no-progress"]) == 1
    assert "address only apply to the ray executor" in capsys.readouterr().err
    assert main(["run", "--family", str(tiny_family_dir), "--tasks", "t_add", "--executor", "rey"]) == 1
    assert "Did you mean 'ray'" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_an_address_beside_an_existing_connection_is_refused(ray_cluster, tiny_family_dir, tmp_path):
    cfg = _config(tiny_family_dir, tmp_path / "run", executor=replace(RAY, address="auto"))
    with pytest.raises(ValueError, match="already connected to Ray"):
        run(cfg, pm=manager(), progress=False)


def test_a_gpu_cluster_needs_gpus_per_worker(ray_cluster, tiny_family_dir, tmp_path, monkeypatch):
    # Ray leaves GPUs visible to tasks that reserved none: they would all share the first one.
    monkeypatch.setattr(ray_cluster, "cluster_resources", lambda: {"CPU": 2.0, "GPU": 8.0})
    with pytest.raises(ValueError, match="8 GPUs but gpus_per_worker is 0.*--gpus-per-worker 1"):
        run(_config(tiny_family_dir, tmp_path / "run", executor=RAY), pm=manager(), progress=False)
    with Store(tmp_path / "run", lock=False) as store:
        assert store.cells() == []
