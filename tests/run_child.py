"""Runner processes for the kill and concurrency tests: a sweep of the test tasks into a run directory.

Importing this module does the slow imports (torch, transformers, the loader), so a forkserver
that preloads it starts each runner in a fraction of a second; test_kill.py kills dozens of them.
As a script it runs one sweep: ``python run_child.py FAMILY OUT``.
"""

import os
import sys
import threading
import time
from pathlib import Path

# Preloaded, down to the lazily imported model classes, so that forked runners start fast.
import emergence.run.engine  # noqa: F401
import emergence_plugins.huggingface  # noqa: F401
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GPTNeoXForCausalLM  # noqa: F401
from tqdm.auto import tqdm

from emergence import store
from emergence.run.config import BackendOptions, RunConfig
from emergence.hookspecs import hookimpl
from emergence.run.runner import run
from emergence.tasks import GENERATE_METRICS, MULTIPLE_CHOICE, mc_metrics

from helpers import AddTask, PickTask, manager

TASKS = ("t_add", "t_pick", "t_add_b", "t_pick_b")


class MoreTasks:
    """Two more cells per checkpoint, so that a run outlasts two dozen kills."""

    @staticmethod
    @hookimpl
    def register_tasks(register):
        register(AddTask(name="t_add_b", metrics=GENERATE_METRICS, num_fewshot=0, max_gen_toks=3))
        register(PickTask(name="t_pick_b", kind=MULTIPLE_CHOICE, metrics=mc_metrics(4), num_fewshot=1))


def sweep(family, out, tasks=TASKS, write_log=None, commit_delay=0.0, release=None, commit_log=None):
    """Run the sweep; exit 0 when every cell succeeded, 1 when one failed, 3 when the run
    directory is in use. With ``write_log``, each cell's transaction appends a line to that
    file once its rows are written and then waits before it commits: ``commit_delay`` seconds
    (a slow disk, so that a kill can land mid-write) and, with ``release``, until that file exists.
    With ``commit_log`` too, a line is appended there as the COMMIT itself begins."""
    # tqdm's default lock is a named semaphore that a killed runner would leave behind.
    tqdm.set_lock(threading.RLock())
    if write_log:
        _slow_commits(Path(write_log), commit_delay, release and Path(release), commit_log and Path(commit_log))
    pm = manager()
    pm.register(MoreTasks, name="more_tasks")
    config = RunConfig(family=str(family), tasks=tuple(tasks), out=str(out), limit=4,
                       backend=BackendOptions(batch_size=4))
    try:
        summary = run(config, pm=pm, progress=False)
    except store.RunLocked as e:
        print(e, file=sys.stderr)
        sys.exit(3)
    sys.exit(0 if summary.ok else 1)


def _slow_commits(log: Path, delay: float, release: Path | None, commit_log: Path | None = None):
    commit = store._Transaction.__exit__

    def exit_slowly(self, exc_type, *rest):
        if exc_type is None:
            with open(log, "a") as f:
                f.write(f"{os.getpid()}\n")
            time.sleep(delay)
            while release is not None and not release.exists():
                time.sleep(0.01)
            if commit_log is not None:
                with open(commit_log, "a") as f:
                    f.write(f"{os.getpid()}\n")
        return commit(self, exc_type, *rest)

    store._Transaction.__exit__ = exit_slowly


if __name__ == "__main__":
    sweep(sys.argv[1], sys.argv[2])
