"""Started by test_orphans.py: puts workers of one kind to work that never ends (each writes
``ready-<pid>`` into the folder given first), so that the test can kill this process under them."""

import os
import sys
import time
from pathlib import Path

READY = Path(sys.argv[1]) if len(sys.argv) > 1 else None


def block(*_):
    (READY / f"ready-{os.getpid()}").touch()
    time.sleep(600)


if __name__ == "__main__":
    kind = sys.argv[2]
    if kind == "watchdog":   # where there is no PR_SET_PDEATHSIG: the thread watching the parent
        from emergence import workers

        workers._kill_me_with_parent = lambda: False
        kind = "map_chunks"
    if kind == "map_chunks":
        from emergence.analysis.parallel import map_chunks

        map_chunks(block, range(4), workers=2, chunk=1)
    elif kind == "background":
        from emergence.analysis.parallel import Background

        Background(block).result()
    elif kind == "figures":
        from emergence.report import figures
        from emergence.report.config import ReportConfig
        from emergence.report.render import FigureJob, render_figures

        figures.block = block
        render_figures([FigureJob(f"f{i}", "", "", "block") for i in range(6)], config=ReportConfig(workers=2))
    elif kind == "pool":
        from emergence.families import Checkpoint
        from emergence.run import executors
        from emergence.run.config import ExecutorOptions, RunConfig

        executors._evaluate_in_worker = block   # pickled by name: the spawned workers find it in this file
        config = RunConfig(out=str(READY), executor=ExecutorOptions(kind="pool", workers=2))
        plan = [(Checkpoint("f", f"m{i}", "repo"), []) for i in range(2)]
        list(executors.PoolExecutor(config).results(plan, None, progress=False))
    elif kind == "lab":
        from emergence.lab import training
        from emergence.lab.training import LabConfig, train_family

        training._train_size = block   # as above
        config = LabConfig(sizes=((8, 1), (16, 1)), tokens=16 * 64 * 6, batch_size=16, checkpoints=3,
                           mix=(("copy", 0.5), ("filler", 0.5)), workers=2)
        train_family(config, READY / "family", progress=False, log=lambda *_: None)
