"""Where checkpoints are evaluated: one seam, three executors; the numbers never depend on which.

:func:`evaluate_checkpoint` does the work of one checkpoint and writes nothing. An executor runs
it for every checkpoint of a plan and yields the :class:`CellResult` of each (checkpoint, task):
:class:`LocalExecutor` in this process, :class:`PoolExecutor` in spawned worker processes on this
machine, :class:`~emergence.run.ray_executor.RayExecutor` on Ray workers; the runner picks one
(``runner.make_executor``) and alone writes the cells to the store.
"""

import os
import platform
import time
import traceback
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, wait
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from emergence.families import Checkpoint
from emergence.run.config import RunConfig
from emergence.run.evaluate import evaluate
from emergence.workers import process_pool


@dataclass(frozen=True)
class CellResult:
    """One evaluated (checkpoint, task) cell: its scores and samples, or the error that stopped it."""

    checkpoint: Checkpoint      # as evaluated: parameter counts measured on the loaded model
    task: str
    scores: list = field(default_factory=list)
    samples: list = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None


def evaluate_checkpoint(checkpoint: Checkpoint, tasks, config: RunConfig, pm) -> Iterator[CellResult]:
    """Load ``checkpoint`` once, evaluate ``tasks`` on it in order, free it; yield a CellResult
    per task as it finishes. Writes nothing: the caller owns the store. A checkpoint that will
    not load, or a task that raises, gives cells with an error rather than an exception."""
    try:
        lm = pm.hook.load_model(checkpoint=checkpoint, options=config.backend, run_dir=Path(config.out))
        if lm is None:
            raise RuntimeError(f"No plugin could load checkpoint {checkpoint.name!r}")
    except Exception as e:
        for task in tasks:
            yield CellResult(checkpoint, task.name, error=f"loading failed: {e}")
        return
    try:
        checkpoint = _with_measured_counts(checkpoint, lm)
        for task in tasks:
            yield _evaluate_cell(checkpoint, task, lm, config)
    finally:
        if hasattr(lm, "close"):
            lm.close()
        del lm


def quiet_libraries():
    """Our progress bars are per checkpoint and task; the libraries' per-file bars are noise."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError:
        pass


class LocalExecutor:
    """Evaluates the plan in this process, one checkpoint after another."""

    def __init__(self, config: RunConfig):
        self.config = config

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def describe(self) -> dict:
        return {"kind": "local", "host": platform.node()}

    def results(self, plan, pm, progress: bool) -> Iterator[CellResult]:
        for ck, todo in tqdm(plan, desc="checkpoints", unit="ckpt", disable=not progress):
            cells = evaluate_checkpoint(ck, todo, self.config, pm)
            yield from tqdm(cells, total=len(todo), desc=ck.name, unit="task", leave=False, disable=not progress)


class PoolExecutor:
    """Evaluates checkpoints in ``workers`` spawned processes on this machine, one checkpoint per
    job, each worker with ``cpu_count // workers`` torch threads (many tiny models: one thread
    each is fastest). A worker builds its own plugin manager from the installed entry points
    (honouring EMERGENCE_DISABLE_PLUGINS): plugins registered in code stay in this process.
    The workers exit when this process dies, even by ``kill -9`` (``emergence.workers``)."""

    def __init__(self, config: RunConfig):
        self.config = config
        self.workers = config.executor.workers or os.cpu_count() or 1
        self._pool = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def describe(self) -> dict:
        return {"kind": "pool", "host": platform.node(), "workers": self.workers}

    def results(self, plan, pm, progress: bool) -> Iterator[CellResult]:
        if not plan:
            return
        workers = min(self.workers, len(plan))
        threads = max(1, (os.cpu_count() or 1) // workers)
        # spawn, not fork: a forked child of a process that has run torch can deadlock in OpenMP.
        self._pool = process_pool(workers, "spawn", initializer=_start_worker, initargs=(threads,))
        pending = {self._pool.submit(_evaluate_in_worker, self.config, ck, todo): (ck, todo) for ck, todo in plan}
        with tqdm(total=len(pending), desc="checkpoints", unit="ckpt", disable=not progress) as bar:
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    ck, todo = pending.pop(future)
                    try:
                        cells = future.result()
                    except Exception as e:  # the worker process died (killed, out of memory)
                        cells = [CellResult(ck, t.name, error=f"worker process failed: {_describe(e)}") for t in todo]
                    yield from cells
                    bar.update()


_WORKER_PM = None


def _start_worker(threads: int):
    global _WORKER_PM
    import torch

    from emergence.plugins import plugin_manager

    quiet_libraries()
    torch.set_num_threads(threads)
    _WORKER_PM = plugin_manager()


def _evaluate_in_worker(config, checkpoint, tasks) -> list[CellResult]:
    return list(evaluate_checkpoint(checkpoint, tasks, config, _WORKER_PM))


def _evaluate_cell(checkpoint, task, lm, config) -> CellResult:
    start = time.perf_counter()
    try:
        scores, samples = evaluate(task, lm, seed=config.seed, limit=config.limit, num_fewshot=config.num_fewshot)
    except Exception as e:
        return CellResult(checkpoint, task.name, error=f"checkpoint {checkpoint.name!r}: {_describe(e)}")
    return CellResult(checkpoint, task.name, scores, samples, time.perf_counter() - start)


def _describe(error: BaseException) -> str:
    frame = traceback.extract_tb(error.__traceback__)[-1] if error.__traceback__ else None
    where = f" (at {Path(frame.filename).name}:{frame.lineno})" if frame else ""
    return f"{type(error).__name__}: {error}{where}"


def _with_measured_counts(ck, lm):
    model = getattr(lm, "model", None)
    if model is None or (ck.params is not None and ck.params_nonembed is not None):
        return ck
    from emergence.families import count_parameters

    return ck.with_counts(*count_parameters(model))
